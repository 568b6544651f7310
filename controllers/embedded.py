"""The embedded runtime: every reconciler in-process, over the PostgreSQL store (``nebula up``).

The counterpart of the kopf wiring in ``handlers.py``, for a machine without a cluster. Each
object a controller handles gets one loop (like a kopf daemon): reconcile, write the status,
then wait for the retry delay, a change of the object's spec (LISTEN/NOTIFY), or a request
(:meth:`EmbeddedRuntime.request`, the webhook's trigger). Transient failures back off through
the reconciler's own delays. Blocking work runs in threads; the loop never blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import pathlib
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from controllers import bot_config, git_source, nebula_node, outcomes
from nebula import bot_reports, errors, heartbeats
from nebula.changes import ChangeStore
from nebula.resources import ResourceKey
from nebula.resources.bot_config import BotConfig, BotConfigStatus
from nebula.resources.git_source import GitSource, GitSourceStatus
from nebula.resources.nebula_node import NebulaNode, NebulaNodeStatus
from nebula.secrets import Secrets
from nebula.sources import Mirror
from nebula.store import PostgresStore, StoredObject, postgres
from nebula.sync import FileCache, History

__all__ = [
    "BotConfigController",
    "Controller",
    "EmbeddedRuntime",
    "GitSourceController",
    "NebulaNodeController",
    "Step",
    "resource_of",
]

log = logging.getLogger("nebula.embedded")
Clock = Callable[[], datetime.datetime]


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclasses.dataclass(frozen=True)
class Step:
    """What one reconcile of one object decided."""

    status: Mapping[str, Any] | None  # None: leave the status as it is
    retry_after: float | None  # seconds; None: only when the object changes
    transient: bool = False
    event: outcomes.Event | None = None


class Controller(Protocol):
    """One kind's reconciler as the embedded runtime runs it (blocking; called in a thread)."""

    kind: str
    channels: tuple[str, ...]
    """NOTIFY channels whose messages wake every object of the kind (e.g. heartbeats)."""

    def reconcile(self, stored: StoredObject, *, attempt: int) -> Step:
        """Reconciles one object; ``attempt`` counts consecutive transient failures."""
        ...

    def deleted(self, key: ResourceKey) -> None:
        """The object is gone: clean up after it (e.g. prune what a GitSource applied)."""
        ...


def resource_of(stored: StoredObject) -> dict[str, Any]:
    """The object as a model reads it: the document with the store's generation."""
    document = dict(stored.document)
    document["metadata"] = {**document["metadata"], "generation": stored.generation}
    return document


class GitSourceController:
    """Syncs GitSources; keeps one mirror and one file cache per source."""

    kind = "GitSource"
    # A change request moved (merged, most likely): look at the sources now, not at the next
    # interval, whichever process merged it.
    channels: tuple[str, ...] = ("nebula_changes",)

    def __init__(
        self,
        *,
        store: PostgresStore,
        runs: History,
        secrets: Secrets,
        state_dir: pathlib.Path,
        changes: ChangeStore | None = None,
        clock: Clock = _utcnow,
    ) -> None:
        self._store, self._runs, self._secrets, self._clock = store, runs, secrets, clock
        self._changes = changes
        self._state_dir = state_dir
        self._caches: dict[ResourceKey, FileCache] = {}
        self._known: dict[ResourceKey, GitSource] = {}  # the last spec seen, for deleted()

    def reconcile(self, stored: StoredObject, *, attempt: int) -> Step:
        """Syncs one GitSource and returns its status and next run."""
        source = GitSource.model_validate(resource_of(stored))
        self._known[stored.key] = source
        previous = GitSourceStatus.model_validate(stored.status) if stored.status else None
        key = stored.key
        outcome = git_source.reconcile(
            source,
            mirror=Mirror(self._state_dir / "mirrors" / str(key.namespace) / f"{key.name}.git"),
            cache=self._caches.setdefault(key, FileCache()),
            store=self._store,
            runs=self._runs,
            secrets=self._secrets,
            changes=self._changes,
            now=self._clock(),
            previous=previous,
            attempt=attempt,
        )
        status = outcome.status.model_dump(mode="json", by_alias=True, exclude_none=True)
        return Step(status, outcome.retry_after, outcome.transient, outcome.event)

    def deleted(self, key: ResourceKey) -> None:
        """Prunes what the deleted GitSource applied (unless its spec said ``prune: false``)."""
        self._caches.pop(key, None)
        source = self._known.pop(key, None)
        if source is not None:
            pruned = git_source.forget(source, store=self._store, runs=self._runs)
            log.info("%s was deleted; %d objects it applied were pruned", key, pruned)


