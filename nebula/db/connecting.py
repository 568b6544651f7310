"""One way to get a PostgreSQL connection: reused when one is idle, a transient error when the
server does not answer.

Called by every module that talks to the database directly (history, heartbeats, the audit
log, change requests, bot reports); the resource store and the web sessions each hold a
:class:`Pool`, and LISTEN connections are opened apart (they must never be handed to anyone
else).

Opening a connection starts a server process: about 2 ms here, more than most of the queries
these modules run. So a connection given back in a clean state (autocommit, no transaction, no
error) is kept, and the next :func:`connect` to the same database takes it after a one-packet
check that it still works (a restarted or dropped database left it dead). At most
:data:`KEEP` connections are kept idle in the whole process, the longest idle closed first;
whatever is still idle at exit is closed.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import psycopg.pq
import psycopg_pool

from nebula import errors

__all__ = ["KEEP", "Pool", "close_idle", "connect"]

KEEP = 8
"""Idle connections kept in the whole process, over every database."""

Connection = psycopg.Connection[Any]

_lock = threading.Lock()
# The idle connections, longest idle first, each with the conninfo it was opened with.
_idle: collections.deque[tuple[str, Connection]] = collections.deque()


@contextlib.contextmanager
def connect(conninfo: str) -> Iterator[Connection]:
    """An autocommit connection for the block; raises StoreUnavailable when PostgreSQL is down
    or refuses. Given back for reuse when the block ends cleanly, closed when it raises."""
    conn = _reused(conninfo) or _opened(conninfo)
    try:
        yield conn
    except BaseException:
        conn.close()
        raise
    _give_back(conninfo, conn)


class Pool:
    """A pool of connections to one database for an object that lives as long as its process
    (the resource store, the web sessions): opened once, closed once, and a database that does
    not answer is :class:`~nebula.errors.StoreUnavailable`, never a psycopg error.

    ``autocommit=False``: a block of :meth:`connection` is one transaction, committed when it
    ends cleanly and rolled back when it raises.
    """

    def __init__(self, conninfo: str, *, max_size: int = 4, autocommit: bool = True) -> None:
        self._conninfo = conninfo
        self._pool = psycopg_pool.ConnectionPool(
            conninfo,
            min_size=1,
            max_size=max_size,
            open=False,
            # Waiting longer for a connection only makes a page hang while PostgreSQL is down.
            timeout=3,
            # A connection left from before a restart of the server fails its first query;
            # checked as it is handed out (one round trip), it is replaced instead.
            check=psycopg_pool.ConnectionPool.check_connection,
            kwargs={"autocommit": True} if autocommit else {},
        )
        # The last block met a database that did not answer: the next one asks the server
        # directly first, so callers hear "unavailable" at once instead of after the timeout.
        self._down = False

    def open(self) -> None:
        """Connects; raises StoreUnavailable when PostgreSQL does not answer in time."""
        try:
            self._pool.open(wait=True, timeout=10)
        # The pool could not make its first connection in time.
        except psycopg_pool.PoolTimeout as error:
            raise errors.StoreUnavailable(f"PostgreSQL did not answer: {error}") from None

    def close(self) -> None:
        """Closes every connection; safe to call twice."""
        self._pool.close()

    @contextlib.contextmanager
    def connection(self) -> Iterator[Connection]:
        """A connection for the block; StoreUnavailable when none is free or makeable in time,
        or PostgreSQL went away during the block."""
        if self._down:
            _opened(self._conninfo).close()  # StoreUnavailable while it still refuses
        try:
            with self._pool.connection() as conn:
                yield conn
        except (psycopg_pool.PoolTimeout, psycopg.OperationalError) as error:
            self._down = True
            raise errors.StoreUnavailable(f"PostgreSQL did not answer: {error}") from None
        self._down = False


def close_idle() -> None:
    """Closes every idle connection (at exit, and for tests that stop a server)."""
    with _lock:
        idle = list(_idle)
        _idle.clear()
    for _, conn in idle:
        conn.close()


def _opened(conninfo: str) -> Connection:
    try:
        return psycopg.connect(conninfo, autocommit=True, connect_timeout=5)
    # The server is down, refused us, or the address is wrong: the same call may work later.
    except psycopg.OperationalError as error:
        raise errors.StoreUnavailable(f"PostgreSQL did not answer: {error}") from None


def _reused(conninfo: str) -> Connection | None:
    """An idle connection to the same database that still answers, or None."""
    while True:
        with _lock:
            found = next((pair for pair in reversed(_idle) if pair[0] == conninfo), None)
            if found is None:
                return None
            _idle.remove(found)
        conn = found[1]
        try:
            conn.execute("")  # one round trip: the server still knows this connection
        # Terminated meanwhile (a restart, a dropped database): try the next one, or open.
        except psycopg.Error:
            conn.close()
            continue
        return conn


def _give_back(conninfo: str, conn: Connection) -> None:
    clean = (
        not conn.closed
        and not conn.broken
        and conn.autocommit
        and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    )
    if not clean:
        conn.close()
        return
    with _lock:
        _idle.append((conninfo, conn))
        evicted = _idle.popleft()[1] if len(_idle) > KEEP else None
    if evicted is not None:
        evicted.close()


atexit.register(close_idle)
