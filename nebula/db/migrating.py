"""Versioned SQL migrations for Nebula's PostgreSQL schema.

The runtimes call :func:`migrate` once at start-up (``nebula up``, the operator, the API) and
``nebula db status`` calls :func:`status`. Migrations are the files ``NNNN_name.sql`` shipped in
``nebula/db/migrations/``; each runs in its own transaction, and the table
``nebula_schema_migrations`` records the version, name and sha256 checksum of every file applied.

This module never edits or skips an applied migration, never runs a migration twice, and never
downgrades: a changed file, a failing file or a database newer than this code is a
``MigrationError`` for the user to resolve.
"""

from __future__ import annotations

import collections.abc
import contextlib
import dataclasses
import datetime
import hashlib
import importlib.resources
import importlib.resources.abc
import re
import typing

import psycopg

from nebula import errors

__all__ = ["Migration", "MigrationState", "discover", "migrate", "status"]

# "NNNN_name.sql": four digits, an underscore, a lower-case snake_case name.
_FILE_NAME = re.compile(r"(?P<version>[0-9]{4})_(?P<name>[a-z0-9]+(?:_[a-z0-9]+)*)\.sql")

# One key for every Nebula migrator on a database ("nebula" in ASCII); advisory locks are per
# database, so two Nebula installs on one server do not block each other.
_LOCK_KEY = 0x6E6562756C61

_CREATE_HISTORY = """
    CREATE TABLE IF NOT EXISTS nebula_schema_migrations (
        version int PRIMARY KEY,
        name text NOT NULL,
        checksum text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
    )
"""


@dataclasses.dataclass(frozen=True)
class Migration:
    """One migration file: its version, name, file name, SQL text and sha256 of its bytes."""

    version: int
    name: str
    file: str
    sql: str
    checksum: str


@dataclasses.dataclass(frozen=True)
class MigrationState:
    """A migration as the database sees it; ``applied_at`` is None while it is pending."""

    version: int
    name: str
    applied_at: datetime.datetime | None


@dataclasses.dataclass(frozen=True)
class _Applied:
    version: int
    name: str
    checksum: str
    applied_at: datetime.datetime


def discover(directory: importlib.resources.abc.Traversable | None = None) -> list[Migration]:
    """Read and order the migrations in ``directory`` (default: the ones shipped with Nebula).

    Every file whose name does not start with a dot must be named ``NNNN_name.sql``, and no two
    files may share a version; otherwise ``MigrationError`` names the offending files. Reads
    files only, so it is safe to call at any time.
    """
    if directory is None:
        directory = importlib.resources.files("nebula.db").joinpath("migrations")
    by_version: dict[int, Migration] = {}
    for entry in sorted(directory.iterdir(), key=lambda entry: entry.name):
        # Editor swap files and OS droppings (.DS_Store) are not migrations.
        if entry.name.startswith(".") or not entry.is_file():
            continue
        match = _FILE_NAME.fullmatch(entry.name)
        if match is None:
            raise errors.MigrationError(
                f"{entry.name}: a migration file must be named NNNN_name.sql "
                "(four digits, an underscore, lower-case letters, digits and underscores)"
            )
        content = entry.read_bytes()
        migration = Migration(
            version=int(match["version"]),
            name=match["name"],
            file=entry.name,
            sql=content.decode("utf-8"),
            checksum=hashlib.sha256(content).hexdigest(),
        )
        if (other := by_version.get(migration.version)) is not None:
            raise errors.MigrationError(
                f"{other.file} and {migration.file} both claim version {migration.version}"
            )
        by_version[migration.version] = migration
    return [by_version[version] for version in sorted(by_version)]


