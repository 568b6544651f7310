"""The kopf operator: everything it reacts to, on one screen; the only module that imports kopf.

Run by ``nebula operator`` (:data:`OPERATOR`, a ``nebula.commands`` entry point) on k3s, and
in-process by the tests against kmock's emulator. Every kind of ``kinds.py`` gets the same
wiring: each object a daemon (on creation, on operator start, after a change) that makes a
:class:`~controllers.reconciling.Runner` pass in a worker thread, then sleeps until the delay
the pass returned, a change of its spec or of the ``nebula.dev/requested-at`` annotation a
webhook sets, or a message on its kind's channels (heartbeats for NebulaNodes, bot reports for
BotConfigs, change requests for GitSources) through the operator's one LISTEN, started before
any daemon and stopped at the end. A kind that ``finalizes`` (a GitSource prunes what it
applied) keeps its objects behind kopf's finalizer until its cleanup succeeded.

The status is written through the store, never returned to kopf: the API server prunes
``status.<handler>``, which the CRD does not declare. What the handlers share travels in kopf's
memo (:class:`Memo`); this module keeps no state of its own and holds no business rules.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import dataclasses
import pathlib
from collections.abc import Callable, Mapping
from typing import Any

import kopf

from controllers import kinds, operator
from nebula import cli, db, errors, settings
from nebula.resources import GROUP, VERSION, ResourceKey
from nebula.store import kubernetes as kubernetes_store

__all__ = [
    "OPERATOR",
    "PREFIX",
    "Memo",
    "OperatorCommand",
    "changed_since_sync",
    "configure",
    "finalize",
    "listen",
    "login",
    "reconcile",
    "registry",
    "stop_listening",
    "wake_daemon",
]

PREFIX = "operator.nebula.dev"
"""Where kopf keeps its own annotations and its finalizer.

Not ``nebula.dev``: kopf takes every annotation under its prefix for its own bookkeeping and
leaves it out of change detection, and ``nebula.dev/requested-at`` is a change to react to.
"""


@dataclasses.dataclass
class Memo:
    """kopf's memo. kopf copies it for each object, so ``wake`` and ``synced`` are per object."""

    runtime: operator.Runtime
    wake: asyncio.Event | None = None  # set to make the object's daemon run now
    synced: operator.Marker | None = None  # what the daemon's current or last pass covers


def registry(only: tuple[kinds.Factory, ...] = kinds.KINDS) -> kopf.OperatorRegistry:
    """A new registry with every handler of the operator (a fresh one per run, and per test),
    for every kind of ``kinds.py`` (or ``only`` those: the runtime's must be the same)."""
    found = kopf.OperatorRegistry()
    kopf.on.startup(registry=found)(configure)
    kopf.on.startup(registry=found)(listen)
    kopf.on.cleanup(registry=found)(stop_listening)
    kopf.on.login(registry=found)(login)
    for kind in only:
        plural = kind.model.info.plural
        kopf.daemon(GROUP, VERSION, plural, registry=found, cancellation_timeout=10.0)(reconcile)
        kopf.on.event(GROUP, VERSION, plural, registry=found, when=changed_since_sync)(wake_daemon)
        # With a finalizer: a deleted object stays until its kind cleaned up after it.
        if kind.finalizes:
            kopf.on.delete(GROUP, VERSION, plural, registry=found)(finalize)
    return found


