"""``nebula.db.connect``: idle connections are reused, never when dead or left dirty."""

from __future__ import annotations

import collections.abc
import contextlib
from typing import Any

import psycopg
import pytest

from nebula import db, errors


def _pid(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture(autouse=True)
def no_idle() -> collections.abc.Iterator[None]:
    db.close_idle()
    yield
    db.close_idle()


def test_a_connection_given_back_is_taken_again(database: str) -> None:
    with db.connect(database) as conn:
        first = _pid(conn)
    with db.connect(database) as conn:
        assert _pid(conn) == first
        with db.connect(database) as other:  # the idle one is in use: a second one opens
            assert _pid(other) != first


def test_a_connection_the_server_ended_is_replaced_unnoticed(database: str) -> None:
    with db.connect(database) as conn:
        ended = _pid(conn)
    with psycopg.connect(database, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (ended,))

    with db.connect(database) as conn:
        assert _pid(conn) != ended


def test_a_block_that_raises_or_leaves_a_transaction_open_does_not_give_it_back(
    database: str,
) -> None:
    with pytest.raises(RuntimeError), db.connect(database) as conn:
        failed = _pid(conn)
        raise RuntimeError("the caller's own failure")
    with db.connect(database) as conn:
        assert _pid(conn) != failed
        conn.autocommit = False
        conn.execute("SELECT 1")  # a transaction begins and is left open
        dirty = _pid(conn)
    with db.connect(database) as conn:
        assert _pid(conn) not in (failed, dirty)
        assert conn.autocommit


def test_at_most_keep_connections_stay_idle(database: str) -> None:
    with contextlib.ExitStack() as stack:
        opened = [stack.enter_context(db.connect(database)) for _ in range(db.KEEP + 3)]
    # All given back: the three that waited longest were closed to make room.
    assert sum(conn.closed for conn in opened) == 3


def test_a_server_that_is_not_there_is_a_transient_error() -> None:
    with pytest.raises(errors.StoreUnavailable), db.connect("postgresql://127.0.0.1:9/none"):
        pass
