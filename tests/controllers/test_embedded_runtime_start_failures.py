"""The embedded runtime whose LISTEN cannot connect goes on reconciling and says what it lacks.

Regression (issue 11.1): when the notification listener could not connect, ``run`` waited for
it to listen forever, in a thread no signal could stop, so ``nebula up`` never ended.
"""

from __future__ import annotations

import asyncio
import collections.abc

import psycopg.conninfo
import pytest

from controllers import embedded, kinds, local, nebula_node
from nebula import db
from nebula.resources import ResourceKey
from nebula.store import PostgresStore
from tests.conftest import WAIT, EmbeddedState, aeventually

NODE = ResourceKey("NebulaNode", None, "home-ubuntu")


@pytest.fixture
def store(database: str) -> collections.abc.Iterator[PostgresStore]:
    db.migrate(database)
    with PostgresStore(database) as opened:
        yield opened


async def test_a_runtime_that_cannot_listen_still_reconciles_and_names_the_problem(
    database: str, store: PostgresStore, embedded_state: EmbeddedState
) -> None:
    store.put(
        {
            "apiVersion": "nebula.dev/v1alpha1",
            "kind": "NebulaNode",
            "metadata": {"name": NODE.name},
            "spec": {"role": "ai", "addresses": [{"type": "lan", "address": "192.0.2.9"}]},
        }
    )
    # The LISTEN goes to a database that does not exist; the store is fine.
    state = embedded_state(database, store)
    nowhere = psycopg.conninfo.make_conninfo(database, dbname="nebula_no_such_database")
    deaf = db.Listener(nowhere, poll=0.05, reconnect=0.05)
    built = kinds.build(local.services(state), (nebula_node.NebulaNodeKind,))
    runtime = embedded.EmbeddedRuntime(store=store, listener=deaf, kinds=built)
    stop = asyncio.Event()
    running = asyncio.create_task(runtime.run(stop))
    try:
        await asyncio.wait_for(runtime.wait_ready(), timeout=WAIT)
        await aeventually(lambda: (stored := store.get(NODE)) is not None and stored.status)
        assert runtime.problems() == [embedded.NOT_LISTENING]
    finally:
        stop.set()
        await asyncio.wait_for(running, timeout=WAIT)
        deaf.close()
