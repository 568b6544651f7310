"""``nebula up`` that cannot start says why in one line and leaves nothing running.

Regression (issue 11.1): on a port already in use it printed ``[Errno 98]``, then hung, deaf
to Ctrl-C and SIGTERM, waiting for a database-listening thread; only ``kill -9`` stopped it,
which left its private PostgreSQL running.
"""

from __future__ import annotations

import pathlib
import shutil

import httpx

from tests.e2e.processes import ROOT, free_port, nebula, postgres_processes, stop, until, up


def _homelab(folder: pathlib.Path) -> pathlib.Path:
    shutil.copytree(ROOT / "manifests", folder / "manifests")
    return folder


def test_a_second_up_on_a_taken_port_exits_3_naming_the_port_and_leaves_nothing_behind(
    tmp_path: pathlib.Path,
) -> None:
    first, second = _homelab(tmp_path / "first"), _homelab(tmp_path / "second")
    port = free_port()
    running = up(first, port)
    try:
        until(lambda: httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200)
        again = up(second, port)
        # No Ctrl-C: it must end by itself (communicate's timeout fails a hang).
        output, _ = again.communicate(timeout=60)
    finally:
        stop(running)
    assert again.returncode == 3, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert f"127.0.0.1:{port} is in use" in lines[0] and "--port" in lines[0]
    assert "Traceback" not in output
    # Nothing was started for it: no PostgreSQL, not even a state folder.
    assert postgres_processes(second) == []
    assert not (second / ".nebula").exists()
    # And the first one stopped its own server on Ctrl-C.
    assert postgres_processes(first) == []


def test_a_start_that_fails_after_postgres_started_stops_postgres_too(
    tmp_path: pathlib.Path,
) -> None:
    # The repository to start from is missing: found only once the database is up.
    process = nebula(tmp_path, "up", "--port", str(free_port()), "--manifests", "nowhere")
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 1, output
    assert "nowhere: no such folder" in output and "Traceback" not in output
    assert (tmp_path / ".nebula" / "postgres").is_dir()
    assert postgres_processes(tmp_path) == []
