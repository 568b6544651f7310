"""The embedded runtime: every kind's reconciler in-process, over the PostgreSQL store.

The counterpart of the kopf wiring in ``handlers.py``, for a machine without a cluster (``nebula
up``, ``nebula sync``). It runs the kinds of ``kinds.py``; each object gets one loop (like a kopf
daemon) that makes a :class:`~controllers.reconciling.Runner` pass, then waits for the delay the
pass returned, a change of the object's spec (a NOTIFY on the resources channel), a message on
one of its kind's channels, or a request (:meth:`EmbeddedRuntime.request`, the webhook's
trigger). Notifications come through the process's one :class:`~nebula.db.Listener`; after it
lost and regained PostgreSQL, every object is looked at again and the store listed again.

No loop ends on a failure: the store not answering backs off and tries again, the reconciler's
failures back off in the runner. :meth:`EmbeddedRuntime.problems` says what keeps it from
running as it should (for ``/healthz``). Blocking work runs in threads; the loop never blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import Callable, Mapping
from typing import Any

from controllers import outcomes, reconciling
from nebula import db, errors
from nebula.resources import ResourceKey
from nebula.store import PostgresStore, StoredObject, postgres

__all__ = ["NOT_LISTENING", "STORE_DOWN", "EmbeddedRuntime", "StoreSink", "resource_of"]

log = logging.getLogger("nebula.embedded")
Clock = Callable[[], datetime.datetime]
Kinds = Mapping[str, reconciling.Kind[Any, Any, Any]]

NOT_LISTENING = "not listening for changes: PostgreSQL does not answer"
"""A problem: changes and heartbeats are only seen at each object's next look meanwhile."""
STORE_DOWN = "the store does not answer: reconciling is paused"
"""A problem: no object is looked at until the store answers again."""
_STORE_RETRY_CAP = 5.0
"""Seconds between tries at most while the store is down: once it is back, every object is
looked at again within this (and at once when the LISTEN comes back first)."""


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def resource_of(stored: StoredObject) -> dict[str, Any]:
    """The object as a model reads it: the document with the store's generation."""
    document = dict(stored.document)
    document["metadata"] = {**document["metadata"], "generation": stored.generation}
    return document


