"""The operator's blocking half: one pass of a daemon on Kubernetes, from the object to its status.

Called by the kopf daemons in ``handlers.py``, in a worker thread (never on the event loop):

- :class:`GitSourceSyncer` parses the GitSource as the API server holds it, runs
  :func:`controllers.git_source.reconcile` with the Kubernetes store, writes the returned
  status through the status subresource and posts the returned event.
- :class:`Reporter` is the same pass for every object whose status comes from what something
  else reports: parse, read the reports, run the kind's reconciler, write the status when it
  changed. :class:`NodeReporter` (a NebulaNode against its agent's latest heartbeat, then the
  ``nebula.dev/`` labels of its k3s ``Node``) and :class:`BotConfigReporter` (a BotConfig
  against its bots' latest reports) fill in :meth:`Reporter.look`; later kinds do the same.

:class:`Runtime` holds what every pass shares, including two :class:`HeartbeatListener`: one
LISTEN on the heartbeat channel that wakes the NebulaNode daemons, one on the bot-report
channel that wakes the BotConfig daemons. kopf stays in
``handlers.py``; nothing here keeps module-level state or decides anything the reconcilers do not.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import contextlib
import dataclasses
import datetime
import functools
import json
import logging
import pathlib
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, Literal, TypeVar

import kubernetes.client
import psycopg
import pydantic

from controllers import bot_config, git_source, nebula_node, outcomes
from nebula import bot_reports, errors, heartbeats
from nebula.resources import Resource, ResourceKey, base, conditions
from nebula.resources.bot_config import BotConfig, BotConfigStatus
from nebula.resources.git_source import GitSource, GitSourceStatus
from nebula.resources.nebula_node import NebulaNode, NebulaNodeStatus
from nebula.secrets import KubernetesSecrets
from nebula.sources import Mirror
from nebula.store import kubernetes as kubernetes_store
from nebula.store import postgres
from nebula.sync import FileCache, History, triggers

__all__ = [
    "DECLARED_LABELS",
    "INVALID_SPEC",
    "NODE_LABELLED",
    "NODE_NOT_FOUND",
    "BotConfigReporter",
    "GitSourceSyncer",
    "HeartbeatListener",
    "Look",
    "NodeReporter",
    "Reporter",
    "Runtime",
    "change_marker",
    "forget_git_source",
]

INVALID_SPEC = "InvalidSpec"
"""Ready/Stalled reason of an object whose spec the model refuses (the CRD let it through)."""
NODE_NOT_FOUND = "NodeNotFound"
"""Event reason: a k3s NebulaNode has no Kubernetes Node of its name to label."""
NODE_LABELLED = "NodeLabelled"
"""Event reason: the labels of a NebulaNode's Kubernetes Node were changed."""
DECLARED_LABELS = "nebula.dev/declared-labels"
"""Node annotation: the keys of the labels the operator set from ``spec.labels`` (comma-
separated), so that one removed from the spec is removed from the Node, and no other."""

Clock = Callable[[], datetime.datetime]
Logger = logging.Logger | logging.LoggerAdapter[Any]
Marker = tuple[str, str | None]
EventType = Literal["Normal", "Warning"]
S = TypeVar("S", bound=conditions.Status)
R = TypeVar("R", bound=Resource)

_log = logging.getLogger("nebula.operator")


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


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
    ) -> None:
        self.api = api
        # The API server's URL as given (the tests' emulator); None: in-cluster, else kubeconfig.
        self.server = server
        # The KopfPeering that keeps replicas from handling the same GitSource; None: standalone.
        self.peering = peering
        self.state_dir = state_dir
        self.clock = clock
        self.store = kubernetes_store.KubernetesStore(api)
        self.secrets = KubernetesSecrets(api)
        self.runs = History(database_url)
        # Agents report into PostgreSQL in both runtimes (the web API, or straight in).
        self.heartbeats = heartbeats.HeartbeatStore(database_url)
        self.listener = HeartbeatListener(database_url)
        # Bots report what they applied into PostgreSQL too; each report wakes the BotConfigs.
        self.reports = bot_reports.BotReportStore(database_url)
        self.report_listener = HeartbeatListener(database_url, channel=bot_reports.CHANNEL)
        # Syncs block (git, PostgreSQL, HTTP): they run here, at most `workers` at a time.
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="nebula-sync"
        )

    def close(self) -> None:
        """Stops listening for heartbeats and bot reports, waits for the passes in flight and
        drops queued ones; the API client's creator closes it. Safe to call twice."""
        self.listener.stop()
        self.report_listener.stop()
        self.executor.shutdown(wait=True, cancel_futures=True)


