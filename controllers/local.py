"""The embedded runtime's state on this machine: database, store, history, bootstrap source.

Used by ``nebula up``, ``nebula sync`` and ``nebula plan`` (and the tests of each). With no
``DATABASE_URL`` the private PostgreSQL of the state folder is started; migrations run; without
``--repo`` a local repository is made from the example manifests; the bootstrap GitSource
``default/local`` is created once and then left alone, so a restart resumes where it stopped.
Commands that only read or change that state (``plan``, ``change``) open it with
:func:`existing_state`, which makes nothing when there is none.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import pathlib
import signal
from collections.abc import Callable, Iterator
from typing import Any

from controllers import embedded, git_source
from nebula import bot_reports, changes, db, errors, heartbeats, settings
from nebula.resources import API_VERSION, ResourceKey
from nebula.resources.git_source import GitSource
from nebula.secrets import EnvironmentSecrets
from nebula.sources import Mirror, local
from nebula.store import PostgresStore
from nebula.sync import History

__all__ = [
    "BOOTSTRAP",
    "LocalState",
    "bootstrap_source",
    "change_service",
    "existing_state",
    "git_source_controller",
    "has_state",
    "local_repository",
    "local_state",
    "runtime",
    "stop_on_signals",
]

BOOTSTRAP = ResourceKey("GitSource", "default", "local")
"""The GitSource ``nebula up`` creates for the repository it syncs from."""

Say = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class LocalState:
    """What the embedded runtime's commands work with."""

    conninfo: str
    store: PostgresStore
    runs: History
    secrets: EnvironmentSecrets
    state_dir: pathlib.Path


@contextlib.contextmanager
def local_state(config: settings.Settings, *, say: Say = lambda _: None) -> Iterator[LocalState]:
    """Opens the database (starting the private one if needed), migrated and ready."""
    state_dir = config.state_dir.resolve()
    with contextlib.ExitStack() as stack:
        conninfo = config.database_url
        if not conninfo:
            say(f"starting PostgreSQL in {state_dir / 'postgres'}")
            conninfo = stack.enter_context(db.embedded_postgres(state_dir))
        applied = db.migrate(conninfo)
        if applied:
            say(f"applied {len(applied)} database migrations")
        store = stack.enter_context(PostgresStore(conninfo))
        yield LocalState(conninfo, store, History(conninfo), EnvironmentSecrets(), state_dir)


def has_state(config: settings.Settings) -> bool:
    """Whether ``nebula up`` (or ``nebula sync``) made state where ``config`` points; makes none.

    With a database URL: its schema was migrated once. Without: the state folder holds the
    data of a private PostgreSQL (``initdb`` finished: ``PG_VERSION`` is there).
    """
    if config.database_url:
        return any(state.applied_at is not None for state in db.status(config.database_url))
    return (config.state_dir / "postgres" / "PG_VERSION").is_file()


@contextlib.contextmanager
def existing_state(
    config: settings.Settings, *, instead: str, say: Say = lambda _: None
) -> Iterator[LocalState]:
    """Opens the state as :func:`local_state` does, but only where there is some already.

    Raises ResourceNotFound, one line ending with ``instead`` (what to run), when there is
    none; then nothing was started or created (no folder, no database, no server).
    """
    if not has_state(config):
        where = (
            "in the database of --database-url (or $DATABASE_URL)"
            if config.database_url
            else f"in {config.state_dir.resolve()}"
        )
        raise errors.ResourceNotFound(f"no Nebula state {where}: {instead}")
    with local_state(config, say=say) as state:
        yield state


def local_repository(state: LocalState) -> tuple[pathlib.Path, pathlib.Path]:
    """The local repository of ``nebula up``: the bare "remote" and the clone to work in."""
    return state.state_dir / "homelab.git", state.state_dir / "homelab"


def bootstrap_source(
    state: LocalState,
    *,
    repo: str | None,
    branch: str = "main",
    path: str = ".",
    interval: str = "5s",
    manifests: pathlib.Path,
    say: Say = lambda _: None,
) -> ResourceKey:
    """Makes sure the bootstrap GitSource exists; creates the local repository if needed.

    An existing bootstrap source is kept as it is (a restart), unless ``repo`` names another
    repository, which then replaces its URL.
    """
    if repo is None:
        bare, work = local_repository(state)
        if not (bare / "HEAD").exists() and not manifests.is_dir():
            raise errors.ConfigurationError(
                f"{manifests}: no such folder to start a local repository from; "
                "pass --repo URL or --manifests FOLDER"
            )
        if local.create_repository(bare, work, manifests):
            say(f"made a git repository from {manifests}/: work in {work}, push to {bare}")
        repo, path = f"file://{bare}", "."
    existing = state.store.get(BOOTSTRAP)
    if existing is not None and existing.document["spec"].get("url") == repo:
        return BOOTSTRAP
    document: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": BOOTSTRAP.kind,
        "metadata": {"name": BOOTSTRAP.name, "namespace": BOOTSTRAP.namespace},
        "spec": {"url": repo, "ref": {"branch": branch}, "path": path, "interval": interval},
    }
    state.store.put(document)
    say(f"{BOOTSTRAP} follows {repo} ({branch}, {path})")
    return BOOTSTRAP


def runtime(state: LocalState) -> embedded.EmbeddedRuntime:
    """The embedded runtime with every kind's controller, over this machine's state.

    The one list of what ``nebula up`` and ``nebula sync`` reconcile: a new kind's controller
    is added here.
    """
    controllers: list[embedded.Controller] = [
        git_source_controller(state),
        embedded.NebulaNodeController(beats=heartbeats.HeartbeatStore(state.conninfo)),
        embedded.BotConfigController(reports=bot_reports.BotReportStore(state.conninfo)),
    ]
    return embedded.EmbeddedRuntime(
        conninfo=state.conninfo, store=state.store, controllers=controllers
    )


def git_source_controller(state: LocalState) -> embedded.GitSourceController:
    """The GitSource controller over this machine's state (merged changes follow to applied)."""
    return embedded.GitSourceController(
        store=state.store,
        runs=state.runs,
        secrets=state.secrets,
        state_dir=state.state_dir,
        changes=changes.ChangeStore(state.conninfo),
    )


def stop_on_signals() -> asyncio.Event:
    """An event set by Ctrl-C or SIGTERM (call from inside the running loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop


def change_service(
    state: LocalState, *, merged: Callable[[GitSource], None] | None = None
) -> changes.ChangeService:
    """The change requests of the bootstrap GitSource (what ``nebula up`` syncs from).

    ``merged`` hears of every merge (the runtime's trigger, so the sync applies it at once).
    Raises ResourceNotFound when there is no bootstrap source yet (``nebula up`` makes it).
    """
    stored = state.store.get(BOOTSTRAP)
    if stored is None:
        raise errors.ResourceNotFound(f"{BOOTSTRAP} does not exist: run `nebula up` first")
    source = GitSource.model_validate(embedded.resource_of(stored))
    return changes.ChangeService(
        conninfo=state.conninfo,
        source=source,
        mirror=Mirror(state.state_dir / "changes.git"),
        credentials=git_source.credentials(source, state.secrets),
        merged=merged,
    )
