"""``GET /events``: server-sent events over a real uvicorn server and a real PostgreSQL LISTEN.

The app is the guarded one of ``test_changes_pages`` (its fixtures), served by uvicorn on a
free local port, so the stream really streams (httpx's in-process transport would wait for the
response to end). A stream must end when its client goes away, and every stream when the feed
closes, so that the server stops at once: nothing here may hang, and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import collections.abc
import contextlib
import json
from typing import Any

import fastapi
import httpx
import pytest
import uvicorn

from api.routes import events
from nebula.changes import ChangeService
from nebula.store import PostgresStore
from tests.api.conftest import TOKENS
from tests.api.test_changes_pages import (
    ADA,
    ADD_TO_VM,
    change_service,
    changes_app,
    feed,
)

# Fixtures shared with the pages' tests (pytest finds them by name in this module).
__all__ = ["change_service", "changes_app", "feed"]

VIEWER = {"Authorization": f"Bearer {TOKENS['dashboard'][0]}"}
WAIT = 10.0
"""The longest any step may take, in seconds; each usually takes milliseconds."""


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: pytest keeps Ctrl-C."""

    @contextlib.contextmanager
    def capture_signals(self) -> collections.abc.Iterator[None]:
        yield


@pytest.fixture
async def served(changes_app: fastapi.FastAPI) -> collections.abc.AsyncIterator[str]:
    """The base URL of ``changes_app`` served by uvicorn on a free port; stopped afterwards."""
    config = uvicorn.Config(
        changes_app, host="127.0.0.1", port=0, lifespan="off", log_level="warning"
    )
    server = _Server(config)
    serving = asyncio.create_task(server.serve())
    async with asyncio.timeout(WAIT):
        while not server.started:
            await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    # The feed's fixture closes it only after this one: the server must stop with streams gone.
    server.should_exit = True
    async with asyncio.timeout(WAIT):
        await serving


class Events:
    """Reads a server-sent event stream: events (name, data) and comments, as they come."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.aiter_lines()

    async def next(self) -> tuple[str, Any]:
        """The next event or comment: ``("change", {...})``, or ``(":", "keep-alive")``."""
        name, data = "", ""
        async with asyncio.timeout(WAIT):
            async for line in self._lines:
                if line.startswith(":"):
                    return ":", line[1:].strip()
                if line.startswith("event: "):
                    name = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    data = line.removeprefix("data: ")
                elif line == "" and name:
                    return name, json.loads(data)
        return "end", None

    async def until(self, name: str) -> Any:
        """The data of the next event called ``name``; others are skipped."""
        while True:
            found, data = await self.next()
            if found == name:
                return data
            assert found != "end", f"the stream ended before a {name} event"


async def _until(check: collections.abc.Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT):
        while not check():
            await asyncio.sleep(0.01)


async def test_a_subscriber_hears_each_move_of_a_change_and_of_a_resource(
    served: str, change_service: ChangeService, store: PostgresStore
) -> None:
    change = await asyncio.to_thread(change_service.open, ADD_TO_VM, requester=ADA, origin="cli")
    async with (
        httpx.AsyncClient(base_url=served, headers=VIEWER) as client,
        client.stream("GET", "/events") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-store"
        stream = Events(response)
        # Headers come once the LISTEN is in place: from here on, nothing is missed.
        assert await stream.next() == (":", "live")

        await asyncio.to_thread(change_service.approve, change.id, approver=ADA)
        approved = await stream.until("change")
        merged = await stream.until("change")
        await asyncio.to_thread(
            store.put,
            {
                "apiVersion": "nebula.dev/v1alpha1",
                "kind": "NebulaNode",
                "metadata": {"name": "windows-vm"},
                "spec": {"role": "ai", "runtime": "docker", "os": "windows"},
            },
        )
        resource = await stream.until("resource")

    title = "Add model llama3-1-8b to node windows-vm"
    assert approved == {"id": change.id, "state": "approved", "title": title}
    assert merged == {"id": change.id, "state": "merged", "title": title}
    assert resource == {
        "kind": "NebulaNode",
        "namespace": None,
        "name": "windows-vm",
        "op": "insert",
    }


async def test_a_stream_ends_when_its_client_goes_away(served: str, feed: events.Feed) -> None:
    async with httpx.AsyncClient(base_url=served, headers=VIEWER) as client:
        async with client.stream("GET", "/events") as response:
            assert await Events(response).next() == (":", "live")
            assert feed.subscribers == 1
        # Leaving the block closed the connection.
        await _until(lambda: feed.subscribers == 0)


async def test_closing_the_feed_ends_every_stream_and_the_server_then_stops_at_once(
    served: str, feed: events.Feed
) -> None:
    async with httpx.AsyncClient(base_url=served, headers=VIEWER) as client:
        async with (
            client.stream("GET", "/events") as first,
            client.stream("GET", "/events") as second,
        ):
            streams = [Events(first), Events(second)]
            for stream in streams:
                assert await stream.next() == (":", "live")

            await asyncio.to_thread(feed.close)

            for stream in streams:
                assert await stream.next() == ("end", None)
        # A stream asked for after the close ends at once, with nothing in it.
        late = await client.get("/events")
    assert late.status_code == 200 and late.text == f"retry: {events.RETRY}\n: live\n\n"
    assert feed.subscribers == 0
    # ...and the fixture's teardown then stops uvicorn within its bounded wait.


@pytest.fixture
def feed_beating(database: str, store: PostgresStore) -> collections.abc.Iterator[events.Feed]:
    """A feed whose idle streams get a keep-alive comment every 50 ms instead of 15 s."""
    opened = events.Feed(database, heartbeat=0.05)
    yield opened
    opened.close()


async def test_an_idle_stream_gets_keep_alive_comments(feed_beating: events.Feed) -> None:
    app = fastapi.FastAPI()
    app.add_api_route("/events", lambda: events.Stream(feed_beating))
    server = _Server(uvicorn.Config(app, port=0, lifespan="off", log_level="warning"))
    serving = asyncio.create_task(server.serve())
    try:
        await _until(lambda: server.started)
        port = server.servers[0].sockets[0].getsockname()[1]
        async with (
            httpx.AsyncClient() as client,
            client.stream("GET", f"http://127.0.0.1:{port}/events") as response,
        ):
            stream = Events(response)
            assert await stream.next() == (":", "live")
            assert await stream.next() == (":", "keep-alive")
            assert await stream.next() == (":", "keep-alive")
    finally:
        await asyncio.to_thread(feed_beating.close)
        server.should_exit = True
        async with asyncio.timeout(WAIT):
            await serving


async def test_the_anonymous_get_no_events_from_a_guarded_app(served: str) -> None:
    async with httpx.AsyncClient(base_url=served) as client:
        response = await client.get("/events")

    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fevents"
