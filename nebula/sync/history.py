"""Sync history in PostgreSQL, and the lock that keeps two syncs of one source apart.

Called by the GitSource reconciler in both runtimes: every sync that applied something or failed
is a row of ``sync_runs`` (revision, author, message, started/finished, counts, result, error);
every sync runs under a
PostgreSQL advisory lock named after its source, so two processes, replicas or threads never
interleave the syncs of one source.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
from collections.abc import Iterator
from typing import Any

import psycopg

from nebula import db

__all__ = ["History", "SyncRun"]

_LOCK = "SELECT pg_advisory_lock(hashtextextended('nebula.sync:' || %s, 0))"
_UNLOCK = "SELECT pg_advisory_unlock(hashtextextended('nebula.sync:' || %s, 0))"


@dataclasses.dataclass(frozen=True)
class SyncRun:
    """One row of the sync history."""

    id: int
    source: str
    revision: str | None
    author: str | None
    message: str | None
    started_at: datetime.datetime
    finished_at: datetime.datetime | None
    created: int
    updated: int
    pruned: int
    unchanged: int
    result: str
    error: str | None


class History:
    """The sync history of every source, in the database at ``conninfo``."""

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo

    def _connect(self) -> contextlib.AbstractContextManager[psycopg.Connection[Any]]:
        return db.connect(self._conninfo)

    @contextlib.contextmanager
    def lock(self, source: str) -> Iterator[datetime.datetime]:
        """Holds the sync lock of ``source``, waiting while another sync of it runs.

        Yields the database's time at which the lock was taken: when the sync started.
        """
        with self._connect() as conn:
            conn.execute(_LOCK, (source,))
            try:
                row = conn.execute("SELECT clock_timestamp()").fetchone()
                assert row is not None  # SELECT of a value returns one row
                yield row[0]
            finally:
                if not conn.broken:
                    conn.execute(_UNLOCK, (source,))

    def record(
        self,
        source: str,
        *,
        started: datetime.datetime,
        result: str,
        revision: str | None = None,
        author: str | None = None,
        message: str | None = None,
        counts: dict[str, int] | None = None,
        error: str | None = None,
    ) -> int:
        """Records a finished sync (finished now); returns the run's id.

        Callers record syncs that applied something or failed; a sync that found nothing to do
        leaves no row, so polling an unchanged repository writes nothing at all.
        """
        counts = counts or {}
        with self._connect() as conn:
            row = conn.execute(
                """
                INSERT INTO sync_runs (source, started_at, finished_at, result, revision, author,
                    message, created, updated, pruned, unchanged, error)
                VALUES (%s, %s, clock_timestamp(), %s, %s, %s, %s, %s, %s, %s, %s, %s)
                RETURNING id
                """,
                (
                    source,
                    started,
                    result,
                    revision,
                    author,
                    message,
                    counts.get("created", 0),
                    counts.get("updated", 0),
                    counts.get("pruned", 0),
                    counts.get("unchanged", 0),
                    error,
                ),
            ).fetchone()
        assert row is not None  # INSERT ... RETURNING returns its row
        return int(row[0])

    def latest(self, source: str | None = None, *, limit: int = 20) -> list[SyncRun]:
        """The newest runs first, of one source or of all."""
        where = "WHERE source = %s" if source else ""
        params: tuple[Any, ...] = (source, limit) if source else (limit,)
        with self._connect() as conn:
            rows = conn.execute(
                f"SELECT id, source, revision, author, message, started_at, finished_at,"
                f" created, updated, pruned, unchanged, result, error FROM sync_runs {where}"
                f" ORDER BY started_at DESC, id DESC LIMIT %s",
                params,
            ).fetchall()
        return [SyncRun(*row) for row in rows]
