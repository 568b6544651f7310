"""Versioned migrations against a real PostgreSQL: order, idempotence, locking and refusals."""

from __future__ import annotations

import pathlib
import re
import socket
import threading
import time

import psycopg
import pytest

from nebula import db, errors


def _migrations(directory: pathlib.Path, files: dict[str, str]) -> list[db.Migration]:
    for name, sql in files.items():
        (directory / name).write_text(sql)
    return db.discover(directory)


def _exists(conninfo: str, table: str) -> bool:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    return row is not None and bool(row[0])


def test_fresh_database_gets_every_migration_and_audit_log_accepts_a_row(database: str) -> None:
    applied = db.migrate(database)

    assert [m.file for m in applied] == [m.file for m in db.discover()]
    assert applied[0].file == "0001_audit_log.sql"
    with psycopg.connect(database) as conn:
        conn.execute(
            "INSERT INTO audit_log (actor, action, subject) VALUES (%s, %s, %s)",
            ("alice", "approve", "NebulaModel/default/llama3"),
        )
        row = conn.execute("SELECT actor, action, subject, detail, at FROM audit_log").fetchone()
    assert row is not None
    assert row[:4] == ("alice", "approve", "NebulaModel/default/llama3", {})
    assert row[4] is not None


def test_status_reports_pending_then_applied_without_creating_anything(database: str) -> None:
    before = db.status(database)
    assert not _exists(database, "nebula_schema_migrations")

    db.migrate(database)
    after = db.status(database)

    assert [(s.version, s.name) for s in before] == [(m.version, m.name) for m in db.discover()]
    assert all(s.applied_at is None for s in before)
    assert [(s.version, s.name) for s in after] == [(s.version, s.name) for s in before]
    assert all(s.applied_at is not None for s in after)


def test_second_run_applies_nothing(database: str) -> None:
    db.migrate(database)

    assert db.migrate(database) == []


def test_target_stops_at_its_version(database: str, tmp_path: pathlib.Path) -> None:
    migrations = _migrations(
        tmp_path, {"0001_one.sql": "CREATE TABLE one ()", "0002_two.sql": "CREATE TABLE two ()"}
    )

    assert db.migrate(database, migrations=migrations, target=1) == migrations[:1]
    assert db.migrate(database, migrations=migrations) == migrations[1:]


def test_concurrent_migrators_apply_each_version_once(
    database: str, tmp_path: pathlib.Path
) -> None:
    migrations = _migrations(
        tmp_path, {"0001_one.sql": "CREATE TABLE one ()", "0002_two.sql": "CREATE TABLE two ()"}
    )
    results: dict[str, list[db.Migration]] = {}
    second = threading.Thread(
        target=lambda: results.update(second=db.migrate(database, migrations=migrations))
    )

    # The first migrator starts the second while it is in the middle of its run, and goes on
    # only once the second is blocked on the lock: the two runs truly overlap.
    def start_the_second_migrator(migration: db.Migration) -> None:
        if not second.is_alive() and "second" not in results:
            second.start()
            _wait_for_a_blocked_advisory_lock(database)

    results["first"] = db.migrate(
        database, migrations=migrations, progress=start_the_second_migrator
    )
    second.join(timeout=10)

    assert results == {"first": migrations, "second": []}
    with psycopg.connect(database) as conn:
        rows = conn.execute("SELECT version FROM nebula_schema_migrations ORDER BY 1").fetchall()
    assert rows == [(1,), (2,)]


def _wait_for_a_blocked_advisory_lock(conninfo: str) -> None:
    query = (
        "SELECT count(*) FROM pg_locks JOIN pg_database ON pg_database.oid = pg_locks.database"
        " WHERE locktype = 'advisory' AND NOT granted AND datname = current_database()"
    )
    deadline = time.monotonic() + 10
    with psycopg.connect(conninfo, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(query).fetchone()
            if row is not None and row[0] > 0:
                return
            # pg_locks offers no notification; poll briefly.
            time.sleep(0.005)
    pytest.fail("the second migrator never waited for the lock")


def test_failing_migration_rolls_back_and_names_the_file(
    database: str, tmp_path: pathlib.Path
) -> None:
    migrations = _migrations(
        tmp_path,
        {
            "0001_kept.sql": "CREATE TABLE kept (id int);\n",
            "0002_broken.sql": "CREATE TABLE half (id int);\n\nSELECT * FROM no_such_table;\n",
            "0003_never.sql": "CREATE TABLE never (id int);\n",
        },
    )

    with pytest.raises(errors.MigrationError, match=r"migration 2 \(0002_broken\.sql:3\)") as info:
        db.migrate(database, migrations=migrations)

    assert 'relation "no_such_table" does not exist' in str(info.value)
    states = db.status(database, migrations=migrations)
    assert [s.applied_at is not None for s in states] == [True, False, False]
    assert _exists(database, "kept")
    assert not _exists(database, "half")
    assert not _exists(database, "never")


def test_edited_applied_migration_is_refused_by_its_checksum(
    database: str, tmp_path: pathlib.Path
) -> None:
    db.migrate(database, migrations=_migrations(tmp_path, {"0001_one.sql": "CREATE TABLE one ()"}))

    edited = _migrations(tmp_path, {"0001_one.sql": "CREATE TABLE one (id int)"})

    with pytest.raises(errors.MigrationError, match=r"migration 1 \(0001_one\.sql\) changed"):
        db.migrate(database, migrations=edited)


def test_database_newer_than_the_code_is_refused(database: str, tmp_path: pathlib.Path) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    old = _migrations(tmp_path / "old", {"0001_one.sql": "CREATE TABLE one ()"})
    new = _migrations(tmp_path / "new", {"0001_one.sql": "CREATE TABLE one ()", "0002_two.sql": ""})
    db.migrate(database, migrations=new)

    with pytest.raises(errors.MigrationError, match="0002_two applied"):
        db.migrate(database, migrations=old)


@pytest.mark.parametrize(
    "name", ["1_short.sql", "0001-dash.sql", "0001_Upper.sql", "0001_.sql", "0001_notes.txt"]
)
def test_badly_named_file_is_rejected(tmp_path: pathlib.Path, name: str) -> None:
    (tmp_path / name).write_text("SELECT 1")

    with pytest.raises(errors.MigrationError, match=f"^{re.escape(name)}: "):
        db.discover(tmp_path)


def test_two_files_with_one_version_are_rejected(tmp_path: pathlib.Path) -> None:
    with pytest.raises(errors.MigrationError, match=r"0007_a\.sql and 0007_b\.sql both claim"):
        _migrations(tmp_path, {"0007_a.sql": "", "0007_b.sql": ""})


def test_unreachable_server_raises_store_unavailable() -> None:
    # A port that was free a moment ago: nothing listens there, so the connection is refused.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(errors.StoreUnavailable):
        db.migrate(f"host=127.0.0.1 port={port} dbname=nebula user=nebula connect_timeout=5")
