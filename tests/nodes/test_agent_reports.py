"""The node agent as the embedded runtime and the web API see it: heartbeats in, Ready out."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import subprocess
import sys
from collections.abc import AsyncIterator

import httpx
import pytest

from api import app as web
from controllers import local, nebula_node
from nebula import db, hardware, heartbeats
from nebula.resources import ResourceKey, fields
from nebula.secrets import EnvironmentSecrets
from nebula.store import PostgresStore
from nebula.sync import History
from nodes import agent as node_agent
from tests.conftest import EmbeddedState

NODE = ResourceKey("NebulaNode", None, "this-machine")


def _declare(store: PostgresStore, interval: str) -> None:
    store.put(
        {
            "apiVersion": "nebula.dev/v1alpha1",
            "kind": "NebulaNode",
            "metadata": {"name": NODE.name},
            "spec": {
                "role": "worker",
                "runtime": "docker",
                "addresses": [{"type": "lan", "address": "192.0.2.250"}],
                "agent": {"heartbeatInterval": interval},
            },
        }
    )


def _ready(store: PostgresStore) -> tuple[str, str] | None:
    stored = store.get(NODE)
    found = [
        c for c in (stored.status if stored else {}).get("conditions", []) if c["type"] == "Ready"
    ]
    return (found[0]["status"], found[0]["reason"]) if found else None


async def _until(check: object, *, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "gave up waiting"
        await asyncio.sleep(0.05)


@pytest.fixture
async def store(database: str) -> AsyncIterator[PostgresStore]:
    db.migrate(database)
    opened = PostgresStore(database).open()
    yield opened
    opened.close()


async def test_a_reporting_agent_makes_its_node_ready_and_a_stopped_one_not(
    database: str, store: PostgresStore, embedded_state: EmbeddedState
) -> None:
    _declare(store, "1s")
    beats = heartbeats.HeartbeatStore(database)
    runtime = local.runtime(embedded_state(database, store), only=(nebula_node.NebulaNodeKind,))
    agent = node_agent.Agent(node=NODE.name, interval=0.3, link=node_agent.DatabaseLink(beats))
    stop_runtime, stop_agent = asyncio.Event(), asyncio.Event()
    running = asyncio.create_task(runtime.run(stop_runtime))
    try:
        await runtime.wait_ready()
        reporting = asyncio.create_task(agent.run(stop_agent))
        await _until(lambda: _ready(store) == ("True", "Reporting"))
        stored = store.get(NODE)
        assert stored is not None
        assert stored.status["hardware"]["cpu"]["cores"] == os.cpu_count()
        assert stored.status["vramTier"] == "cpu"

        stop_agent.set()
        await reporting
        started = asyncio.get_running_loop().time()
        await _until(lambda: _ready(store) == ("False", "HeartbeatStale"))
        # Three of the agent's own intervals (0.3s), whatever the declared one (1s) says.
        assert asyncio.get_running_loop().time() - started < 3.0 + 1.5
    finally:
        stop_runtime.set()
        await running


async def test_remote_agents_report_through_the_api_with_the_token(
    database: str, store: PostgresStore, embedded_state: EmbeddedState
) -> None:
    beats = heartbeats.HeartbeatStore(database)
    app = web.create_app(
        store=store,
        runs=History(database),
        trigger=local.runtime(embedded_state(database, store), only=()),
        secrets=EnvironmentSecrets({}),
        heartbeats=beats,
        agent_token="s3cret-agent-token",
    )
    beat = node_agent.heartbeat("windows-vm", 15.0)
    body = beat.model_dump(mode="json", by_alias=True, exclude_none=True)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://nebula") as client:
        refused = await client.post("/api/v1/agents/heartbeat", json=body)
        wrong = await client.post(
            "/api/v1/agents/heartbeat", json=body, headers={"Authorization": "Bearer nope"}
        )
        taken = await client.post(
            "/api/v1/agents/heartbeat",
            json=body,
            headers={"Authorization": "Bearer s3cret-agent-token"},
        )

    assert (refused.status_code, wrong.status_code, taken.status_code) == (401, 401, 204)
    [kept] = beats.all()
    assert kept.node == "windows-vm" and kept.hardware == beat.hardware
    assert kept.received_at is not None


def test_agent_once_prints_this_machines_inventory_as_json() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "nebula", "agent", "--once", "--output", "json", "--node", "me"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["node"] == "me"
    assert report["hardware"]["cpu"]["cores"] == os.cpu_count()
    total_kib = int(pathlib.Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
    assert fields.parse_quantity(report["hardware"]["memory"]) == total_kib * 1024
    assert report["hardware"]["gpus"] == []


def test_agent_once_prints_sizes_as_the_pages_show_them() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "nebula", "agent", "--once", "--node", "me"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    total_kib = int(pathlib.Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
    assert f"  memory  {hardware.human(total_kib * 1024)}\n" in result.stdout
    assert "Ki " not in result.stdout and "Ki\n" not in result.stdout