class NebulaNodeController:
    """Compares each NebulaNode with its agent's latest heartbeat; woken by every heartbeat."""

    kind = "NebulaNode"
    channels: tuple[str, ...] = (heartbeats.CHANNEL,)

    def __init__(self, *, beats: heartbeats.HeartbeatStore, clock: Clock = _utcnow) -> None:
        self._beats, self._clock = beats, clock

    def reconcile(self, stored: StoredObject, *, attempt: int) -> Step:
        """The node's status from the heartbeat that matches it."""
        node = NebulaNode.model_validate(resource_of(stored))
        previous = NebulaNodeStatus.model_validate(stored.status) if stored.status else None
        outcome = nebula_node.reconcile(
            node,
            heartbeat=heartbeats.match(node, self._beats.all()),
            now=self._clock(),
            previous=previous,
        )
        status = outcome.status.model_dump(mode="json", by_alias=True, exclude_none=True)
        return Step(status, outcome.retry_after)

    def deleted(self, key: ResourceKey) -> None:
        """Nothing to clean up: the heartbeats stay, a node declared again matches them."""


class BotConfigController:
    """Compares each BotConfig with what its running bots reported; woken by every report."""

    kind = "BotConfig"
    channels: tuple[str, ...] = (bot_reports.CHANNEL,)

    def __init__(self, *, reports: bot_reports.BotReportStore, clock: Clock = _utcnow) -> None:
        self._reports, self._clock = reports, clock

    def reconcile(self, stored: StoredObject, *, attempt: int) -> Step:
        """The BotConfig's status from its bots' latest reports; only a report or a change of
        the BotConfig makes it look again."""
        config = BotConfig.model_validate(resource_of(stored))
        previous = BotConfigStatus.model_validate(stored.status) if stored.status else None
        outcome = bot_config.reconcile(
            config, reports=self._reports.of(stored.key), now=self._clock(), previous=previous
        )
        status = outcome.status.model_dump(mode="json", by_alias=True, exclude_none=True)
        return Step(status, None, event=outcome.event)

    def deleted(self, key: ResourceKey) -> None:
        """Nothing to clean up: the bots keep what they run until given another BotConfig."""


