"""Fixtures of the controller tests: kmock's Kubernetes emulator, and the kopf operator on it.

``k8s`` serves the emulator from its own thread (``emulator.py``); ``running_operator`` runs the
real operator in-process, on a thread and loop of its own (its own registry, settings and memo,
nothing global), logged in to the emulator, with a migrated PostgreSQL database for the sync
history. Bare git remotes come from the top-level conftest (``git_remote``, ``homelab_remote``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import kopf
import pytest

from controllers import handlers, kinds, operator
from nebula import db
from nebula.store import kubernetes as kubernetes_store
from tests.controllers import emulator


@pytest.fixture
def k8s() -> Iterator[emulator.Cluster]:
    """kmock's emulator with every resource the operator uses, served on a local port."""
    with emulator.serve() as cluster:
        yield cluster


@dataclasses.dataclass(frozen=True)
class Operator:
    """The running operator: what it shares with its handlers, and its database."""

    runtime: operator.Runtime
    database: str
    liveness: str  # kopf's liveness endpoint, as `nebula operator --liveness` serves it


@pytest.fixture
def operator_kinds() -> tuple[kinds.Factory, ...]:
    """The kinds the operator runs: all of them, unless a test module says otherwise."""
    return kinds.KINDS


@pytest.fixture
def running_operator(
    k8s: emulator.Cluster,
    database: str,
    tmp_path: pathlib.Path,
    operator_kinds: tuple[kinds.Factory, ...],
) -> Iterator[Operator]:
    """The kopf operator, cluster-wide and standalone, until the test ends.

    It runs on a loop of its own: when kopf exits it cancels every task created on its loop
    after it started, which on the test's loop would include pytest's own teardown. It is
    stopped by cancelling it (a stop flag costs kopf 5 s) before the emulator closes (against
    a closed port kopf retries for a minute); then the syncs in flight are waited for.
    """
    db.migrate(database)
    api = kubernetes_store.connect(k8s.url)
    runtime = operator.Runtime(
        api=api,
        database_url=database,
        state_dir=tmp_path / "state",
        server=k8s.url,
        only=operator_kinds,
    )
    ready = threading.Event()
    stop = threading.Event()
    failures: list[BaseException] = []
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        liveness = f"http://127.0.0.1:{probe.getsockname()[1]}/healthz"

    async def main() -> None:
        task = asyncio.create_task(
            kopf.operator(
                registry=handlers.registry(operator_kinds),
                settings=kopf.OperatorSettings(),
                memo=handlers.Memo(runtime),
                clusterwide=True,
                standalone=True,
                ready_flag=ready,
                liveness_endpoint=liveness,
            )
        )
        await asyncio.to_thread(stop.wait)
        task.cancel()
        outcome: list[Any] = await asyncio.gather(task, return_exceptions=True)
        failures.extend(e for e in outcome if e and not isinstance(e, asyncio.CancelledError))

    thread = threading.Thread(target=asyncio.run, args=(main(),), name="kopf")
    thread.start()
    try:
        assert ready.wait(timeout=10), "the operator did not start"
        yield Operator(runtime, database, liveness)
    finally:
        stop.set()
        thread.join(timeout=20)
        runtime.close()
        api.close()
    assert not failures, failures
