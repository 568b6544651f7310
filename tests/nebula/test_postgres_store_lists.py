"""The PostgreSQL store answers ``list`` from what it read last while nothing changed; any
committed write, delete or status change must still show on the next call."""

from __future__ import annotations

import collections.abc
from typing import Any

import psycopg
import pytest

from nebula import db
from nebula.store import PostgresStore


def model(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "nebula.dev/v1alpha1",
        "kind": "NebulaModel",
        "metadata": {"name": name, "namespace": "ai"},
        "spec": {"provider": "ollama", "model": "llama3.1:8b"},
    }


@pytest.fixture
def store(database: str) -> collections.abc.Iterator[PostgresStore]:
    db.migrate(database)
    with PostgresStore(database) as opened:
        yield opened


def statuses(store: PostgresStore) -> dict[str, Any]:
    return {found.key.name: dict(found.status or {}) for found in store.list("NebulaModel")}


def test_an_unchanged_kind_is_answered_with_the_objects_read_before(store: PostgresStore) -> None:
    store.put(model("llama"))
    first = store.list("NebulaModel")
    again = store.list("NebulaModel")
    assert again == first
    assert again[0] is first[0]  # not decoded again
    assert again is not first  # the caller's list is its own


def test_writes_deletes_and_new_objects_show_at_once(store: PostgresStore, database: str) -> None:
    llama = store.put(model("llama"))
    store.put(model("qwen"))
    assert statuses(store) == {"llama": {}, "qwen": {}}

    store.write_status(llama, {"observedGeneration": 1})
    assert statuses(store) == {"llama": {"observedGeneration": 1}, "qwen": {}}
    store.put(model("mistral"))
    assert set(statuses(store)) == {"llama", "mistral", "qwen"}
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("DELETE FROM resources WHERE name = 'qwen'")
    assert set(statuses(store)) == {"llama", "mistral"}


def test_a_transaction_that_began_first_but_commits_last_still_shows(
    store: PostgresStore, database: str
) -> None:
    """now() is when a transaction began: a fingerprint of max(updated_at) would miss this."""
    llama = store.put(model("llama"))
    qwen = store.put(model("qwen"))
    store.list("NebulaModel")

    with psycopg.connect(database) as early:  # a transaction, begun now
        early.execute(
            "UPDATE resources SET status = '{\"early\": true}', updated_at = now() WHERE name = %s",
            (llama.name,),
        )
        store.write_status(qwen, {"late": True})  # begins later, commits first
        assert statuses(store) == {"llama": {}, "qwen": {"late": True}}
        early.commit()

    assert statuses(store) == {"llama": {"early": True}, "qwen": {"late": True}}
