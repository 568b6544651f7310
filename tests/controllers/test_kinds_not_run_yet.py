"""The kinds nothing runs yet (NebulaService, NebulaModel, ComfyWorkflow, Pipeline) still get a
status that tells the truth, in both runtimes: a valid object is Ready=Unknown, NotRunYet, and
says nothing runs it; an invalid one (applied by hand past what a sync checks) is Stalled with
the field path.

Regression (issue 13.6): on Kubernetes these kinds got no status at all, so ``kubectl wait
--for=condition=Ready nebulamodel/...`` waited for ever and a broken hand-applied object said
nothing.
"""

from __future__ import annotations

import asyncio
import collections.abc
from typing import Any

import pytest

from controllers import declared, kinds, local
from nebula import db
from nebula.resources import ResourceKey, conditions
from nebula.store import PostgresStore
from tests.conftest import EmbeddedState, aeventually, eventually
from tests.controllers import emulator
from tests.controllers.conftest import Operator

GOOD = ResourceKey("NebulaModel", "default", "llama3-1-8b")
BAD = ResourceKey("NebulaModel", "default", "broken")


def _model(name: str, size: str) -> dict[str, Any]:
    return {
        "apiVersion": "nebula.dev/v1alpha1",
        "kind": "NebulaModel",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"provider": "ollama", "model": "llama3.1:8b", "size": size},
    }


def _condition(status: collections.abc.Mapping[str, Any] | None, type_: str) -> dict[str, Any]:
    found = [c for c in (status or {}).get("conditions", []) if c["type"] == type_]
    return found[0] if found else {}


def _assert_told_the_truth(good: dict[str, Any] | None, bad: dict[str, Any] | None) -> None:
    ready = _condition(good, conditions.READY)
    assert (ready["status"], ready["reason"]) == ("Unknown", declared.NOT_RUN_YET)
    assert ready["message"] == declared.not_run_yet("NebulaModel")
    assert good is not None and good["observedGeneration"] == 1
    stalled = _condition(bad, conditions.STALLED)
    assert (stalled["status"], stalled["reason"]) == ("True", "InvalidSpec")
    assert "spec.size" in stalled["message"]


@pytest.fixture
def store(database: str) -> collections.abc.Iterator[PostgresStore]:
    db.migrate(database)
    with PostgresStore(database) as opened:
        yield opened


async def test_the_embedded_runtime_says_a_model_is_stored_but_not_run(
    database: str, store: PostgresStore, embedded_state: EmbeddedState
) -> None:
    store.put(_model(GOOD.name, "4.9G"))
    store.put(_model(BAD.name, "lots"))
    runtime = local.runtime(embedded_state(database, store), only=(declared.NebulaModelKind,))
    stop = asyncio.Event()
    running = asyncio.create_task(runtime.run(stop))
    try:
        await aeventually(lambda: all((s := store.get(k)) and s.status for k in (GOOD, BAD)))
    finally:
        stop.set()
        await running
    good, bad = store.get(GOOD), store.get(BAD)
    _assert_told_the_truth(good.status if good else None, bad.status if bad else None)


@pytest.fixture
def operator_kinds() -> tuple[kinds.Factory, ...]:
    return (declared.NebulaModelKind,)


def test_the_operator_gives_a_hand_applied_model_a_status_kubectl_wait_can_read(
    k8s: emulator.Cluster, running_operator: Operator
) -> None:
    k8s.create(_model(GOOD.name, "4.9G"))
    k8s.create(_model(BAD.name, "lots"))

    def both_told() -> dict[ResourceKey, dict[str, Any]] | None:
        found = k8s.objects("NebulaModel")
        return found if len(found) == 2 and all(o.get("status") for o in found.values()) else None

    found = eventually(both_told)

    _assert_told_the_truth(found[GOOD].get("status"), found[BAD].get("status"))


def test_every_kind_has_a_kind_in_the_registry() -> None:
    from nebula.resources import KINDS

    assert {kind.model.__name__ for kind in kinds.KINDS} == set(KINDS)
    assert {"GitSource", "NebulaNode", "BotConfig"} == kinds.RUN
