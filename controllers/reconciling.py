"""What a kind is to the runtimes, and the one pass both runtimes make over an object.

A kind (``git_source.GitSourceKind``, ``nebula_node.NebulaNodeKind``, ...) declares its model
and status model, the notification channels that wake its objects, what it ``observe``s of
the world for one object and a ``reconcile`` from (object, observed) to a :class:`Result`:
the status, the events, when to look again. ``controllers/kinds.py`` lists them; the kopf
wiring (``handlers.py``) and the embedded runtime (``embedded.py``) loop over that list and
make each pass through :class:`Runner`, which is where everything the kinds share is written
once:

- parsing at the boundary: a spec the model refuses stalls the object (``Stalled=True``,
  reason :data:`INVALID_SPEC`, the field path in the message) until the user changes it;
- the back-off: a transient failure (a ``TransientError``, whose ``delay`` is the first
  pause, a :class:`Result` marked transient, or any unexpected exception) doubles the pause up
  to the kind's cap, and a success starts it afresh; nothing a pass meets ends its loop;
- one status write, only when the status changed, and the events through the runtime's
  :class:`Sink`.

Nothing here imports kopf or talks to a cluster; a runtime hands in its :class:`Sink`.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime
import logging
import pathlib
from collections.abc import Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar

import pydantic

from controllers import outcomes
from nebula import bot_reports, errors, heartbeats
from nebula.changes import ChangeStore
from nebula.resources import Resource, ResourceKey, base, conditions
from nebula.secrets import Secrets
from nebula.store import ResourceStore
from nebula.sync import History

__all__ = [
    "FIRST_RETRY",
    "INVALID_SPEC",
    "MAX_RETRY",
    "Kind",
    "NodeLabels",
    "Progress",
    "Result",
    "Runner",
    "Services",
    "Sink",
    "retry_delay",
]

INVALID_SPEC = "InvalidSpec"
"""Ready/Stalled reason of an object whose spec the model refuses (the CRD let it through)."""
FIRST_RETRY = 5.0
"""Seconds before the first retry after a transient failure that names no delay."""
MAX_RETRY = 300.0
"""The longest pause between retries, for kinds that set no cap of their own."""

R = TypeVar("R", bound=Resource)
S = TypeVar("S", bound=conditions.Status)
O = TypeVar("O")  # noqa: E741 - what a kind observes
Clock = Callable[[], datetime.datetime]
Progress = Callable[[str], None]
"""Tells which long step a reconcile is in ("applying 1,204 objects"): ``Reconciling``'s message."""
PROGRESSING = "Progressing"
Logger = logging.Logger | logging.LoggerAdapter[Any]

_log = logging.getLogger("nebula.reconciling")


@dataclasses.dataclass(frozen=True)
class Result(Generic[S]):
    """What one reconcile decided."""

    status: S
    retry_after: float | None  # seconds until the next look; None: only when woken
    events: tuple[outcomes.Event, ...] = ()
    # Failed in a way the same input may not fail again: the runner backs off (and ignores
    # retry_after); the status says what failed meanwhile.
    transient: bool = False


@dataclasses.dataclass(frozen=True)
class Services:
    """What kinds reach the world through, built once by a runtime."""

    store: ResourceStore
    runs: History
    secrets: Secrets
    heartbeats: heartbeats.HeartbeatStore
    reports: bot_reports.BotReportStore
    state_dir: pathlib.Path  # git mirrors and caches
    # Where merged change requests are followed to applied; None on the operator (the web
    # server's change service follows them there).
    changes: ChangeStore | None = None
    # The labels of Kubernetes Nodes; None in the embedded runtime (no cluster).
    node_labels: NodeLabels | None = None


class NodeLabels(Protocol):
    """The labels and annotations of Kubernetes Nodes (``nebula.store.kubernetes``)."""

    def read(self, name: str) -> tuple[dict[str, str], dict[str, str]] | None:
        """The Node's labels and annotations, or None when there is no such Node."""
        ...

    def write(
        self,
        name: str,
        labels: Mapping[str, str | None],
        *,
        annotations: Mapping[str, str | None] | None = None,
    ) -> None:
        """Sets (None: removes) the given labels and annotations; every other stays."""
        ...


class Kind(abc.ABC, Generic[R, S, O]):
    """One kind's reconciler as both runtimes run it (blocking: called in a worker thread).

    A kind sets its models and channels and implements :meth:`reconcile`; it overrides
    :meth:`observe`, :meth:`retry_cap` and :meth:`deleted` when it has something to say there.
    One instance serves every object of the kind in a runtime: what it keeps per object is
    keyed by the object (a GitSource's mirror), never module-level.
    """

    model: type[R]
    status_model: type[S]
    wakes_on: tuple[str, ...] = ()
    """NOTIFY channels whose messages wake every object of the kind (e.g. heartbeats)."""
    finalizes: bool = False
    """Whether :meth:`deleted` must run before the object may go (a kopf finalizer on k3s)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def observe(self, resource: R) -> O | None:
        """Reads what the kind compares the object with; may raise TransientError."""
        return None

    @abc.abstractmethod
    def reconcile(
        self,
        resource: R,
        observed: O | None,
        *,
        previous: S | None,
        now: datetime.datetime,
        attempt: int,
        progress: Progress,
    ) -> Result[S]:
        """Decides the status; ``attempt`` counts consecutive transient failures (1: none);
        ``progress`` tells, while a long step runs, which one (each call writes the status)."""

    def retry_cap(self, resource: R) -> float:
        """The longest pause between retries of this object."""
        return MAX_RETRY

    def deleted(self, resource: R) -> None:
        """Cleans up after the deleted object (safe to repeat); raises TransientError to be
        tried again."""
        return None


class Sink(Protocol):
    """Where a runtime keeps statuses and tells events."""

    def write_status(self, key: ResourceKey, status: Mapping[str, Any]) -> None:
        """Replaces the object's status; raises ResourceNotFound when the object is gone."""
        ...

    def event(self, key: ResourceKey, event: outcomes.Event, *, uid: str | None) -> None:
        """Tells an event about the object; never raises."""
        ...


