"""The GitSource reconciler: sync the source, then say how it went (status, history, event).

Run by both runtimes through :class:`GitSourceKind` (listed in ``kinds.py``). It reads top to
bottom like the process: credentials → lock → fetch, load, validate, plan, apply, prune
(``nebula.sync``) → status. Each failing step has its own reason (``FetchFailed``,
``ValidationFailed``, ``ApplyFailed``) so Ready says which step broke; one finishing function
builds the status on every path. It writes nothing itself except the sync history; the
runtime writes the returned status and emits the returned event.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import pathlib

from controllers import outcomes, reconciling
from nebula import errors
from nebula.changes import requests, service
from nebula.resources import ResourceKey, conditions, fields
from nebula.resources.git_source import GitSource, GitSourceStatus
from nebula.secrets import Secrets
from nebula.sources import fetching
from nebula.store import base
from nebula.sync import history, syncing, triggers

__all__ = [
    "APPLIED",
    "APPLY_FAILED",
    "FETCH_FAILED",
    "LOCK_FAILED",
    "SUSPENDED",
    "VALIDATION_FAILED",
    "GitSourceKind",
    "credentials",
    "forget",
    "mirror",
    "reconcile",
]

# Condition reasons, shared by status, events, logs and tests.
APPLIED = "Applied"
FETCH_FAILED = "FetchFailed"
VALIDATION_FAILED = "ValidationFailed"
APPLY_FAILED = "ApplyFailed"
LOCK_FAILED = "LockFailed"
SUSPENDED = "Suspended"
PROGRESSING = "Progressing"
MAX_ERRORS_SHOWN = 5
"""How many manifest errors the Ready message lists (the history keeps them all)."""


Result = reconciling.Result[GitSourceStatus]
log = logging.getLogger("nebula.git_source")


def forget(source: GitSource, *, store: base.ResourceStore, runs: history.History) -> int:
    """What deleting a GitSource does: with ``spec.prune`` (the default), prune every object it
    applied, as a sync of an empty revision would; without, leave them, unowned by anyone now.

    Holds the source's sync lock, so it never interleaves with a sync of it, and records the
    prune in the history. Returns how many objects were pruned. Raises what the store or the
    database raise: the runtime retries (a finalizer keeps the GitSource until it succeeds).
    """
    if not source.spec.prune:
        return 0
    name = base.source_id(source.key)
    with runs.lock(name) as started:
        applied = sorted(store.inventory(name), key=str)
        if applied:
            store.commit(name, base.Plan(prune=applied))
            message = f"{source.key} was deleted: pruned what it applied"
            counts = {"pruned": len(applied)}
            runs.record(name, started=started, result="applied", message=message, counts=counts)
    return len(applied)


def mirror(state_dir: pathlib.Path, key: ResourceKey) -> fetching.Mirror:
    """Where a runtime keeps the git mirror of the GitSource ``key`` under its state folder."""
    return fetching.Mirror(state_dir / "mirrors" / (key.namespace or "default") / f"{key.name}.git")


def credentials(source: GitSource, secrets: Secrets) -> fetching.Credentials | None:
    """The credentials the source's ``secretRef`` names, or None when it names none.

    Raises :class:`~nebula.errors.SourceRejected` when the secret holds no usable keys.
    """
    ref = source.spec.secret_ref
    if ref is None:
        return None
    namespace = source.metadata.namespace or "default"

    def key(name: str) -> str | None:
        return secrets.get(namespace, ref.name, name)

    found = fetching.Credentials(
        username=key("username"),
        password=key("password") or key("token"),
        identity=key("identity"),
        identity_public=key("identity.pub"),
        known_hosts=key("known_hosts"),
    )
    if not (found.password or found.identity):
        raise errors.SourceRejected(
            f"secret {ref.name!r} has neither 'token', 'password' nor 'identity'"
        )
    return found


def reconcile(
    source: GitSource,
    *,
    # Collaborators.
    mirror: fetching.Mirror,
    cache: syncing.FileCache,
    store: base.ResourceStore,
    runs: history.History,
    secrets: Secrets,
    changes: requests.ChangeStore | None = None,
    # Context.
    now: datetime.datetime,
    previous: GitSourceStatus | None,
    progress: reconciling.Progress | None = None,
) -> Result:
    """Syncs the source once and returns the status, the next run and the event.

    ``previous`` is the status as stored, whose applied revision a failure keeps;
    ``progress`` hears which long step runs (loading a new revision, applying objects).
    """
    status = previous or GitSourceStatus()
    interval = fields.parse_duration(source.spec.interval).total_seconds()
    generation = source.metadata.generation

    # A suspended source is left exactly as it is, until it is resumed.
    if source.spec.suspend:
        status = _conditions(
            status, now, generation, ready=("Unknown", SUSPENDED, "suspended by spec.suspend")
        )
        return Result(status, interval)

    # The lock keeps two syncs of this source apart, across threads, processes and replicas.
    # The database holding it may be down: then nothing is synced or recorded; retry soon.
    name = base.source_id(source.key)
    say = _progress(progress, status)
    try:
        with contextlib.ExitStack() as held:
            try:
                started = held.enter_context(runs.lock(name))
            # PostgreSQL did not answer: not a failure of the repository or of the apply.
            except errors.TransientError as error:
                return _failed(source, status, now, LOCK_FAILED, str(error), transient=True)
            try:
                found = credentials(source, secrets)
                result = syncing.sync(
                    source, mirror=mirror, credentials=found, cache=cache, store=store,
                    progress=say,
                )  # fmt: skip
            # The remote refused (credentials, missing branch) or another source owns an
            # object: only the user can fix it; look again at the interval.
            except errors.PermanentError as error:
                reason = FETCH_FAILED if isinstance(error, errors.SourceRejected) else APPLY_FAILED
                if _new_failure(status, reason, str(error)):
                    runs.record(name, started=started, result="failed", error=str(error))
                return _failed(source, status, now, reason, str(error), transient=False)
            revision = result.revision
            # Side work: merged change requests the store now holds are applied. It never
            # turns a sync into a failure; the next sync follows them again.
            if changes is not None and result.result != "failed":
                _follow(changes, source=name, revision=revision.commit, mirror=mirror)
            # Nothing to do on a revision already applied: no history row, no status change,
            # no event; polling an unchanged repository writes nothing at all.
            ready = conditions.find(status.conditions, conditions.READY)
            settled = ready is not None and ready.status == "True"
            known = status.last_applied_revision == revision.commit
            if result.result == "unchanged" and settled and known:
                return Result(status, interval)
            # The same invalid revision again (polling a broken source): said and recorded
            # once, when it was new.
            again = result.result == "failed" and status.last_attempted_revision == revision.commit
            if again and ready is not None and ready.reason == VALIDATION_FAILED:
                return Result(status, interval)
            runs.record(
                name,
                started=started,
                result="failed" if result.result == "failed" else "applied",
                revision=revision.commit,
                author=revision.author,
                message=revision.message,
                counts=result.counts,
                error="\n".join(map(str, result.errors)) or None,
            )
    # The remote did not answer, or the database or the API server dropped: try again soon.
    except (errors.TransientError, OSError) as error:
        reason = FETCH_FAILED if isinstance(error, errors.SourceUnavailable) else APPLY_FAILED
        if _new_failure(status, reason, str(error)):
            with contextlib.suppress(errors.TransientError):
                runs.record(name, started=now, result="failed", error=str(error))
        return _failed(source, status, now, reason, str(error), transient=True)

    # Invalid manifests: nothing was applied, the last applied revision stays, and the
    # message names the files and lines to fix.
    status = status.model_copy(
        update={
            "last_fetched_revision": revision.commit,
            "last_attempted_revision": revision.commit,
        }
    )
    if result.result == "failed":
        shown = [str(e) for e in result.errors[:MAX_ERRORS_SHOWN]]
        more = len(result.errors) - len(shown)
        message = f"revision {revision.short} is invalid, nothing applied: " + "; ".join(shown)
        message += f" (and {more} more)" if more else ""
        return _failed(source, status, now, VALIDATION_FAILED, message, transient=False)

    # Applied (or nothing to apply): Ready, with what changed.
    counts = result.counts
    summary = ", ".join(f"{n} {what}" for what, n in counts.items() if n and what != "unchanged")
    message = f"revision {revision.short} applied: {summary or 'no changes'}"
    status = status.model_copy(
        update={
            "last_applied_revision": revision.commit,
            "last_sync_time": now,
            "last_sync_result": "Applied" if result.result == "applied" else "Unchanged",
            "resources": result.resources,
        }
    )
    status = _conditions(status, now, generation, ready=("True", APPLIED, message))
    if result.result != "applied":
        return Result(status, interval)
    event = outcomes.Event("Normal", APPLIED, f"{message} ({revision.message})")
    return Result(status, interval, (event,))


def _new_failure(status: GitSourceStatus, reason: str, message: str) -> bool:
    """Whether a failure is news: the status does not already say exactly this one (a broken
    source polled every interval leaves one history row, not one per poll)."""
    ready = conditions.find(status.conditions, conditions.READY)
    return ready is None or (ready.status, ready.reason, ready.message) != (
        "False",
        reason,
        message,
    )


def _follow(
    changes: requests.ChangeStore, *, source: str, revision: str, mirror: fetching.Mirror
) -> None:
    try:
        service.follow(changes, source=source, revision=revision, mirror=mirror)
    # The change store or the mirror did not answer: the sync stands, the next one follows.
    except errors.NebulaError as error:
        log.warning("%s: merged changes not followed yet: %s", source, error)


def _progress(progress: reconciling.Progress | None, status: GitSourceStatus) -> syncing.Progress:
    """Which of the sync's steps ``Reconciling`` tells: a revision not applied yet being loaded,
    and objects being applied; a poll that finds nothing new tells nothing (writes nothing)."""

    def say(step: syncing.Step, revision: str, detail: str) -> None:
        if progress is None:
            return
        if step == "loading" and revision != status.last_applied_revision:
            progress(f"loading {revision[:7]}")
        elif step == "applying":
            progress(f"applying {detail}")

    return say


def _failed(
    source: GitSource,
    status: GitSourceStatus,
    now: datetime.datetime,
    reason: str,
    message: str,
    *,
    transient: bool,
) -> Result:
    """The status of a failed sync (transient: the runner backs off); the last applied
    revision stays as it was."""
    status = status.model_copy(update={"last_sync_time": now, "last_sync_result": "Failed"})
    generation = source.metadata.generation
    status = _conditions(
        status,
        now,
        # A transient failure leaves observedGeneration alone: this generation is not done.
        None if transient else generation,
        ready=("False", reason, message),
        stalled=None if transient else (reason, message),
        reconciling=(PROGRESSING, "retrying: " + message) if transient else None,
    )
    interval = fields.parse_duration(source.spec.interval).total_seconds()
    event = outcomes.Event("Warning", reason, message)
    return Result(status, interval, (event,), transient=transient)


def _conditions(
    status: GitSourceStatus,
    now: datetime.datetime,
    generation: int | None,
    *,
    ready: tuple[conditions.ConditionStatus, str, str],
    stalled: tuple[str, str] | None = None,
    reconciling: tuple[str, str] | None = None,
) -> GitSourceStatus:
    """Ready, Stalled and Reconciling set together, so they never contradict each other."""
    found = list(status.conditions)
    found = conditions.set_condition(
        found, type_=conditions.READY, status=ready[0], reason=ready[1], message=ready[2],
        now=now, generation=generation,
    )  # fmt: skip
    for type_, value in ((conditions.STALLED, stalled), (conditions.RECONCILING, reconciling)):
        if value is not None:
            found = conditions.set_condition(
                found, type_=type_, status="True", reason=value[0], message=value[1],
                now=now, generation=generation,
            )  # fmt: skip
        else:
            found = [c for c in found if c.type != type_]
    update: dict[str, object] = {"conditions": found}
    if generation is not None:
        update["observed_generation"] = generation
    return status.model_copy(update=update)


class GitSourceKind(reconciling.Kind[GitSource, GitSourceStatus, None]):
    """GitSources as the runtimes run them: one mirror and one file cache per source."""

    model = GitSource
    status_model = GitSourceStatus
    # A change request moved (merged, most likely): look at the sources now, not at the next
    # interval, whichever process merged it.
    wakes_on = (requests.CHANNEL,)
    # Deleted, it prunes what it applied before it goes.
    finalizes = True

    def __init__(self, services: reconciling.Services) -> None:
        super().__init__(services)
        self._caches: dict[ResourceKey, syncing.FileCache] = {}

    def reconcile(
        self,
        resource: GitSource,
        observed: None,
        *,
        previous: GitSourceStatus | None,
        now: datetime.datetime,
        attempt: int,
        progress: reconciling.Progress,
    ) -> Result:
        """Syncs the source; the sync request it served (``requested-at``) goes in its status."""
        found = self.services
        result = reconcile(
            resource,
            progress=progress,
            mirror=mirror(found.state_dir, resource.key),
            cache=self._caches.setdefault(resource.key, syncing.FileCache()),
            store=found.store,
            runs=found.runs,
            secrets=found.secrets,
            changes=found.changes,
            now=now,
            previous=previous,
        )
        requested = resource.metadata.annotations.get(triggers.REQUESTED_AT)
        if requested is None:
            return result
        status = result.status.model_copy(update={"requested_at": requested})
        return reconciling.Result(status, result.retry_after, result.events, result.transient)

    def retry_cap(self, resource: GitSource) -> float:
        """Never longer than the source's interval: a retry is at most one poll away."""
        return fields.parse_duration(resource.spec.interval).total_seconds()

    def deleted(self, resource: GitSource) -> None:
        """Prunes what the deleted source applied (unless its spec says ``prune: false``)."""
        self._caches.pop(resource.key, None)
        pruned = forget(resource, store=self.services.store, runs=self.services.runs)
        log.info("%s was deleted; %d objects it applied were pruned", resource.key, pruned)