class StoreSink:
    """Statuses into the PostgreSQL store; events into the log (the pages show the status)."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    def write_status(self, key: ResourceKey, status: Mapping[str, Any]) -> None:
        """Replaces the stored status; ResourceNotFound when the object is gone."""
        self._store.write_status(key, status)

    def event(self, key: ResourceKey, event: outcomes.Event, *, uid: str | None) -> None:
        """One log line: the object, the reason, the message; Warning events as warnings."""
        level = logging.INFO if event.type == "Normal" else logging.WARNING
        log.log(level, "%s %s: %s", key, event.reason, event.message)


class EmbeddedRuntime:
    """Runs the kinds over the PostgreSQL store until stopped; implements ``SyncTrigger``."""

    def __init__(
        self,
        *,
        store: PostgresStore,
        listener: db.Listener,
        kinds: Kinds,
        clock: Clock = _utcnow,
    ) -> None:
        self._store, self._listener, self._kinds, self._clock = store, listener, kinds, clock
        self._sink = StoreSink(store)
        self._loops: dict[ResourceKey, asyncio.Task[None]] = {}
        self._wake: dict[ResourceKey, asyncio.Event] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = asyncio.Event()
        self._relist = asyncio.Event()
        self._store_down = False  # the last store call of any loop failed
        self.reconciles = 0  # passes made (for tests and benchmarks)

    async def wait_ready(self) -> None:
        """Returns once every stored object has its loop (the store answered once)."""
        await self._ready.wait()

    def problems(self) -> list[str]:
        """What keeps the runtime from reconciling as it should, for people; empty: nothing."""
        found = []
        if self._loop is not None and not self._listener.listening:
            found.append(NOT_LISTENING)
        if self._store_down:
            found.append(STORE_DOWN)
        return found

    def request(self, source: ResourceKey) -> None:
        """Wakes an object's loop now (thread-safe): the webhook's and the CLI's trigger."""
        self._call_soon(self._touch, source)

    async def run(self, stop: asyncio.Event) -> None:
        """Reconciles until ``stop`` is set, then ends every loop and returns; never raises
        for the store or PostgreSQL not answering (it waits for them)."""
        self._loop = asyncio.get_running_loop()
        channels = {channel for kind in self._kinds.values() for channel in kind.wakes_on}
        unsubscribe = self._listener.subscribe([postgres.CHANNEL, *channels], self._heard)
        self._listener.start()
        stopping = asyncio.ensure_future(stop.wait())
        try:
            # Listening first, so no change made while the store is listed goes unseen; not
            # for ever: without PostgreSQL the lists below wait for it anyway.
            await asyncio.to_thread(self._listener.wait_listening, 10.0)
            while not stop.is_set():
                await self._discover(stop)
                self._ready.set()
                self._relist.clear()
                relisting = asyncio.ensure_future(self._relist.wait())
                await asyncio.wait({stopping, relisting}, return_when=asyncio.FIRST_COMPLETED)
                relisting.cancel()
        finally:
            unsubscribe()
            stopping.cancel()
            for task in self._loops.values():
                task.cancel()
            await asyncio.gather(*self._loops.values(), return_exceptions=True)
            self._loops.clear()

    async def _discover(self, stop: asyncio.Event) -> None:
        """Starts a loop for every stored object of every kind; waits while the store is down."""
        attempt = 1
        while not stop.is_set():
            try:
                for kind in self._kinds:
                    for stored in await asyncio.to_thread(self._store.list, kind):
                        self._start(stored.key)
                self._store_down = False
                return
            # The store is down (or failed unexpectedly): nothing can be reconciled until it
            # answers; try again.
            except Exception as error:
                self._store_down = True
                delay = reconciling.retry_delay(attempt, first=1.0, cap=_STORE_RETRY_CAP)
                log.warning("listing the store failed, trying again in %.0fs: %s", delay, error)
                attempt += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)

    # --- Notifications (called on the listener's thread) ---------------------------------

    def _heard(self, message: db.Message | db.Missed) -> None:
        if isinstance(message, db.Missed):
            self._call_soon(self._missed)
        elif message.channel == postgres.CHANNEL:
            change = postgres.parse_notification(message.payload)
            # A status write is the runtime's own doing: it must not wake the loop again.
            if change.spec:
                self._call_soon(self._touch, change.key)
        else:
            for kind, found in self._kinds.items():
                if message.channel in found.wakes_on:
                    self._call_soon(self._touch_kind, kind)

    def _call_soon(self, callback: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        # The loop is closed (the runtime stopped before the listener): nobody to wake.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(callback, *args)

    # --- On the event loop ---------------------------------------------------------------

    def _missed(self) -> None:
        """PostgreSQL came back: look at everything again, and list what was made meanwhile."""
        for wake in self._wake.values():
            wake.set()
        self._relist.set()

    def _touch(self, key: ResourceKey) -> None:
        if key in self._wake:
            self._wake[key].set()
        else:
            self._start(key)

    def _touch_kind(self, kind: str) -> None:
        for key, wake in self._wake.items():
            if key.kind == kind:
                wake.set()

    def _start(self, key: ResourceKey) -> None:
        if key.kind not in self._kinds or key in self._loops:
            return
        self._wake[key] = asyncio.Event()
        self._loops[key] = asyncio.create_task(self._object_loop(key), name=f"nebula-{key}")

    async def _object_loop(self, key: ResourceKey) -> None:
        kind = self._kinds[key.kind]
        runner = reconciling.Runner(kind, key, sink=self._sink, clock=self._clock, log=log)
        wake = self._wake[key]
        last: Any = None  # the object as last parsed: what a deletion cleans up after
        attempt = 1  # consecutive failures to read the object
        delay: float | None
        try:
            while True:
                wake.clear()
                try:
                    stored = await asyncio.to_thread(self._store.get, key)
                # The store is down (or failed unexpectedly): this object waits for it, like
                # every other one; nothing ends the loop but the object's deletion.
                except Exception as error:
                    self._store_down = isinstance(error, errors.TransientError)
                    delay = reconciling.retry_delay(attempt, first=1.0, cap=_STORE_RETRY_CAP)
                    log.warning("%s: the store did not answer, retrying: %s", key, error)
                    attempt += 1
                    await self._wait(wake, delay)
                    continue
                self._store_down, attempt = False, 1
                if stored is None:
                    if await self._deleted(kind, key, last, wake):
                        return  # deleted and cleaned up after: its loop ends with it
                    continue
                document = resource_of(stored)
                parsed = runner.parse(document)
                last = parsed if not isinstance(parsed, str) else last
                delay = await asyncio.to_thread(runner.run, document, stored.status, uid=None)
                self.reconciles += 1
                await self._wait(wake, delay)
        finally:
            self._loops.pop(key, None)
            self._wake.pop(key, None)

    async def _deleted(
        self,
        kind: reconciling.Kind[Any, Any, Any],
        key: ResourceKey,
        last: Any,
        wake: asyncio.Event,
    ) -> bool:
        """Cleans up after a deleted object; False when it must be tried again (the store or
        the history did not answer), after a pause."""
        if last is None or not kind.finalizes:
            return True
        try:
            await asyncio.to_thread(kind.deleted, last)
        # The store or the history is down: try again while this process still knows the spec.
        except errors.TransientError as error:
            log.warning("cleaning up after the deleted %s failed, retrying: %s", key, error)
            await self._wait(wake, reconciling.FIRST_RETRY)
            return False
        # Anything else will not pass by retrying: what the object left behind stays.
        except Exception:
            log.exception("cleaning up after the deleted %s failed", key)
        return True

    @staticmethod
    async def _wait(wake: asyncio.Event, delay: float | None) -> None:
        # When the delay passes without a change or a request, it is time to look again.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=delay)
