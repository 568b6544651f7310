"""A kind is one module's worth of code: a throwaway kind, a few lines long, runs in both
runtimes with everything the registry's runner gives every kind — parsing at the boundary
(Stalled with InvalidSpec and the field path), the back-off after transient failures, one
status write when something changed, and its events."""

from __future__ import annotations

import asyncio
import collections.abc
import datetime
import logging
import threading
from typing import Any, ClassVar

import pytest

from controllers import kinds, local, outcomes, reconciling
from nebula import db, errors
from nebula.resources import ResourceKey, conditions
from nebula.resources.nebula_model import NebulaModel, NebulaModelStatus
from nebula.store import PostgresStore, postgres
from tests.conftest import EmbeddedState, aeventually, eventually
from tests.controllers import emulator
from tests.controllers.conftest import Operator

GOOD = ResourceKey("NebulaModel", "default", "llama3-1-8b")
BAD = ResourceKey("NebulaModel", "default", "broken")


class Throwaway(reconciling.Kind[NebulaModel, NebulaModelStatus, int]):
    """NebulaModels made Ready by counting looks; the first two looks at a model fail."""

    model = NebulaModel
    status_model = NebulaModelStatus
    looks: ClassVar[collections.Counter[str]] = collections.Counter()  # by name, all runtimes
    lock = threading.Lock()

    def observe(self, resource: NebulaModel) -> int:
        with self.lock:
            self.looks[resource.metadata.name] += 1
            seen = self.looks[resource.metadata.name]
        if seen <= 2:
            raise errors.SourceUnavailable("the models' server did not answer", delay=0.05)
        return seen

    def reconcile(
        self,
        resource: NebulaModel,
        observed: int | None,
        *,
        previous: NebulaModelStatus | None,
        now: datetime.datetime,
        attempt: int,
        progress: reconciling.Progress,
    ) -> reconciling.Result[NebulaModelStatus]:
        found = conditions.set_condition(
            [], type_=conditions.READY, status="True", reason="Counted",
            message="looked at it", now=datetime.datetime(2026, 12, 2, tzinfo=datetime.UTC),
        )  # fmt: skip
        status = NebulaModelStatus(conditions=found)
        told = () if status == previous else (outcomes.Event("Normal", "Counted", "ready"),)
        return reconciling.Result(status, 0.2, told)


def _document(name: str, size: str) -> dict[str, Any]:
    return {
        "apiVersion": "nebula.dev/v1alpha1",
        "kind": "NebulaModel",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"provider": "ollama", "model": "llama3.1:8b", "size": size},
    }


def _reason(status: collections.abc.Mapping[str, Any] | None, type_: str) -> str | None:
    found = [c for c in (status or {}).get("conditions", []) if c["type"] == type_]
    return found[0]["reason"] if found else None


@pytest.fixture(autouse=True)
def fresh_counts() -> None:
    Throwaway.looks.clear()


@pytest.fixture
def store(database: str) -> collections.abc.Iterator[PostgresStore]:
    db.migrate(database)
    with PostgresStore(database) as opened:
        yield opened


async def test_the_embedded_runtime_runs_a_kind_from_its_registration_alone(
    database: str,
    store: PostgresStore,
    embedded_state: EmbeddedState,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store.put(_document(GOOD.name, "4.9G"))
    store.put(_document(BAD.name, "lots"))
    statuses: list[str] = []
    counting = db.Listener(database, poll=0.05)
    counting.subscribe(
        [postgres.CHANNEL],
        lambda m: (
            isinstance(m, db.Message)
            and (change := postgres.parse_notification(m.payload)).key == GOOD
            and not change.spec
            and statuses.append(change.op)
        ),
    )
    counting.start()
    assert counting.wait_listening(30)
    state = embedded_state(database, store)
    runtime = local.runtime(state, only=(Throwaway,))
    stop = asyncio.Event()
    caplog.set_level(logging.INFO, logger="nebula.embedded")
    running = asyncio.create_task(runtime.run(stop))
    try:
        # Two transient failures, backed off, then Ready; then looked at again and again.
        await aeventually(lambda: Throwaway.looks[GOOD.name] >= 5)
        good = store.get(GOOD)
        assert good is not None and _reason(good.status, conditions.READY) == "Counted"
        bad = store.get(BAD)
        assert bad is not None and _reason(bad.status, conditions.STALLED) == "InvalidSpec"
        assert "spec.size" in bad.status["conditions"][0]["message"]
        assert Throwaway.looks[BAD.name] == 0
    finally:
        stop.set()
        await running
        counting.close()
    # One status write for the good one, however often it was looked at; one event.
    assert statuses == ["update"]
    told = [r.getMessage() for r in caplog.records if "Counted" in r.getMessage()]
    assert told == [f"{GOOD} Counted: ready"]
    assert any("will retry: the models' server" in r.getMessage() for r in caplog.records)


@pytest.fixture
def operator_kinds() -> tuple[kinds.Factory, ...]:
    return (Throwaway,)


def test_the_operator_runs_a_kind_from_its_registration_alone(
    k8s: emulator.Cluster, running_operator: Operator
) -> None:
    k8s.create(_document(GOOD.name, "4.9G"))
    k8s.create(_document(BAD.name, "lots"))

    eventually(lambda: Throwaway.looks[GOOD.name] >= 5)
    good = k8s.objects("NebulaModel")[GOOD]
    assert _reason(good.get("status"), conditions.READY) == "Counted"
    bad = eventually(lambda: (b := k8s.objects("NebulaModel")[BAD]).get("status") and b)
    assert _reason(bad["status"], conditions.STALLED) == "InvalidSpec"
    assert Throwaway.looks[BAD.name] == 0
    # One status write for the good one; one event about it.
    writes = [path for method, path in k8s.writes() if path.endswith(f"/{GOOD.name}/status")]
    assert len(writes) == 1, writes
    events = [
        body for method, path, body in k8s.requests()
        if method == "POST" and path.endswith("/events") and body["reason"] == "Counted"
    ]  # fmt: skip
    assert len(events) == 1
