"""The kopf operator: everything it reacts to, on one screen; the only module that imports kopf.

Run by ``nebula operator`` (:data:`OPERATOR`, a ``nebula.commands`` entry point) on k3s, and
in-process by the tests against kmock's emulator. Each object gets a daemon (on creation, on
operator start, after a change) that does its work in a worker thread, then sleeps until the
retry delay passes or something wakes it:

- a **GitSource** is synced (:class:`controllers.operator.GitSourceSyncer`); a change of its
  spec, or of the ``nebula.dev/requested-at`` annotation a webhook sets, wakes it; deleted, it
  prunes what it applied before kopf's finalizer lets it go (:func:`forget_git_source`);
- a **NebulaNode** is compared with its agent's latest heartbeat, and its k3s ``Node`` labelled
  (:class:`controllers.operator.NodeReporter`); a change of its spec wakes it, and so does every
  heartbeat, through the operator's one LISTEN (:class:`controllers.operator.HeartbeatListener`,
  started before any daemon and stopped at the end);
- a **BotConfig** is compared with what its running bots reported
  (:class:`controllers.operator.BotConfigReporter`); a change of its spec wakes it, and so does
  every bot report, through a second such LISTEN on the bot-report channel.

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

from controllers import operator
from nebula import cli, db, errors, settings
from nebula.resources import GROUP, VERSION, BotConfig, GitSource, NebulaNode, ResourceKey
from nebula.store import kubernetes as kubernetes_store

__all__ = [
    "OPERATOR",
    "PREFIX",
    "Memo",
    "OperatorCommand",
    "changed_since_sync",
    "configure",
    "forget_git_source",
    "listen_for_heartbeats",
    "login",
    "registry",
    "report_bot_config",
    "report_nebula_node",
    "stop_listening",
    "sync_git_source",
    "wake_daemon",
]

PREFIX = "operator.nebula.dev"
"""Where kopf keeps its own annotations and its finalizer.

Not ``nebula.dev``: kopf takes every annotation under its prefix for its own bookkeeping and
leaves it out of change detection, and ``nebula.dev/requested-at`` is a change to react to.
"""

_GIT_SOURCES = GitSource.info.plural
_NEBULA_NODES = NebulaNode.info.plural
_BOT_CONFIGS = BotConfig.info.plural


@dataclasses.dataclass
class Memo:
    """kopf's memo. kopf copies it for each object, so ``wake`` and ``synced`` are per object."""

    runtime: operator.Runtime
    wake: asyncio.Event | None = None  # set to make the object's daemon run now
    synced: operator.Marker | None = None  # what the daemon's current or last pass covers


def registry() -> kopf.OperatorRegistry:
    """A new registry with every handler of the operator (a fresh one per run, and per test)."""
    found = kopf.OperatorRegistry()
    kopf.on.startup(registry=found)(configure)
    kopf.on.startup(registry=found)(listen_for_heartbeats)
    kopf.on.cleanup(registry=found)(stop_listening)
    kopf.on.login(registry=found)(login)
    daemons = (
        (_GIT_SOURCES, sync_git_source),
        (_NEBULA_NODES, report_nebula_node),
        (_BOT_CONFIGS, report_bot_config),
    )
    for plural, daemon in daemons:
        kopf.daemon(GROUP, VERSION, plural, registry=found, cancellation_timeout=10.0)(daemon)
        kopf.on.event(GROUP, VERSION, plural, registry=found, when=changed_since_sync)(wake_daemon)
    # With a finalizer: a deleted GitSource stays until what it applied is pruned.
    kopf.on.delete(GROUP, VERSION, _GIT_SOURCES, registry=found)(forget_git_source)
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


async def listen_for_heartbeats(memo: Memo, logger: kopf.Logger, **_: Any) -> None:
    """Starts the operator's LISTENs for heartbeats and bot reports, before any daemon runs."""
    loop = asyncio.get_running_loop()
    listeners = [
        (memo.runtime.listener, "heartbeats", "NebulaNodes wait for their timers"),
        (memo.runtime.report_listener, "bot reports", "BotConfigs wait for a change"),
    ]
    for listener, what, meanwhile in listeners:
        if not await asyncio.to_thread(listener.start, loop):
            logger.warning("not listening for %s yet: %s", what, meanwhile)


async def stop_listening(memo: Memo, **_: Any) -> None:
    """Stops listening once the daemons are gone (``Runtime.close`` does it too)."""
    await asyncio.to_thread(memo.runtime.listener.stop)
    await asyncio.to_thread(memo.runtime.report_listener.stop)


async def sync_git_source(
    body: kopf.Body, memo: Memo, logger: kopf.Logger, stopped: kopf.DaemonStopped, **_: Any
) -> None:
    """Syncs one GitSource for as long as it exists (created, resumed, changed: all the same)."""
    key = ResourceKey("GitSource", body.metadata.namespace, str(body.metadata.name))
    syncer = operator.GitSourceSyncer(memo.runtime, key, logger=logger)
    await _run(syncer.sync, body=body, memo=memo, wake=asyncio.Event(), stopped=stopped)


async def forget_git_source(body: kopf.Body, memo: Memo, logger: kopf.Logger, **_: Any) -> None:
    """Prunes what a deleted GitSource applied (``spec.prune``); kopf retries until it can."""
    raw = copy.deepcopy(dict(body))
    try:
        pruned = await asyncio.get_running_loop().run_in_executor(
            memo.runtime.executor, operator.forget_git_source, memo.runtime, raw
        )
    # The API server or PostgreSQL did not answer: the finalizer holds the GitSource meanwhile.
    except errors.TransientError as error:
        raise kopf.TemporaryError(f"not pruned yet: {error}", delay=10) from error
    logger.info("deleted: %d objects it applied were pruned", pruned)


async def report_nebula_node(
    body: kopf.Body, memo: Memo, logger: kopf.Logger, stopped: kopf.DaemonStopped, **_: Any
) -> None:
    """Reports on one NebulaNode for as long as it exists; every heartbeat wakes it."""
    key = ResourceKey("NebulaNode", None, str(body.metadata.name))
    reporter = operator.NodeReporter(memo.runtime, key, logger=logger)
    wake = asyncio.Event()
    with memo.runtime.listener.waking(wake):
        await _run(reporter.report, body=body, memo=memo, wake=wake, stopped=stopped)


async def report_bot_config(
    body: kopf.Body, memo: Memo, logger: kopf.Logger, stopped: kopf.DaemonStopped, **_: Any
) -> None:
    """Reports on one BotConfig for as long as it exists; every bot report wakes it."""
    key = ResourceKey("BotConfig", body.metadata.namespace, str(body.metadata.name))
    reporter = operator.BotConfigReporter(memo.runtime, key, logger=logger)
    wake = asyncio.Event()
    with memo.runtime.report_listener.waking(wake):
        await _run(reporter.report, body=body, memo=memo, wake=wake, stopped=stopped)


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
        "run the Kubernetes operator: sync GitSources into nebula.dev resources, report on "
        "NebulaNodes (labelling their k3s Nodes) and on BotConfigs"
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
        return 0


OPERATOR = OperatorCommand()
"""The ``operator`` subcommand, registered under the ``nebula.commands`` entry points."""
