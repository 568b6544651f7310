"""The operator's blocking half: what the kopf daemons in ``handlers.py`` share and run.

:class:`Runtime` holds what every pass shares, built once per operator run: the Kubernetes store,
the kinds of ``kinds.py`` built over the cluster's services, the :class:`KubernetesSink` their
runners write statuses and post events through, the process's one LISTEN (heartbeats, bot
reports and change requests wake the daemons of the kinds that listen to them), and the worker
threads passes run in (never on the event loop). kopf stays in ``handlers.py``; nothing here
keeps module-level state or decides anything the kinds do not.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime
import json
import logging
import pathlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import kubernetes.client

from controllers import kinds, outcomes, reconciling
from nebula import bot_reports, db, heartbeats
from nebula.resources import ResourceKey
from nebula.secrets import KubernetesSecrets
from nebula.store import kubernetes as kubernetes_store
from nebula.sync import History, triggers

__all__ = ["KubernetesSink", "Marker", "Runtime", "change_marker", "forget"]

Clock = Callable[[], datetime.datetime]
Logger = logging.Logger | logging.LoggerAdapter[Any]
Marker = tuple[str, str | None]

_log = logging.getLogger("nebula.operator")


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class KubernetesSink:
    """Statuses through the status subresource; events as core/v1 Events and log lines."""

    def __init__(
        self,
        api: kubernetes.client.ApiClient,
        store: kubernetes_store.KubernetesStore,
        *,
        clock: Clock,
    ) -> None:
        self._api, self._store, self._clock = api, store, clock

    def write_status(self, key: ResourceKey, status: Mapping[str, Any]) -> None:
        """Replaces the object's status; ResourceNotFound when the object is gone."""
        self._store.write_status(key, status)

    def event(self, key: ResourceKey, event: outcomes.Event, *, uid: str | None) -> None:
        """Posts the event about the object (``kubectl describe`` shows it) and logs it; a
        lost event is a lost log line, never a failed pass."""
        level = logging.INFO if event.type == "Normal" else logging.WARNING
        _log.log(level, "%s %s: %s", key, event.reason, event.message)
        try:
            kubernetes_store.post_event(
                self._api, key=key, type=event.type, reason=event.reason,
                message=event.message, uid=uid, now=self._clock(),
            )  # fmt: skip
        # The API server did not answer or refused: the log line above stays.
        except Exception as failure:
            _log.warning("an event about %s was not posted: %s", key, failure)


class Runtime:
    """What the operator's handlers share, built once per operator run."""

    def __init__(
        self,
        *,
        # Where things are.
        api: kubernetes.client.ApiClient,
        database_url: str,
        state_dir: pathlib.Path,
        # How the operator joins the cluster.
        server: str | None = None,
        peering: str | None = None,
        # Behaviour.
        workers: int = 4,
        clock: Clock = _utcnow,
        only: tuple[kinds.Factory, ...] = kinds.KINDS,
    ) -> None:
        self.api = api
        # The API server's URL as given (the tests' emulator); None: in-cluster, else kubeconfig.
        self.server = server
        # The KopfPeering that keeps replicas from handling the same GitSource; None: standalone.
        self.peering = peering
        self.clock = clock
        self.store = kubernetes_store.KubernetesStore(api)
        self.sink = KubernetesSink(api, self.store, clock=clock)
        self.kinds = kinds.build(
            reconciling.Services(
                store=self.store,
                runs=History(database_url),
                secrets=KubernetesSecrets(api),
                # Agents and bots report into PostgreSQL in both runtimes.
                heartbeats=heartbeats.HeartbeatStore(database_url),
                reports=bot_reports.BotReportStore(database_url),
                state_dir=state_dir,
                node_labels=kubernetes_store.NodeLabels(api),
            ),
            only,
        )
        # One LISTEN on every kind's channels from the start, so nothing announced after the
        # operator started is missed; daemons subscribe their wake events to it (waking).
        self.listener = db.Listener(database_url)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waking: dict[str, set[asyncio.Event]] = {}
        channels = {channel for kind in self.kinds.values() for channel in kind.wakes_on}
        self.listener.subscribe(sorted(channels), self._heard)
        # Passes block (git, PostgreSQL, HTTP): they run here, at most `workers` at a time.
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="nebula-sync"
        )

    def runner(
        self, key: ResourceKey, *, logger: Logger = _log
    ) -> reconciling.Runner[Any, Any, Any]:
        """The runner of one object's daemon."""
        return reconciling.Runner(
            self.kinds[key.kind], key, sink=self.sink, clock=self.clock, log=logger
        )

    @contextlib.contextmanager
    def waking(self, kind: str, wake: asyncio.Event) -> Iterator[None]:
        """Sets ``wake`` on every message of the kind's channels while the block runs, and
        after the LISTEN was lost and is back (reports may have come meanwhile); enter it on
        the operator's event loop."""
        self._loop = asyncio.get_running_loop()
        self._waking.setdefault(kind, set()).add(wake)
        try:
            yield
        finally:
            self._waking[kind].discard(wake)

    def _heard(self, message: db.Message | db.Missed) -> None:
        """On the listener's thread: wakes the daemons of the kinds listening to the channel."""
        woken = [
            name
            for name, kind in self.kinds.items()
            if isinstance(message, db.Missed) or message.channel in kind.wakes_on
        ]
        loop = self._loop
        if loop is None or not woken:
            return
        # The loop is closed (the operator stopped before the listener): nobody to wake.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._wake, woken)

    def _wake(self, kinds_woken: list[str]) -> None:
        for kind in kinds_woken:
            for wake in self._waking.get(kind, ()):
                wake.set()

    def close(self) -> None:
        """Stops listening, waits for the passes in flight and drops queued ones; the API
        client's creator closes it. Safe to call twice."""
        self.listener.close()
        self.executor.shutdown(wait=True, cancel_futures=True)


def change_marker(raw: Mapping[str, Any]) -> Marker:
    """What a pass over an object covers: its spec and its sync request (``requested-at``).

    When an object's marker differs from the one its last pass saw, it must be looked at
    again; its status, kopf's annotations and its finalizers do not count.
    """
    annotations = (raw.get("metadata") or {}).get("annotations") or {}
    spec = json.dumps(raw.get("spec") or {}, sort_keys=True, default=str)
    return spec, annotations.get(triggers.REQUESTED_AT)


def forget(runtime: Runtime, raw: Mapping[str, Any]) -> None:
    """Cleans up after a deleted object (a GitSource prunes what it applied). A spec the model
    refuses cleans up nothing: it never synced. Raises TransientError to be tried again."""
    metadata = raw.get("metadata") or {}
    key = ResourceKey(str(raw.get("kind")), metadata.get("namespace"), str(metadata.get("name")))
    runner = runtime.runner(key)
    resource = runner.parse(kubernetes_store.resource_document(raw))
    if isinstance(resource, str):
        _log.warning("the deleted %s had an invalid spec and cleans up nothing: %s", key, resource)
        return
    runner.kind.deleted(resource)