class HeartbeatListener:
    """One LISTEN on the heartbeat channel for the whole operator: every heartbeat wakes every
    NebulaNode daemon (a heartbeat may match a node by address, not only by name). The same
    listener on ``channel=bot_reports.CHANNEL`` wakes every BotConfig daemon on a bot report.

    Runs in a thread of its own, on a connection of its own; daemons on the event loop
    subscribe their wake event with :meth:`waking`. When PostgreSQL goes away it listens
    again after a pause, then wakes every daemon: heartbeats may have come in meanwhile.
    Meanwhile the daemons still look again when their retry delay ends.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        channel: str = heartbeats.CHANNEL,
        poll: float = 0.25,
        reconnect: float = 5.0,
    ) -> None:
        self._conninfo = conninfo
        self._channel = channel
        self._poll = poll  # seconds between looks at the stop flag while nothing is announced
        self._reconnect = reconnect
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._listening = threading.Event()
        self._stopping = threading.Event()
        # Touched on the event loop only (subscriptions and wake-ups alike): no lock needed.
        self._subscribers: set[asyncio.Event] = set()

    def start(self, loop: asyncio.AbstractEventLoop, *, timeout: float = 10.0) -> bool:
        """Starts listening, waking daemons on ``loop``; blocks until the LISTEN is in place.

        Returns False when it is not after ``timeout`` seconds (PostgreSQL is down); it keeps
        trying in the background. A second call only waits.
        """
        if self._thread is None:
            self._loop = loop
            name = self._channel.replace("_", "-")  # nebula-heartbeats, nebula-bot-reports
            self._thread = threading.Thread(target=self._run, name=name, daemon=True)
            self._thread.start()
        return self._listening.wait(timeout)

    def stop(self) -> None:
        """Stops listening and waits for the thread (at most one poll); safe to call twice."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()

    @contextlib.contextmanager
    def waking(self, wake: asyncio.Event) -> Iterator[None]:
        """Sets ``wake`` on every heartbeat while the block runs; enter it on the event loop."""
        self._subscribers.add(wake)
        try:
            yield
        finally:
            self._subscribers.discard(wake)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._listen()
            # PostgreSQL is down, refused us, or dropped the connection: listen again later.
            except psycopg.Error as error:
                self._listening.clear()
                _log.warning(
                    "not listening on %s, trying again in %ss: %s",
                    self._channel,
                    self._reconnect,
                    error,
                )
                self._stopping.wait(self._reconnect)

    def _listen(self) -> None:
        changes = postgres.listen(self._conninfo, timeout=self._poll, channels=[self._channel])
        try:
            for change in changes:
                if self._stopping.is_set():
                    return
                if not self._listening.is_set():
                    self._listening.set()
                    # Heartbeats that came before the LISTEN (or while it was down) wake too.
                    self._ring()
                if isinstance(change, postgres.Signal) and change.channel == self._channel:
                    self._ring()
        finally:
            changes.close()

    def _ring(self) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._wake_all)
        # The operator's loop is gone (it stopped before this listener did): nobody to wake.
        except RuntimeError:
            return

    def _wake_all(self) -> None:
        for wake in self._subscribers:
            wake.set()


