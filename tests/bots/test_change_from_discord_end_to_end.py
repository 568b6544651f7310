"""End to end: ``/nebula model add`` → a change → approved through the web API → applied by the
embedded runtime's sync → the notice the bot posts in the channel it was asked in.

Everything is real but Discord itself: the bare remote, PostgreSQL (LISTEN/NOTIFY carries the
change's moves to the announcer), the change service, the FastAPI app, the embedded runtime.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import httpx

import api
from bots import notifications
from controllers import git_source, local
from nebula.changes import ChangeStore
from nebula.resources import ResourceKey, conditions
from nebula.resources.git_source import GitSourceStatus
from nebula.secrets import EnvironmentSecrets
from nebula.sync import History
from tests.bots.conftest import ADA, CHANNEL, GUILD, SOURCE, UI_URL, Homelab
from tests.conftest import EmbeddedState

LLAMA = ResourceKey("NebulaModel", "default", "llama3-1-8b")


async def _until(check: Callable[[], bool], *, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "gave up waiting"
        await asyncio.sleep(0.05)


def _synced(homelab: Homelab) -> bool:
    stored = homelab.store.get(SOURCE)
    status = GitSourceStatus.model_validate(stored.status) if stored and stored.status else None
    return conditions.is_ready(status)


async def test_a_model_added_from_discord_is_approved_applied_and_announced_in_its_channel(
    homelab: Homelab, embedded_state: EmbeddedState
) -> None:
    # The bot's announcer listens before anything moves.
    notices: list[notifications.Notice] = []
    announcer = notifications.Announcer(ChangeStore(homelab.conninfo), ui_url=UI_URL)
    stop_listening, listening = threading.Event(), threading.Event()
    listener = threading.Thread(
        target=notifications.listen,
        args=(homelab.conninfo, announcer, notices.append),
        kwargs={"stop": stop_listening, "listening": listening, "poll": 0.1},
    )
    listener.start()
    # The embedded runtime syncs the GitSource (and again on every move of a change).
    runtime = local.runtime(
        embedded_state(homelab.conninfo, homelab.store), only=(git_source.GitSourceKind,)
    )
    stop_runtime = asyncio.Event()
    running = asyncio.create_task(runtime.run(stop_runtime))
    app = api.create_app(
        store=homelab.store,
        runs=History(homelab.conninfo),
        trigger=runtime,
        secrets=EnvironmentSecrets({}),
        changes=homelab.changes,
    )
    try:
        await runtime.wait_ready()
        await asyncio.to_thread(listening.wait, 10)
        await _until(lambda: _synced(homelab))

        # Someone with the Admins role asks in the channel.
        reply = await asyncio.to_thread(
            homelab.handlers.model_add, ADA, model="llama3-1-8b", node="windows-vm"
        )
        assert reply.change is not None and not reply.ephemeral

        # An approver approves through the web JSON API.
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://nebula.test"
        ) as client:
            approved = await client.post(f"/api/v1/changes/{reply.change}/approve")
        assert approved.status_code == 200, approved.text
        assert approved.json()["state"] in ("merged", "applied")

        # The runtime's sync applies the merge; the change follows to applied; the bot says so.
        await _until(lambda: any(n.state == "applied" for n in notices))
    finally:
        stop_runtime.set()
        await running
        stop_listening.set()
        await asyncio.to_thread(listener.join)

    change = homelab.changes.store.get(reply.change)
    assert change.state == "applied"
    stored = homelab.store.get(LLAMA)
    assert stored is not None
    assert stored.document["spec"]["placement"]["nodes"] == ["home-ubuntu", "windows-vm"]
    # Each move is posted once, in the channel the command was run in, in order.
    said = [n.state for n in notices]
    assert said in (["approved", "merged", "applied"], ["merged", "applied"]), said
    applied = notices[-1]
    assert applied.destination == notifications.Destination(GUILD, CHANNEL)
    assert applied.change == reply.change
    assert applied.text == (
        f"<@{ADA.user_id}> change #{reply.change} (Add model llama3-1-8b to node windows-vm) "
        f"is applied: the homelab runs it now.\n{UI_URL}/changes/{reply.change}"
    )