class EmbeddedRuntime:
    """Runs controllers over the PostgreSQL store until stopped; implements ``SyncTrigger``."""

    def __init__(
        self, *, conninfo: str, store: PostgresStore, controllers: list[Controller]
    ) -> None:
        self._conninfo = conninfo
        self._store = store
        self._controllers = {controller.kind: controller for controller in controllers}
        self._loops: dict[ResourceKey, asyncio.Task[None]] = {}
        self._wake: dict[ResourceKey, asyncio.Event] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = asyncio.Event()
        self.reconciles = 0  # how many reconciles ran (for the status page and tests)

    async def wait_ready(self) -> None:
        """Returns once every existing object has its loop and notifications are listened to."""
        await self._ready.wait()

    def request(self, source: ResourceKey) -> None:
        """Wakes an object's loop now (thread-safe): the webhook's and the CLI's trigger."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._touch, source)

    def _touch(self, key: ResourceKey) -> None:
        if key in self._wake:
            self._wake[key].set()
        elif key.kind in self._controllers:
            self._start(key)

    async def run(self, stop: asyncio.Event) -> None:
        """Reconciles until ``stop`` is set, then cancels every loop and returns."""
        self._loop = asyncio.get_running_loop()
        listening = threading.Event()
        stopping = threading.Event()
        listener = asyncio.create_task(
            asyncio.to_thread(self._listen, listening, stopping), name="nebula-listen"
        )
        # Every exit from here on, a failed start included, stops the listener's thread: the
        # process cannot end while it runs.
        try:
            await asyncio.to_thread(listening.wait)
            if listener.done():
                listener.result()  # raises why it could not listen
                raise errors.StoreUnavailable("the notification listener ended before it listened")
            for kind in self._controllers:
                for stored in await asyncio.to_thread(self._store.list, kind):
                    self._start(stored.key)
            self._ready.set()
            await stop.wait()
        finally:
            stopping.set()
            for task in self._loops.values():
                task.cancel()
            await asyncio.gather(*self._loops.values(), listener, return_exceptions=True)
            self._loops.clear()

    def _listen(self, listening: threading.Event, stopping: threading.Event) -> None:
        """Turns NOTIFY messages into wake-ups; runs in its own thread and connection."""
        waking: dict[str, list[str]] = {}
        for controller in self._controllers.values():
            for channel in controller.channels:
                waking.setdefault(channel, []).append(controller.kind)
        changes = postgres.listen(self._conninfo, timeout=0.5, channels=list(waking))
        try:
            for change in changes:
                listening.set()
                if stopping.is_set():
                    return
                if change is None or self._loop is None:
                    continue
                if isinstance(change, postgres.Signal):
                    for kind in waking.get(change.channel, ()):
                        self._loop.call_soon_threadsafe(self._touch_kind, kind)
                # A status write is the runtime's own doing: it must not wake the loop again.
                elif change.spec:
                    self._loop.call_soon_threadsafe(self._touch, change.key)
        finally:
            # Also when it could not connect at all: whoever waits for it to listen wakes up.
            listening.set()
            changes.close()

    def _touch_kind(self, kind: str) -> None:
        for key, wake in self._wake.items():
            if key.kind == kind:
                wake.set()

    def _start(self, key: ResourceKey) -> None:
        if key.kind not in self._controllers or key in self._loops:
            return
        self._wake[key] = asyncio.Event()
        self._loops[key] = asyncio.create_task(self._object_loop(key), name=f"nebula-{key}")

    async def _object_loop(self, key: ResourceKey) -> None:
        controller = self._controllers[key.kind]
        wake = self._wake[key]
        attempt = 1
        try:
            while True:
                wake.clear()
                stored = await asyncio.to_thread(self._store.get, key)
                if stored is None:
                    await self._deleted(controller, key)
                    return  # deleted: its loop ends with it
                step = await self._reconcile(controller, stored, attempt)
                attempt = attempt + 1 if step.transient else 1
                await self._wait(wake, step.retry_after)
        finally:
            self._loops.pop(key, None)
            self._wake.pop(key, None)

    @staticmethod
    async def _deleted(controller: Controller, key: ResourceKey) -> None:
        try:
            await asyncio.to_thread(controller.deleted, key)
        # The store is down: what the object left behind stays (the embedded store has no
        # finalizers to try again with); the log says so.
        except Exception:
            log.exception("cleaning up after the deleted %s failed", key)

    async def _reconcile(self, controller: Controller, stored: StoredObject, attempt: int) -> Step:
        try:
            step = await asyncio.to_thread(controller.reconcile, stored, attempt=attempt)
        # Unknown failures count as transient, with the same doubling delay as the reconciler.
        except Exception:
            log.exception("reconciling %s failed", stored.key)
            return Step(None, min(300.0, 5.0 * 2 ** (attempt - 1)), transient=True)
        self.reconciles += 1
        if step.status is not None and step.status != stored.status:
            # Deleted while it was being reconciled: nothing left to report on.
            with contextlib.suppress(errors.ResourceNotFound):
                await asyncio.to_thread(self._store.write_status, stored.key, step.status)
        if step.event is not None:
            level = logging.INFO if step.event.type == "Normal" else logging.WARNING
            log.log(level, "%s %s: %s", stored.key, step.event.reason, step.event.message)
        return step

    @staticmethod
    async def _wait(wake: asyncio.Event, delay: float | None) -> None:
        # When the delay passes without a change or a request, it is time to reconcile again.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=delay)