def configure(settings: kopf.OperatorSettings, memo: Memo, **_: Any) -> None:
    """kopf's bookkeeping in annotations under :data:`PREFIX`, peering when asked, no events."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    # Every event goes through one helper (post_event), named, with the object's revision.
    settings.posting.enabled = False
    peering = memo.runtime.peering
    settings.peering.standalone = peering is None
    if peering is not None:
        settings.peering.name = peering
        settings.peering.mandatory = True


def login(memo: Memo, **kwargs: Any) -> kopf.ConnectionInfo | None:
    """The API server the runtime names (the tests' emulator), else in-cluster or kubeconfig."""
    if memo.runtime.server:
        return kopf.ConnectionInfo(server=memo.runtime.server)
    return kopf.login_via_client(**kwargs)


async def listen(memo: Memo, logger: kopf.Logger, **_: Any) -> None:
    """Starts the operator's LISTEN, before any daemon runs; does not wait for PostgreSQL."""
    memo.runtime.listener.start()
    if not await asyncio.to_thread(memo.runtime.listener.wait_listening, 10.0):
        logger.warning("not listening yet: objects wait for their next look meanwhile")


async def stop_listening(memo: Memo, **_: Any) -> None:
    """Stops listening once the daemons are gone (``Runtime.close`` does it too)."""
    await asyncio.to_thread(memo.runtime.listener.close)


async def reconcile(
    body: kopf.Body, memo: Memo, logger: kopf.Logger, stopped: kopf.DaemonStopped, **_: Any
) -> None:
    """Reconciles one object of any kind for as long as it exists (created, resumed, changed:
    all the same); its kind's channels wake it."""
    metadata = body.metadata
    key = ResourceKey(str(body["kind"]), metadata.namespace, str(metadata.name))
    runner = memo.runtime.runner(key, logger=logger)

    def work(raw: Mapping[str, Any]) -> float | None:
        document = kubernetes_store.resource_document(raw)
        uid = (raw.get("metadata") or {}).get("uid")
        return runner.run(document, raw.get("status"), uid=uid)

    wake = asyncio.Event()
    with memo.runtime.waking(key.kind, wake):
        await _run(work, body=body, memo=memo, wake=wake, stopped=stopped)


async def finalize(body: kopf.Body, memo: Memo, logger: kopf.Logger, **_: Any) -> None:
    """Cleans up after a deleted object (a GitSource prunes what it applied); kopf retries
    until it can, keeping the object behind its finalizer meanwhile."""
    raw = copy.deepcopy(dict(body))
    try:
        await asyncio.get_running_loop().run_in_executor(
            memo.runtime.executor, operator.forget, memo.runtime, raw
        )
    # The API server or PostgreSQL did not answer: the finalizer holds the object meanwhile.
    except errors.TransientError as error:
        raise kopf.TemporaryError(f"not cleaned up yet: {error}", delay=error.delay) from error


def changed_since_sync(body: kopf.Body, memo: Memo, **_: Any) -> bool:
    """Whether the spec or the sync request differ from what the daemon's last pass saw (its
    own status writes change neither)."""
    return memo.wake is not None and operator.change_marker(body) != memo.synced


async def wake_daemon(memo: Memo, **_: Any) -> None:
    """Wakes the object's daemon: it runs at once instead of at the end of its delay."""
    if memo.wake is not None:
        memo.wake.set()


async def _run(
    work: Callable[[Mapping[str, Any]], float | None],
    *,
    body: kopf.Body,
    memo: Memo,
    wake: asyncio.Event,
    stopped: kopf.DaemonStopped,
) -> None:
    """A daemon's loop: ``work`` on the object in a worker thread, then :func:`_sleep` for the
    delay it returns; until kopf stops the daemon."""
    memo.wake = wake
    loop = asyncio.get_running_loop()
    while not stopped:
        wake.clear()
        # A copy: kopf updates the live body in place while the thread reads it.
        raw = copy.deepcopy(dict(body))
        memo.synced = operator.change_marker(raw)
        delay = await loop.run_in_executor(memo.runtime.executor, work, raw)
        await _sleep(delay, wake=wake, stopped=stopped)


async def _sleep(delay: float | None, *, wake: asyncio.Event, stopped: kopf.DaemonStopped) -> None:
    """Returns when the delay passes (None: never), the object changes, or kopf stops the
    daemon (which then exits by itself instead of being cancelled)."""
    waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stopped.wait())]
    try:
        await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


class OperatorCommand:
    """``nebula operator``: runs the operator until SIGINT or SIGTERM."""

    name = "operator"
    help = (
        "run the Kubernetes operator: sync GitSources into nebula.dev resources and reconcile "
        "every kind that has a reconciler (NebulaNodes labelling their k3s Nodes, BotConfigs)"
    )

    def configure(self, parser: argparse.ArgumentParser) -> None:
        """Declares the command's options."""
        parser.epilog = cli.examples(
            "nebula operator --database-url postgresql://nebula@postgres/nebula",
            "nebula operator -n homelab --peering nebula --liveness http://0.0.0.0:8080/healthz",
        )
        parser.add_argument("--database-url", help="default: $NEBULA_DATABASE_URL or $DATABASE_URL")
        parser.add_argument(
            "--state-dir", type=pathlib.Path, help="where git mirrors are kept (default: .nebula)"
        )
        parser.add_argument(
            "--peering", metavar="NAME", help="KopfPeering shared by replicas (default: none)"
        )
        scope = parser.add_mutually_exclusive_group()
        scope.add_argument(
            "--namespace",
            "-n",
            dest="namespaces",
            action="append",
            metavar="NAMESPACE",
            help="watch GitSources in this namespace only (repeatable)",
        )
        scope.add_argument(
            "--all-namespaces",
            "-A",
            action="store_true",
            help="watch GitSources in every namespace (the default)",
        )
        parser.add_argument(
            "--liveness",
            metavar="URL",
            help="serve a liveness probe, e.g. http://0.0.0.0:8080/healthz (default: none)",
        )
        parser.add_argument("--verbose", "-v", action="store_true", help="log at debug level")

    def run(self, args: argparse.Namespace) -> int:
        """Runs the operator; returns 0 once it was stopped by a signal."""
        config = settings.Settings()
        database_url = args.database_url or config.database_url
        if not database_url:
            raise errors.ConfigurationError(
                "no database: pass --database-url or set DATABASE_URL (a postgresql:// URL)"
            )
        namespaces: list[str] = args.namespaces or []
        # The sync history lives in PostgreSQL: its tables must exist before the first sync.
        db.migrate(str(database_url))
        with contextlib.closing(kubernetes_store.connect()) as api:
            runtime = operator.Runtime(
                api=api,
                database_url=str(database_url),
                state_dir=args.state_dir or config.state_dir,
                peering=args.peering,
            )
            try:
                kopf.configure(verbose=args.verbose)
                kopf.run(
                    registry=registry(),
                    memo=Memo(runtime),
                    clusterwide=not namespaces,
                    namespaces=namespaces,
                    # 200 while kopf's reactor runs (its probes: none of ours yet).
                    liveness_endpoint=args.liveness,
                )
            finally:
                runtime.close()
        return cli.EXIT_OK


OPERATOR = OperatorCommand()
"""The ``operator`` subcommand, registered under the ``nebula.commands`` entry points."""
