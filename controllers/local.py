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
import json
import os
import pathlib
import signal
from collections.abc import Callable, Iterator
from typing import Any

from controllers import embedded, git_source, kinds, reconciling
from nebula import auth, bot_reports, changes, db, errors, heartbeats, settings
from nebula.resources import API_VERSION, ResourceKey
from nebula.resources.git_source import GitSource
from nebula.secrets import EnvironmentSecrets
from nebula.sources import Mirror, local
from nebula.store import PostgresStore
from nebula.sync import History

__all__ = [
    "AGENT_TOKEN_FILE",
    "BOOTSTRAP",
    "SERVER_FILE",
    "LocalState",
    "Running",
    "agent_token",
    "bootstrap_source",
    "change_service",
    "existing_state",
    "has_state",
    "local_repository",
    "local_state",
    "running",
    "runtime",
    "services",
    "serving",
    "stop_on_signals",
]

BOOTSTRAP = ResourceKey("GitSource", "default", "local")
"""The GitSource ``nebula up`` creates for the repository it syncs from."""

AGENT_TOKEN_FILE = "agent-token"
"""The token agents on other machines present, kept in the state folder (mode 0600)."""
SERVER_FILE = "server.json"
"""Where ``nebula up`` says, while it runs, at which address other machines reach it."""

Say = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class LocalState:
    """What the embedded runtime's commands work with."""

    conninfo: str
    store: PostgresStore
    runs: History
    secrets: EnvironmentSecrets
    state_dir: pathlib.Path
    listener: db.Listener  # the process's one LISTEN, started by whoever needs it first
    postgres: db.EmbeddedPostgres | None = None  # the private server; None with DATABASE_URL


@contextlib.contextmanager
def local_state(config: settings.Settings, *, say: Say = lambda _: None) -> Iterator[LocalState]:
    """Opens the database (starting the private one if needed), migrated and ready."""
    state_dir = config.state_dir.resolve()
    with contextlib.ExitStack() as stack:
        conninfo = config.database_url
        postgres = None
        if not conninfo:
            say(f"starting PostgreSQL in {state_dir / 'postgres'}")
            postgres = stack.enter_context(db.embedded_postgres(state_dir))
            conninfo = postgres.uri
        applied = db.migrate(conninfo)
        if applied:
            say(f"applied {len(applied)} database migrations")
        store = stack.enter_context(PostgresStore(conninfo))
        listener = db.Listener(conninfo)
        stack.callback(listener.close)
        yield LocalState(
            conninfo, store, History(conninfo), EnvironmentSecrets(), state_dir, listener, postgres
        )


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


def services(state: LocalState) -> reconciling.Services:
    """What the kinds reach the world through on this machine (merged changes follow to
    applied here: there is no other process to do it)."""
    return reconciling.Services(
        store=state.store,
        runs=state.runs,
        secrets=state.secrets,
        heartbeats=heartbeats.HeartbeatStore(state.conninfo),
        reports=bot_reports.BotReportStore(state.conninfo),
        state_dir=state.state_dir,
        changes=changes.ChangeStore(state.conninfo),
    )


def runtime(
    state: LocalState, *, only: tuple[kinds.Factory, ...] = kinds.KINDS
) -> embedded.EmbeddedRuntime:
    """The embedded runtime with every kind of ``kinds.py`` (or ``only`` those), over this
    machine's state."""
    return embedded.EmbeddedRuntime(
        store=state.store, listener=state.listener, kinds=kinds.build(services(state), only)
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


def agent_token(state_dir: pathlib.Path) -> str:
    """The agent token of this state folder, made on first use and kept (readable by its owner
    only), so agents joined once keep working across restarts."""
    path = state_dir.resolve() / AGENT_TOKEN_FILE
    with contextlib.suppress(FileNotFoundError):
        token = path.read_text().strip()
        if token:
            return token
    path.parent.mkdir(parents=True, exist_ok=True)
    token = auth.new_token()
    # Created with its final mode: the token is never readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(token + "\n")
    return token


@dataclasses.dataclass(frozen=True)
class Running:
    """A running ``nebula up``: its process, where it listens, where others reach it."""

    pid: int
    listen: str  # host:port as bound, e.g. 127.0.0.1:8080
    url: str  # the address other machines would use, e.g. http://192.168.1.5:8080
    loopback: bool  # bound to this machine only: other machines cannot reach it


@contextlib.contextmanager
def serving(state_dir: pathlib.Path, running: Running) -> Iterator[None]:
    """Records ``running`` in the state folder for the block (for ``nebula join``)."""
    path = state_dir.resolve() / SERVER_FILE
    path.write_text(json.dumps(dataclasses.asdict(running)) + "\n")
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def running(state_dir: pathlib.Path) -> Running | None:
    """The ``nebula up`` running on this state folder, or None (never started, stopped, or
    killed: a record whose process is gone does not count)."""
    try:
        found = Running(**json.loads((state_dir.resolve() / SERVER_FILE).read_text()))
    # No record, or one from another version: nothing known to be running.
    except (FileNotFoundError, ValueError, TypeError):
        return None
    try:
        os.kill(found.pid, 0)
    # The process is gone (kill -9 leaves the record behind).
    except ProcessLookupError:
        return None
    # It exists but belongs to someone else: it is running.
    except PermissionError:
        pass
    return found