def retry_delay(attempt: int, *, first: float = FIRST_RETRY, cap: float = MAX_RETRY) -> float:
    """Seconds before try ``attempt + 1`` after ``attempt`` consecutive transient failures:
    ``first``, doubling, never more than ``cap``."""
    return float(min(cap, first * 2 ** max(attempt - 1, 0)))


class Runner(Generic[R, S, O]):
    """The passes over one object for as long as its loop lives (the back-off it is in)."""

    def __init__(
        self,
        kind: Kind[R, S, O],
        key: ResourceKey,
        *,
        sink: Sink,
        clock: Clock,
        log: Logger = _log,
    ) -> None:
        self.kind, self.key = kind, key
        self._sink, self._clock, self._log = sink, clock, log
        self.attempt = 1  # consecutive transient failures, counting the next try

    def parse(self, document: Mapping[str, Any]) -> R | str:
        """The object as its kind's model, or what is wrong with it, naming the first field.

        The model also refuses what a CRD schema cannot say (a quantity's syntax, a
        cross-field check such as a workflow's links), as a sync would.
        """
        try:
            resource = self.kind.model.model_validate(document)
        # Stored or applied by hand past what a sync checks: only the user can fix it.
        except pydantic.ValidationError as error:
            first = error.errors()[0]
            return f"the spec is invalid: {base.dotted(tuple(first['loc']))}: {first['msg']}"
        issue = next(resource.issues(), None)
        if issue is not None:
            return f"the spec is invalid: {base.dotted(issue.path)}: {issue.message}"
        return resource

    def run(
        self, document: Mapping[str, Any], status: Mapping[str, Any] | None, *, uid: str | None
    ) -> float | None:
        """One pass: parse, observe, reconcile, write the status if it changed, tell the events.

        ``document`` is the object as its model reads it (metadata with the generation),
        ``status`` as stored. Blocking. Returns the seconds until the next pass (None: when
        woken). Never raises: failures end in the status, the back-off and the log.
        """
        now = self._clock()
        previous = self._previous(status)

        # Parse at the boundary; a spec the model refuses waits for the user to fix it.
        resource = self.parse(document)
        if isinstance(resource, str):
            generation = (document.get("metadata") or {}).get("generation")
            refused = _refused(
                previous or self.kind.status_model(), resource, now=now, generation=generation
            )
            if refused != previous:
                self._log.error("%s: %s", self.key, resource)
                self._write(refused)
            self.attempt = 1
            return None

        def progress(message: str) -> None:
            # Reconciling=True with the step, on the status as it stands: Ready keeps its word.
            nonlocal previous
            base_status = previous or self.kind.status_model()
            found = conditions.set_condition(
                list(base_status.conditions), type_=conditions.RECONCILING, status="True",
                reason=PROGRESSING, message=message, now=self._clock(),
            )  # fmt: skip
            shown = base_status.model_copy(update={"conditions": found})
            if self._write(shown):
                previous = shown

        try:
            observed = self.kind.observe(resource)
            result = self.kind.reconcile(
                resource, observed, previous=previous, now=now, attempt=self.attempt,
                progress=progress,
            )  # fmt: skip
        # A database, API server or remote did not answer: the status keeps its last word.
        except errors.TransientError as error:
            self._log.warning("%s: will retry: %s", self.key, error)
            return self._backoff(resource, first=error.delay)
        # Anything unexpected counts as transient too: the loop goes on, the log has why.
        except Exception:
            self._log.exception("%s: failed unexpectedly, will retry", self.key)
            return self._backoff(resource)

        written = result.status == previous or self._write(result.status)
        for event in result.events:
            self._sink.event(self.key, event, uid=uid)
        if result.transient or not written:
            return self._backoff(resource)
        self.attempt = 1
        return result.retry_after

    def _previous(self, raw: Mapping[str, Any] | None) -> S | None:
        if not raw:
            return None
        try:
            return self.kind.status_model.model_validate(raw)
        # Not a status this version wrote (an older version, a hand edit): start afresh.
        except pydantic.ValidationError as error:
            self._log.warning("ignoring the unreadable status of %s: %s", self.key, error)
            return None

    def _write(self, status: conditions.Status) -> bool:
        """Writes the status; False when it must be written again later."""
        document = status.model_dump(mode="json", by_alias=True, exclude_none=True)
        try:
            self._sink.write_status(self.key, document)
        # Deleted while it was being looked at: there is nobody left to report to.
        except errors.ResourceNotFound:
            self._log.debug("%s is gone; its status is not written", self.key)
        # The store did not answer or refused: the next pass writes it again.
        except errors.NebulaError as failure:
            self._log.warning("the status of %s was not written: %s", self.key, failure)
            return False
        return True

    def _backoff(self, resource: R, *, first: float = FIRST_RETRY) -> float:
        delay = retry_delay(self.attempt, first=first, cap=self.kind.retry_cap(resource))
        self.attempt += 1
        return delay


def _refused(status: S, message: str, *, now: datetime.datetime, generation: int | None) -> S:
    """``status`` stalled on an invalid spec (Ready=False, Stalled=True, no Reconciling)."""
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
