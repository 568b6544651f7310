"""The operator's blocking half: one GitSource sync on Kubernetes, from the object to its status.

Called by the kopf daemons in ``handlers.py``, in a worker thread (never on the event loop):
:class:`GitSourceSyncer` parses the GitSource as the API server holds it, runs
:func:`controllers.git_source.reconcile` with the Kubernetes store, writes the returned status
through the status subresource and posts the returned event. :class:`Runtime` holds what every
sync shares. kopf stays in ``handlers.py``; nothing here keeps module-level state or decides
anything the reconciler does not.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import json
import logging
import pathlib
from collections.abc import Callable, Mapping
from typing import Any

import kubernetes.client
import pydantic

from controllers import git_source
from nebula import errors
from nebula.resources import ResourceKey, conditions
from nebula.resources.git_source import GitSource, GitSourceStatus
from nebula.secrets import KubernetesSecrets
from nebula.sources import Mirror
from nebula.store import kubernetes as kubernetes_store
from nebula.sync import FileCache, History, triggers

__all__ = ["INVALID_SPEC", "GitSourceSyncer", "Runtime", "change_marker"]

INVALID_SPEC = "InvalidSpec"
"""Ready/Stalled reason of a GitSource whose spec the model refuses (the CRD let it through)."""

Clock = Callable[[], datetime.datetime]
Logger = logging.Logger | logging.LoggerAdapter[Any]
Marker = tuple[str, str | None]

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
        # Syncs block (git, PostgreSQL, HTTP): they run here, at most `workers` at a time.
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="nebula-sync"
        )

    def close(self) -> None:
        """Waits for the syncs in flight and drops queued ones; the API client's creator
        closes it. Safe to call twice."""
        self.executor.shutdown(wait=True, cancel_futures=True)


def change_marker(raw: Mapping[str, Any]) -> Marker:
    """What a sync of a GitSource covers: its spec and its sync request (``requested-at``).

    When an object's marker differs from the one its last sync saw, it must sync again; its
    status, kopf's annotations and its finalizers do not count.
    """
    annotations = (raw.get("metadata") or {}).get("annotations") or {}
    spec = json.dumps(raw.get("spec") or {}, sort_keys=True, default=str)
    return spec, annotations.get(triggers.REQUESTED_AT)


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
        previous = self._previous(raw.get("status"))

        # Parse at the boundary; a spec the model refuses waits for the user to fix it.
        try:
            source = GitSource.model_validate(kubernetes_store.resource_document(raw))
        except pydantic.ValidationError as error:
            self._refuse(previous, error, now, metadata.get("generation"))
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
            self._write_status(status)
        if outcome.event is not None:
            self._post(outcome.event, metadata.get("uid"))
        return outcome.retry_after

    def _backoff(self, source: GitSource) -> float:
        delay = git_source.retry_delay(source, self.attempt)
        self.attempt += 1
        return delay

    def _previous(self, raw: Any) -> GitSourceStatus | None:
        if not raw:
            return None
        try:
            return GitSourceStatus.model_validate(raw)
        # Not a status this version wrote (an older version, a hand edit): start afresh.
        except pydantic.ValidationError as error:
            self._log.warning("ignoring the unreadable status of %s: %s", self.key, error)
            return None

    def _refuse(
        self,
        previous: GitSourceStatus | None,
        error: pydantic.ValidationError,
        now: datetime.datetime,
        generation: int | None,
    ) -> None:
        """Stalled on an invalid spec: Ready=False and Stalled=True with the first problem."""
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = f"the spec is invalid: {where}: {first['msg']}"
        found = list(previous.conditions) if previous else []
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
        self._write_status((previous or GitSourceStatus()).model_copy(update=update))
        self._log.error("%s: %s", self.key, message)

    def _write_status(self, status: GitSourceStatus) -> None:
        document = status.model_dump(mode="json", by_alias=True, exclude_none=True)
        try:
            self._runtime.store.write_status(self.key, document)
        # Deleted while it was being synced: there is nobody left to report to.
        except errors.ResourceNotFound:
            self._log.debug("%s is gone; its status is not written", self.key)
        # The API server did not answer or refused: the next sync writes the status again.
        except errors.NebulaError as failure:
            self._log.warning("the status of %s was not written: %s", self.key, failure)

    def _post(self, event: git_source.Event, uid: str | None) -> None:
        try:
            kubernetes_store.post_event(
                self._runtime.api,
                key=self.key,
                type=event.type,
                reason=event.reason,
                message=event.message,
                uid=uid,
                now=self._runtime.clock(),
            )
        # A lost event is a lost log line, not a failed sync.
        except errors.NebulaError as failure:
            self._log.warning("an event about %s was not posted: %s", self.key, failure)