def change_marker(raw: Mapping[str, Any]) -> Marker:
    """What a sync of a GitSource covers: its spec and its sync request (``requested-at``).

    When an object's marker differs from the one its last sync saw, it must sync again; its
    status, kopf's annotations and its finalizers do not count.
    """
    annotations = (raw.get("metadata") or {}).get("annotations") or {}
    spec = json.dumps(raw.get("spec") or {}, sort_keys=True, default=str)
    return spec, annotations.get(triggers.REQUESTED_AT)


def forget_git_source(runtime: Runtime, raw: Mapping[str, Any]) -> int:
    """Prunes what a deleted GitSource applied (see :func:`controllers.git_source.forget`);
    returns how many objects. A spec the model refuses prunes nothing: what it might have
    applied stays, and the log says so. Raises TransientError when it must be tried again.
    """
    source = _parsed(GitSource, raw)
    # Its spec was never valid, so it never synced: it applied nothing (or nothing we can trust).
    if isinstance(source, str):
        _log.warning("a deleted GitSource with an invalid spec prunes nothing: %s", source)
        return 0
    return git_source.forget(source, store=runtime.store, runs=runtime.runs)


class GitSourceSyncer:
    """The syncs of one GitSource for as long as its daemon lives: mirror, file cache, failures."""

    def __init__(self, runtime: Runtime, key: ResourceKey, *, logger: Logger = _log) -> None:
        self.key = key
        self._runtime = runtime
        self._log = logger
        namespace = key.namespace or "default"
        self._mirror = Mirror(runtime.state_dir / "mirrors" / namespace / f"{key.name}.git")
        self._cache = FileCache()
        self.attempt = 1  # consecutive transient failures, counting the next try

    def sync(self, raw: Mapping[str, Any]) -> float | None:
        """Syncs once from the object as the API server holds it; writes status, posts the event.

        Blocking: run it in a worker thread. Returns the seconds until the next sync, or None
        when only a change of the object can help. Never raises: failures end up in the
        status, or in the log when not even the status can be written.
        """
        now = self._runtime.clock()
        metadata = raw.get("metadata") or {}
        previous = _previous(GitSourceStatus, raw.get("status"), key=self.key, log=self._log)

        # Parse at the boundary; a spec the model refuses waits for the user to fix it.
        source = _parsed(GitSource, raw)
        if isinstance(source, str):
            generation = metadata.get("generation")
            status = _refused(previous or GitSourceStatus(), source, now=now, generation=generation)
            _write_status(self._runtime, self.key, status, log=self._log)
            self._log.error("%s: %s", self.key, source)
            return None

        try:
            outcome = git_source.reconcile(
                source,
                mirror=self._mirror,
                cache=self._cache,
                store=self._runtime.store,
                runs=self._runtime.runs,
                secrets=self._runtime.secrets,
                now=now,
                previous=previous,
                attempt=self.attempt,
            )
        # Failures the reconciler does not report (the history's database is down): retry.
        except errors.TransientError as error:
            self._log.warning("sync of %s failed, will retry: %s", self.key, error)
            return self._backoff(source)
        # Unknown failures count as transient, with the same backoff.
        except Exception:
            self._log.exception("sync of %s failed unexpectedly, will retry", self.key)
            return self._backoff(source)

        self.attempt = self.attempt + 1 if outcome.transient else 1
        status = outcome.status
        requested = (metadata.get("annotations") or {}).get(triggers.REQUESTED_AT)
        if requested is not None:
            status = status.model_copy(update={"requested_at": requested})
        # An unchanged revision leaves the status as it was: polling writes nothing.
        if status != previous:
            _write_status(self._runtime, self.key, status, log=self._log)
        if outcome.event is not None:
            event = outcome.event
            _post(
                self._runtime,
                self.key,
                type=event.type,
                reason=event.reason,
                message=event.message,
                uid=metadata.get("uid"),
                log=self._log,
            )
        return outcome.retry_after

    def _backoff(self, source: GitSource) -> float:
        delay = git_source.retry_delay(source, self.attempt)
        self.attempt += 1
        return delay


