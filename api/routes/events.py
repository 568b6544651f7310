"""``GET /events``: server-sent events when a change request or a resource moves.

The pages' little script (``static/live.js``) listens here and refreshes what it shows. One
:class:`Feed` per app does the listening: a thread of its own holds one LISTEN connection
(channels ``nebula_changes`` and ``nebula_resources``) and hands every announcement to the
event loop, where each open stream has an asyncio queue. Events::

    event: change      data: {"id": 7, "state": "merged", "title": "Add model ..."}
    event: resource    data: {"kind": "NebulaModel", "namespace": "ai", "name": "...", "op": ...}
    event: resync      data: {}     (the LISTEN was lost and is back: something may be missed)

plus a comment every :data:`HEARTBEAT` seconds, so proxies keep an idle stream open. A stream
sends its headers only once the LISTEN is in place: a client whose stream is open misses no
move made after that. A stream ends when the client goes away, and when the feed closes. The
runtime owns the feed and closes it *before* it stops the web server, since uvicorn waits for
every open response to finish before it stops. Nothing here writes, and no business rule lives
here: the feed only says *that* something moved.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import threading
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import anyio
import fastapi
import psycopg
import starlette.responses
import starlette.types

from api import auth, deps
from nebula import errors
from nebula.changes import requests
from nebula.store import postgres

__all__ = [
    "HEARTBEAT",
    "LISTEN_WAIT",
    "RETRY",
    "Feed",
    "LiveEvent",
    "Stream",
    "events",
    "router",
]

log = logging.getLogger(__name__)

router = fastapi.APIRouter()

HEARTBEAT = 15.0
"""Seconds between keep-alive comments on an idle stream."""
RETRY = 3000
"""Milliseconds a browser waits before it reconnects a dropped stream (``retry:``)."""
LISTEN_WAIT = 5.0
"""Seconds a new stream waits for the LISTEN before it opens anyway (PostgreSQL is down)."""
_QUEUE = 256


@dataclasses.dataclass(frozen=True)
class LiveEvent:
    """One server-sent event: its name and its JSON data."""

    name: Literal["change", "resource", "resync"]
    data: dict[str, Any]

    def encode(self) -> bytes:
        """The event as it goes on the wire (``event:``, ``data:``, a blank line)."""
        return f"event: {self.name}\ndata: {json.dumps(self.data, sort_keys=True)}\n\n".encode()


# What a subscriber's queue carries: an event, or None for "the stream ends now".
_Item = LiveEvent | None


class Feed:
    """The LISTEN of one app, fanned out to every open stream.

    The listening thread starts with the first subscriber and runs until :meth:`close`. When
    PostgreSQL goes away it listens again after ``reconnect`` seconds and then sends ``resync``
    (announcements made meanwhile are lost). A subscriber too slow to take ``queue_size`` events
    loses the newest ones: the events it still holds make its page refresh anyway.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        heartbeat: float = HEARTBEAT,
        poll: float = 0.25,
        reconnect: float = 5.0,
        queue_size: int = _QUEUE,
    ) -> None:
        self._conninfo = conninfo
        self.heartbeat = heartbeat
        self._poll = poll  # seconds between looks at the stop flag while nothing is announced
        self._reconnect = reconnect
        self._queue_size = queue_size
        self._changes = requests.ChangeStore(conninfo)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        # The loop the streams run on, and its view of the LISTEN; touched on that loop only.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Event | None = None
        self._subscribers: set[asyncio.Queue[_Item]] = set()

    @property
    def subscribers(self) -> int:
        """How many streams are open right now."""
        return len(self._subscribers)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called: every stream ends, new ones end at once."""
        return self._stopping.is_set()

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[asyncio.Queue[_Item]]:
        """A queue of the events announced while the block runs; enter it on the event loop.

        The first subscriber starts the listening thread. None in the queue ends the stream.
        """
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop, self._ready = loop, asyncio.Event()
        elif self._loop is not loop:
            raise RuntimeError("a Feed serves the streams of one event loop")
        queue: asyncio.Queue[_Item] = asyncio.Queue(self._queue_size)
        if self.closed:
            queue.put_nowait(None)
        elif self._thread is None:
            self._thread = threading.Thread(target=self._run, name="nebula-events", daemon=True)
            self._thread.start()
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    async def ready(self, timeout: float = LISTEN_WAIT) -> bool:
        """Waits until the LISTEN is in place; False after ``timeout`` seconds or once closed."""
        if self._ready is None or self.closed:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout)
        return self._ready.is_set() and not self.closed

    def close(self) -> None:
        """Ends every stream and stops listening; waits for the thread (at most one poll).

        Safe to call twice and from any thread; call it before stopping the web server.
        """
        self._stopping.set()
        self._call_on_loop(self._end_all)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    # --- On the listening thread ---------------------------------------------------------

    def _run(self) -> None:
        first = True
        while not self._stopping.is_set():
            try:
                self._listen(resync=not first)
            # PostgreSQL is down, refused us, or dropped the connection: listen again later.
            except psycopg.Error as error:
                self._call_on_loop(self._lost)
                log.warning(
                    "live updates paused, listening again in %ss: %s", self._reconnect, error
                )
                self._stopping.wait(self._reconnect)
            first = False

    def _listen(self, *, resync: bool) -> None:
        changes = postgres.listen(self._conninfo, timeout=self._poll, channels=[requests.CHANNEL])
        try:
            announced = False
            for item in changes:
                if self._stopping.is_set():
                    return
                if not announced:
                    announced = True
                    self._call_on_loop(self._listening)
                    if resync:
                        self._publish(LiveEvent("resync", {}))
                if item is not None:
                    self._publish(self._event(item))
        finally:
            changes.close()

    def _event(self, item: postgres.Notification | postgres.Signal) -> LiveEvent:
        if isinstance(item, postgres.Notification):
            key = item.key
            data = {"kind": key.kind, "namespace": key.namespace, "name": key.name, "op": item.op}
            return LiveEvent("resource", data)
        # Only requests.CHANNEL is listened to besides the resources; its payload is the id.
        change = int(item.payload)
        try:
            found = self._changes.get(change)
        # Gone already, or the database went away between the NOTIFY and this look.
        except (errors.ResourceNotFound, errors.StoreUnavailable):
            return LiveEvent("change", {"id": change, "state": None, "title": None})
        return LiveEvent("change", {"id": change, "state": found.state, "title": found.title})

    def _publish(self, event: LiveEvent) -> None:
        self._call_on_loop(self._fan_out, event)

    def _call_on_loop(self, callback: Any, *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(callback, *args)
        # The loop is closed (the app stopped before its feed did): nobody to tell.
        except RuntimeError:
            return

    # --- On the event loop ---------------------------------------------------------------

    def _listening(self) -> None:
        if self._ready is not None:
            self._ready.set()

    def _lost(self) -> None:
        if self._ready is not None:
            self._ready.clear()

    def _fan_out(self, event: LiveEvent) -> None:
        for queue in self._subscribers:
            # A full queue already holds events enough to refresh the page: drop this one.
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(event)

    def _end_all(self) -> None:
        if self._ready is not None:
            self._ready.set()  # wakes streams still waiting for the LISTEN: they end at once
        for queue in self._subscribers:
            # A full queue cannot take the end: make room for it (the events are moot now).
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(None)


class Stream(starlette.responses.Response):
    """The ``text/event-stream`` response of one subscriber of a :class:`Feed`."""

    media_type = "text/event-stream"

    def __init__(self, feed: Feed) -> None:
        # Not Response.__init__: it would render an empty body and send Content-Length: 0.
        self.status_code = 200
        self.background = None
        self.init_headers({"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        self._feed = feed

    async def __call__(
        self,
        scope: starlette.types.Scope,
        receive: starlette.types.Receive,
        send: starlette.types.Send,
    ) -> None:
        with self._feed.subscribe() as queue:
            await self._feed.ready()
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            gone = False
            async with anyio.create_task_group() as group:

                async def watch() -> None:
                    nonlocal gone
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    gone = True
                    group.cancel_scope.cancel()

                group.start_soon(watch)
                try:
                    await self._pump(queue, send)
                # The client went away while we wrote (servers other than uvicorn say so).
                except OSError:
                    gone = True
                group.cancel_scope.cancel()
            if not gone:
                with contextlib.suppress(OSError):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _pump(self, queue: asyncio.Queue[_Item], send: starlette.types.Send) -> None:
        """Writes events as they come, a comment when idle; returns when the feed ends it."""
        await self._write(send, f"retry: {RETRY}\n: live\n\n".encode())
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), self._feed.heartbeat)
            except TimeoutError:
                await self._write(send, b": keep-alive\n\n")
                continue
            if item is None:
                return
            await self._write(send, item.encode())

    @staticmethod
    async def _write(send: starlette.types.Send, body: bytes) -> None:
        await send({"type": "http.response.body", "body": body, "more_body": True})


Services = Annotated[deps.Services, fastapi.Depends(deps.get_services)]


@router.get(
    "/events",
    name="events",
    response_class=Stream,
    status_code=fastapi.status.HTTP_200_OK,
    response_description="The stream of events.",
    responses={
        200: {"content": {"text/event-stream": {}}},
        204: {"description": "This server has no live updates (no feed); do not reconnect."},
    },
    tags=["events"],
)
def events(services: Services, user: auth.Viewer) -> starlette.responses.Response:
    """Server-sent events: ``change`` (id, state) and ``resource`` (kind, namespace, name).

    The stream stays open; a comment every 15 s keeps it alive. 204 where there is no feed.
    """
    if services.events is None:
        return starlette.responses.Response(status_code=fastapi.status.HTTP_204_NO_CONTENT)
    return Stream(services.events)