def migrate(
    conninfo: str,
    *,
    migrations: collections.abc.Sequence[Migration] | None = None,
    target: int | None = None,
    progress: collections.abc.Callable[[Migration], None] | None = None,
) -> list[Migration]:
    """Apply the pending migrations up to ``target`` (default: all) in order; return them.

    ``migrations`` defaults to :func:`discover`'s. ``progress`` is called with each migration
    just before it runs. Safe to repeat and to run from several processes at once: an advisory
    lock serialises migrators, so each version is applied exactly once and the latecomers apply
    nothing. Raises ``MigrationError`` when an applied file changed, when the database holds a
    version this code does not know, or when a migration fails; the failing one is rolled back
    and the ones before it stay applied. Raises ``StoreUnavailable`` when PostgreSQL is
    unreachable.
    """
    known = discover() if migrations is None else list(migrations)
    with _session(conninfo) as conn:
        # A session lock rather than one per transaction: the check of the applied files and
        # the runs that follow must see the same history, and no other migrator may slip
        # between them.
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(_CREATE_HISTORY)
            applied = _read_applied(conn)
            _check_history(known, applied)
            pending = [
                migration
                for migration in known
                if migration.version not in applied
                and (target is None or migration.version <= target)
            ]
            for migration in pending:
                if progress is not None:
                    progress(migration)
                _apply(conn, migration)
        finally:
            # Skipped when the connection died: PostgreSQL then released the lock already.
            if not conn.broken:
                conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return pending


def status(
    conninfo: str, *, migrations: collections.abc.Sequence[Migration] | None = None
) -> list[MigrationState]:
    """List every known or applied migration by version, with when it was applied.

    Read-only: it neither creates the history table nor checks checksums. Raises
    ``StoreUnavailable`` when PostgreSQL is unreachable.
    """
    known = discover() if migrations is None else list(migrations)
    with _session(conninfo) as conn:
        exists = conn.execute("SELECT to_regclass('nebula_schema_migrations')").fetchone()
        applied = _read_applied(conn) if exists is not None and exists[0] is not None else {}
    states = {
        migration.version: MigrationState(migration.version, migration.name, None)
        for migration in known
    }
    for row in applied.values():
        states[row.version] = MigrationState(row.version, row.name, row.applied_at)
    return [states[version] for version in sorted(states)]


@contextlib.contextmanager
def _session(conninfo: str) -> collections.abc.Iterator[psycopg.Connection[tuple[typing.Any, ...]]]:
    try:
        # Autocommit, so that each migration's transaction is exactly one `conn.transaction()`.
        with psycopg.connect(conninfo, autocommit=True) as conn:
            yield conn
    # The server is down, refused us or dropped the connection: the same call may work later.
    except psycopg.OperationalError as error:
        raise errors.StoreUnavailable(f"PostgreSQL is unreachable: {error}") from error


def _read_applied(conn: psycopg.Connection[tuple[typing.Any, ...]]) -> dict[int, _Applied]:
    rows = conn.execute(
        "SELECT version, name, checksum, applied_at FROM nebula_schema_migrations"
    ).fetchall()
    return {row[0]: _Applied(*row) for row in rows}


def _check_history(known: list[Migration], applied: dict[int, _Applied]) -> None:
    by_version = {migration.version: migration for migration in known}
    for version, row in sorted(applied.items()):
        migration = by_version.get(version)
        if migration is None:
            raise errors.MigrationError(
                f"the database has migration {version:04d}_{row.name} applied, which this "
                "version of Nebula does not know; it is older than the database schema"
            )
        if migration.checksum != row.checksum:
            raise errors.MigrationError(
                f"migration {version} ({migration.file}) changed after it was applied: "
                f"checksum {migration.checksum} differs from the applied {row.checksum}; "
                "add a new migration instead of editing an applied one"
            )


def _apply(conn: psycopg.Connection[tuple[typing.Any, ...]], migration: Migration) -> None:
    try:
        with conn.transaction():
            # Without parameters psycopg uses the simple query protocol, which runs a file of
            # several statements in one call.
            conn.execute(migration.sql)
            conn.execute(
                "INSERT INTO nebula_schema_migrations (version, name, checksum)"
                " VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
    # Either the SQL failed (syntax, constraint, missing object) and the transaction was rolled
    # back, or the connection died mid-migration and the server dropped the transaction.
    except psycopg.Error as error:
        if conn.broken:
            raise  # _session reports it as StoreUnavailable
        raise _failed(migration, error) from error


def _failed(migration: Migration, error: psycopg.Error) -> errors.MigrationError:
    message = error.diag.message_primary or str(error)
    where = migration.file
    # Statement positions count characters (1-based) from the start of the file's text.
    if error.diag.statement_position is not None:
        offset = int(error.diag.statement_position) - 1
        line = migration.sql.count("\n", 0, offset) + 1
        where = f"{migration.file}:{line}"
    return errors.MigrationError(f"migration {migration.version} ({where}) failed: {message}")