@dataclasses.dataclass(frozen=True)
class Look:
    """What one look at an observed object decided (see :class:`Reporter`)."""

    status: conditions.Status
    retry_after: float | None = None  # seconds until the next look; None: when woken
    event: outcomes.Event | None = None
    then: Callable[[], None] | None = None  # a side effect once the status is written


class Reporter(abc.ABC, Generic[R, S]):
    """The looks at one object whose status comes from what something else reports (agents'
    heartbeats, bots' reports): one per object, for as long as its daemon lives.

    A kind plugs in with its model, its status model and :meth:`look` (read the reports, run
    its reconciler); the rest is the same for every kind: parse at the boundary (a spec the
    model refuses stalls the object), write the status only when it changed, post the event,
    back off on failures to read the reports.
    """

    model: type[R]
    status_model: type[S]
    observing: str  # what the reports are, for the log: "heartbeats", "bot reports"

    def __init__(self, runtime: Runtime, key: ResourceKey, *, logger: Logger = _log) -> None:
        self.key = key
        self._runtime = runtime
        self._log = logger
        self.attempt = 1  # consecutive failures to read the reports, counting the next try

    @abc.abstractmethod
    def look(
        self, resource: R, *, now: datetime.datetime, previous: S | None, uid: str | None
    ) -> Look:
        """Reads what was reported and runs the kind's reconciler; may raise (read failures)."""

    def report(self, raw: Mapping[str, Any]) -> float | None:
        """Compares the object with the latest reports once: writes the status when it
        changed, posts the event, runs the look's side effect.

        Blocking: run it in a worker thread. Returns the seconds until the next look, or None
        when only a report or a change of the object can help. Never raises: failures end up
        in the status, or in the log when the status cannot say them.
        """
        now = self._runtime.clock()
        metadata = raw.get("metadata") or {}
        previous = _previous(self.status_model, raw.get("status"), key=self.key, log=self._log)

        # Parse at the boundary; a spec the model refuses waits for the user to fix it.
        resource = _parsed(self.model, raw)
        if isinstance(resource, str):
            status = _refused(
                previous or self.status_model(),
                resource,
                now=now,
                generation=metadata.get("generation"),
            )
            if status != previous:
                _write_status(self._runtime, self.key, status, log=self._log)
                self._log.error("%s: %s", self.key, resource)
            return None

        try:
            look = self.look(resource, now=now, previous=previous, uid=metadata.get("uid"))
        # PostgreSQL did not answer: the status keeps its last word until it does.
        except errors.TransientError as error:
            self._log.warning("no %s for %s, will retry: %s", self.observing, self.key, error)
            return self._backoff()
        # Unknown failures (a missing table, a report the model refuses) count as transient.
        except Exception:
            self._log.exception(
                "reading the %s for %s failed, will retry", self.observing, self.key
            )
            return self._backoff()
        self.attempt = 1

        # Nothing new (a report about another object woke every daemon): nothing is written.
        if look.status != previous:
            _write_status(self._runtime, self.key, look.status, log=self._log)
        if look.event is not None:
            event = look.event
            _post(self._runtime, self.key, type=event.type, reason=event.reason,
                  message=event.message, uid=metadata.get("uid"), log=self._log)  # fmt: skip
        if look.then is not None:
            look.then()
        return look.retry_after

    def _backoff(self) -> float:
        delay = min(300.0, 5.0 * 2.0 ** (self.attempt - 1))
        self.attempt += 1
        return delay


