"""The embedded runtime (``nebula up``): a GitSource deleted from the store takes what it
applied with it, unless its spec says ``prune: false``; objects of other sources stay."""

from __future__ import annotations

import asyncio
import collections.abc
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from controllers import git_source, local
from nebula import db
from nebula.store import PostgresStore
from nebula.sync import History
from tests.conftest import EmbeddedState, GitRemote


@pytest.fixture
def store(database: str) -> collections.abc.Iterator[PostgresStore]:
    db.migrate(database)
    with PostgresStore(database) as opened:
        yield opened


def _source(name: str, url: str, *, prune: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": "nebula.dev/v1alpha1",
        "kind": "GitSource",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"url": url, "ref": {"branch": "main"}, "path": "manifests", "prune": prune},
    }


def _applied_by(database: str, source: str) -> int:
    with psycopg.connect(database, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM resources WHERE source = %s", (source,))
        return int(row.fetchone()[0])  # type: ignore[index]


def _delete(database: str, name: str) -> None:
    """Deletes a GitSource row by hand, as removing it from its own parent source would."""
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("DELETE FROM resources WHERE kind = 'GitSource' AND name = %s", (name,))


async def _until(check: Callable[[], bool], *, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "gave up waiting"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("prune", [True, False])
async def test_a_deleted_source_prunes_what_it_applied_only_when_it_prunes(
    prune: bool,
    store: PostgresStore,
    database: str,
    homelab_remote: GitRemote,
    embedded_state: EmbeddedState,
) -> None:
    store.put(_source("local", homelab_remote.url, prune=prune))
    runtime = local.runtime(embedded_state(database, store), only=(git_source.GitSourceKind,))
    stop = asyncio.Event()
    running = asyncio.create_task(runtime.run(stop))
    try:
        await runtime.wait_ready()
        await _until(lambda: _applied_by(database, "default.local") > 20)
        applied = _applied_by(database, "default.local")

        _delete(database, "local")

        if prune:
            await _until(lambda: _applied_by(database, "default.local") == 0)
            [run] = History(database).latest("default.local", limit=1)
            assert run.pruned == applied
        else:
            await asyncio.sleep(1.0)  # the loop saw the deletion: nothing must follow it
            assert _applied_by(database, "default.local") == applied
    finally:
        stop.set()
        await running
