"""The embedded runtime that cannot start raises why instead of waiting forever.

Regression (issue 11.1): when the notification listener could not connect, ``run`` waited for
it to listen forever, in a thread no signal could stop, so ``nebula up`` never ended.
"""

from __future__ import annotations

import asyncio
import collections.abc

import psycopg.conninfo
import pytest

from controllers import embedded
from nebula import db, errors
from nebula.store import PostgresStore


@pytest.fixture
def store(database: str) -> collections.abc.Iterator[PostgresStore]:
    db.migrate(database)
    with PostgresStore(database) as opened:
        yield opened


async def test_a_runtime_whose_listener_cannot_connect_raises_store_unavailable(
    database: str, store: PostgresStore
) -> None:
    # The listener's own connection goes to a database that does not exist.
    nowhere = psycopg.conninfo.make_conninfo(database, dbname="nebula_no_such_database")
    runtime = embedded.EmbeddedRuntime(conninfo=nowhere, store=store, controllers=[])

    with pytest.raises(errors.StoreUnavailable, match="did not answer"):
        # A hang fails here instead of hanging the suite.
        await asyncio.wait_for(runtime.run(asyncio.Event()), timeout=60)