class NodeReporter(Reporter[NebulaNode, NebulaNodeStatus]):
    """A NebulaNode against its agent's latest heartbeat; labels its k3s Node."""

    model = NebulaNode
    status_model = NebulaNodeStatus
    observing = "heartbeats"

    def __init__(self, runtime: Runtime, key: ResourceKey, *, logger: Logger = _log) -> None:
        super().__init__(runtime, key, logger=logger)
        self._missing: str | None = None  # the Kubernetes Node found missing (told once)

    def look(
        self,
        resource: NebulaNode,
        *,
        now: datetime.datetime,
        previous: NebulaNodeStatus | None,
        uid: str | None,
    ) -> Look:
        """The node's status from the heartbeat that matches it, then its Node's labels."""
        beats = self._runtime.heartbeats.all()
        outcome = nebula_node.reconcile(
            resource, heartbeat=heartbeats.match(resource, beats), now=now, previous=previous
        )
        # Only a k3s node whose hardware is known has labels; None leaves the Node alone.
        then = None
        if outcome.labels is not None:
            name = resource.spec.kubernetes_node_name or resource.metadata.name
            then = functools.partial(
                self._label, name, outcome.labels, declared=outcome.declared, uid=uid
            )
        return Look(outcome.status, outcome.retry_after, then=then)

    def _label(
        self,
        name: str,
        wanted: Mapping[str, str],
        *,
        declared: frozenset[str],
        uid: str | None,
    ) -> None:
        """Makes the Node ``name`` carry exactly ``wanted`` among the operator's labels; the
        annotation :data:`DECLARED_LABELS` remembers which came from ``spec.labels``."""
        api = self._runtime.api
        patch: dict[str, str | None] = {}
        try:
            found = kubernetes_store.read_node_labels(api, name)
            current = found[0] if found is not None else None
            if found is not None:
                before = frozenset(filter(None, found[1].get(DECLARED_LABELS, "").split(",")))
                patch = _label_patch(found[0], wanted, declared_before=before)
                noted = ",".join(sorted(declared)) or None
                note = {DECLARED_LABELS: noted} if before != declared else {}
                if patch or note:
                    kubernetes_store.label_node(api, name, patch, annotations=note)
        # Deleted between the read and the patch: the same as never there.
        except errors.ResourceNotFound:
            current = None
        # RBAC forbids it, or the API server did not answer: the next look tries again.
        except errors.NebulaError as failure:
            self._log.warning("the labels of Node %s were not set: %s", name, failure)
            return

        if current is None:
            self._tell_missing(name, uid=uid)
            return
        self._missing = None
        if patch:
            changes = ", ".join(
                f"{key}={value}" if value is not None else f"-{key}"
                for key, value in sorted(patch.items())
            )
            message = f"Node {name} labelled: {changes}"
            self._log.info("%s: %s", self.key, message)
            _post(
                self._runtime,
                self.key,
                type="Normal",
                reason=NODE_LABELLED,
                message=message,
                uid=uid,
                log=self._log,
            )

    def _tell_missing(self, name: str, *, uid: str | None) -> None:
        """Warns that the Node ``name`` does not exist: once per absence, not at every
        heartbeat. The status stays the reconciler's: the machine itself is fine."""
        if self._missing == name:
            return
        self._missing = name
        # A machine not joined to k3s yet, or a typo in kubernetesNodeName.
        message = (
            f"no Kubernetes Node {name!r} to label: join the machine to k3s, or set "
            "spec.kubernetesNodeName to its Node's name (kubectl get nodes)"
        )
        self._log.warning("%s: %s", self.key, message)
        _post(
            self._runtime,
            self.key,
            type="Warning",
            reason=NODE_NOT_FOUND,
            message=message,
            uid=uid,
            log=self._log,
        )


class BotConfigReporter(Reporter[BotConfig, BotConfigStatus]):
    """A BotConfig against what its running bots last reported."""

    model = BotConfig
    status_model = BotConfigStatus
    observing = "bot reports"

    def look(
        self,
        resource: BotConfig,
        *,
        now: datetime.datetime,
        previous: BotConfigStatus | None,
        uid: str | None,
    ) -> Look:
        """The BotConfig's status from its bots' latest reports; an event when Ready moved."""
        reports = self._runtime.reports.of(self.key)
        outcome = bot_config.reconcile(resource, reports=reports, now=now, previous=previous)
        return Look(outcome.status, event=outcome.event)


def _label_patch(
    current: Mapping[str, str],
    wanted: Mapping[str, str],
    *,
    declared_before: frozenset[str] = frozenset(),
) -> dict[str, str | None]:
    """The labels to change so that, among the operator's own (``nebula.dev/gpu.*``,
    ``nebula.dev/vram-tier``, and those ``spec.labels`` declared last time), a Node carries
    exactly ``wanted``; None removes a label.

    Empty when the Node is already right. Every other label is someone else's and left alone.
    """
    prefix = nebula_node.LABEL_PREFIX
    patch: dict[str, str | None] = {
        key: value for key, value in wanted.items() if current.get(key) != value
    }
    for key in current:
        ours = key.startswith(f"{prefix}gpu.") or key == f"{prefix}vram-tier"
        if (ours or key in declared_before) and key not in wanted:
            patch[key] = None
    return patch


# --- What both daemons share -----------------------------------------------------------------


def _previous(model: type[S], raw: Any, *, key: ResourceKey, log: Logger) -> S | None:
    """The status as the object holds it, or None when it has none the model can read."""
    if not raw:
        return None
    try:
        return model.model_validate(raw)
    # Not a status this version wrote (an older version, a hand edit): start afresh.
    except pydantic.ValidationError as error:
        log.warning("ignoring the unreadable status of %s: %s", key, error)
        return None


def _parsed(model: type[R], raw: Mapping[str, Any]) -> R | str:
    """The object as its kind's model, or what is wrong with it, naming the first field.

    kubectl applies what the CRD's schema allows; the model also refuses what a schema cannot
    say (a quantity's syntax, a cross-field check such as a workflow's links), as a sync would.
    """
    try:
        resource = model.model_validate(kubernetes_store.resource_document(raw))
    # The CRD let it through, the model does not: only the user can fix it.
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        return f"the spec is invalid: {base.dotted(tuple(first['loc']))}: {first['msg']}"
    issue = next(resource.issues(), None)
    if issue is not None:
        return f"the spec is invalid: {base.dotted(issue.path)}: {issue.message}"
    return resource


def _refused(status: S, message: str, *, now: datetime.datetime, generation: int | None) -> S:
    """``status`` stalled on an invalid spec (Ready=False, Stalled=True, no Reconciling), with
    the message naming the first problem."""
    found = list(status.conditions)
    verdicts: list[tuple[str, conditions.ConditionStatus]] = [
        (conditions.READY, "False"),
        (conditions.STALLED, "True"),
    ]
    for type_, value in verdicts:
        found = conditions.set_condition(
            found, type_=type_, status=value, reason=INVALID_SPEC, message=message,
            now=now, generation=generation,
        )  # fmt: skip
    found = [c for c in found if c.type != conditions.RECONCILING]
    update: dict[str, Any] = {"conditions": found}
    if generation is not None:
        update["observed_generation"] = generation
    return status.model_copy(update=update)


def _write_status(
    runtime: Runtime, key: ResourceKey, status: conditions.Status, *, log: Logger
) -> None:
    """Replaces the object's status; never raises (the next pass writes it again)."""
    document = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    try:
        runtime.store.write_status(key, document)
    # Deleted while it was being looked at: there is nobody left to report to.
    except errors.ResourceNotFound:
        log.debug("%s is gone; its status is not written", key)
    # The API server did not answer or refused: the next pass writes the status again.
    except errors.NebulaError as failure:
        log.warning("the status of %s was not written: %s", key, failure)


def _post(
    runtime: Runtime,
    key: ResourceKey,
    *,
    type: EventType,
    reason: str,
    message: str,
    uid: str | None,
    log: Logger,
) -> None:
    """Posts an event about the object; never raises."""
    try:
        kubernetes_store.post_event(
            runtime.api,
            key=key,
            type=type,
            reason=reason,
            message=message,
            uid=uid,
            now=runtime.clock(),
        )
    # A lost event is a lost log line, not a failed pass.
    except errors.NebulaError as failure:
        log.warning("an event about %s was not posted: %s", key, failure)
