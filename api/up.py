"""``nebula up``: the whole product on one machine, no cluster needed.

Starts (or reuses) the private PostgreSQL of the state folder, makes a local git repository from
``manifests/`` unless ``--repo`` names one, runs the embedded runtime's reconcilers and serves
the web UI on http://127.0.0.1:8080, with the change requests of the bootstrap GitSource and
their live updates. ``--users FILE`` (or ``$NEBULA_USERS_FILE``) closes the web UI to all but
the users of that file; without one it is open to anyone who can reach it, and the banner says
so. Ctrl-C (or SIGTERM) stops everything in order: the live streams, the web server, the
reconcilers, then the database; a restart resumes from the stored state.
Registered as a ``nebula.commands`` entry point; this module holds no business rules.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import pathlib
import signal
import socket
import threading

import rich.console
import rich.markup
import rich.panel
import uvicorn

from api import app as web
from api import auth as web_auth
from api import join
from api.routes import events
from controllers import commands, local
from nebula import auth, cli, heartbeats, settings
from nodes import agent as nodes_agent

__all__ = ["AGENT_INTERVAL", "OPEN_WARNING", "UP", "UpCommand"]

AGENT_INTERVAL = 15.0
"""How often the agent inside ``nebula up`` reports (seconds)."""
OPEN_WARNING = "open to anyone who can reach it: bind to 127.0.0.1 or pass --users"
"""What the banner says of a web UI without a users file."""

_err = rich.console.Console(stderr=True, highlight=False, soft_wrap=True)


class UpCommand:
    """``nebula up``: database, sync, reconcilers and web UI on this machine."""

    name = "up"
    help = "run Nebula on this machine: database, GitOps sync, reconcilers, web UI"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        """Adds the state options and where the web UI listens."""
        parser.epilog = cli.examples(
            "nebula up                          # the example homelab, on http://127.0.0.1:8080",
            "nebula up --port 8081 --users users.yaml",
            "nebula up --repo https://github.com/you/homelab.git --path manifests",
        )
        commands.add_state_options(parser)
        parser.add_argument(
            "--host",
            default="127.0.0.1",
            help="address the web UI listens on (default: 127.0.0.1; 0.0.0.0: every interface)",
        )
        parser.add_argument(
            "--port", type=int, default=8080, help="port of the web UI (default: 8080)"
        )
        parser.add_argument(
            "--node", help="the NebulaNode this machine reports as (default: its host name)"
        )
        web_auth.add_users_option(parser)

    def run(self, args: argparse.Namespace) -> int:
        """Runs until Ctrl-C or SIGTERM; returns 0 after a clean stop."""
        config = settings.Settings()
        if args.state_dir:
            config = config.model_copy(update={"state_dir": args.state_dir})
        if args.database_url:
            config = config.model_copy(update={"database_url": args.database_url})
        # SIGTERM while PostgreSQL starts unwinds like Ctrl-C, stopping what already started
        # (the running loop takes both signals over once everything is up).
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        # Read first: a wrong users file or a taken port stops here, before anything started.
        users = auth.load_users(args.users) if args.users else None
        listening = web.bind(args.host, args.port)
        with (
            contextlib.closing(listening),
            _err.status("starting Nebula…") as spinner,
            local.local_state(config, say=lambda m: spinner.update(m)) as state,
            contextlib.ExitStack() as stack,
        ):
            local.bootstrap_source(
                state,
                repo=args.repo,
                branch=args.branch,
                path=args.repo_path or ("manifests" if args.repo else "."),
                manifests=args.manifests,
                say=lambda m: _err.print(m, markup=False),
            )
            sessions = stack.enter_context(auth.Sessions(state.conninfo)) if users else None
            spinner.stop()
            node = args.node or nodes_agent.default_node_name()
            asyncio.run(
                _serve(
                    state,
                    listening=listening,
                    reached=join.advertised(args.host, args.port),
                    agent_token=config.agent_token or local.agent_token(state.state_dir),
                    repo=args.repo,
                    node=node,
                    users=users,
                    users_file=args.users,
                    sessions=sessions,
                )
            )
        _err.print("stopped", markup=False)
        return cli.EXIT_OK


async def _serve(
    state: local.LocalState,
    *,
    # The socket bound before anything started, and where other machines reach it.
    listening: socket.socket,
    reached: local.Running,
    agent_token: str,
    repo: str | None,
    node: str,
    # Who may sign in, read from which file, and where their sessions are kept; all three
    # None for an open web UI.
    users: auth.Users | None,
    users_file: pathlib.Path | None,
    sessions: auth.Sessions | None,
) -> None:
    """Runs the reconcilers, this machine's agent and the web server until a signal, or until
    one of them fails; every part is stopped before it returns or raises that failure."""
    stop = local.stop_on_signals()
    runtime = local.runtime(state)
    beats = heartbeats.HeartbeatStore(state.conninfo)
    feed = events.Feed(state.conninfo)
    app = web.create_app(
        store=state.store,
        runs=state.runs,
        trigger=runtime,
        secrets=state.secrets,
        heartbeats=beats,
        agent_token=agent_token,
        users=users,
        sessions=sessions,
        # A merge wakes the bootstrap source's loop: the sync applies it at once.
        changes=local.change_service(state, merged=lambda source: runtime.request(source.key)),
        events=feed,
        problems=runtime.problems,
    )
    # The agent of this machine reports in-process, straight into the database.
    agent = nodes_agent.Agent(
        node=node, interval=AGENT_INTERVAL, link=nodes_agent.DatabaseLink(beats)
    )
    # timeout_graceful_shutdown: a backstop only; the feed's close already ended the streams.
    web.steady_collector()
    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=5)
    server = web.Server(config)
    parts = {
        asyncio.create_task(runtime.run(stop), name="the reconcilers"),
        asyncio.create_task(agent.run(stop), name="this machine's agent"),
        asyncio.create_task(server.serve(sockets=[listening]), name="the web server"),
    }
    # The private PostgreSQL is started again whenever it stops underneath us.
    supervising = threading.Event()
    if state.postgres is not None:
        parts.add(
            asyncio.create_task(
                asyncio.to_thread(state.postgres.supervise, supervising),
                name="the PostgreSQL watch",
            )
        )
    stopping = asyncio.create_task(stop.wait())
    ready = asyncio.create_task(runtime.wait_ready())
    try:
        # Up once the reconcilers are; a signal or a part failing first ends it here.
        await asyncio.wait({ready, stopping, *parts}, return_when=asyncio.FIRST_COMPLETED)
        if ready.done() and not stop.is_set() and not any(part.done() for part in parts):
            # A panel wraps its lines only without soft wrapping (the console soft-wraps logs).
            banner = _banner(state, reached=reached, repo=repo, users=users_file)
            _err.print(banner, soft_wrap=False)
            _err.print(_joining(reached), markup=False)
            with local.serving(state.state_dir, reached):
                await asyncio.wait({stopping, *parts}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # The live streams first: uvicorn waits for every open response before it stops.
        await asyncio.to_thread(feed.close)
        server.should_exit = True
        stop.set()
        supervising.set()
        ready.cancel()
        await asyncio.gather(*parts, stopping, ready, return_exceptions=True)
    _raise_first_failure(parts)


def _raise_first_failure(parts: set[asyncio.Task[None]]) -> None:
    """Raises the error a part ended with; all parts have ended when this is called."""
    for part in sorted(parts, key=lambda task: task.get_name()):
        failure = None if part.cancelled() else part.exception()
        if failure is not None:
            raise failure


def _banner(
    state: local.LocalState, *, reached: local.Running, repo: str | None, users: pathlib.Path | None
) -> rich.panel.Panel:
    url = reached.url
    work = local.local_repository(state)[1]
    edit = (
        f"Edit a file in {work}, commit, git push, and watch it apply."
        if repo is None
        else f"Push to {repo}; POST its webhook to /hooks/git to sync at once."
    )
    if users:
        access = f"Sign in as a user of {rich.markup.escape(str(users))}."
    elif reached.loopback:
        access = "The web UI has no sign-in: anyone on this machine may use it (--users FILE)."
    else:
        access = f"[yellow]The web UI is {OPEN_WARNING}.[/yellow]"
    text = (
        f"[bold]Nebula is up[/bold]: {url}\n"
        f"{rich.markup.escape(edit)}\n"
        f"Approve changes (nebula change open ...) at {url}/changes\n"
        f"{access}\n"
        f"State: {rich.markup.escape(str(state.state_dir))} (Ctrl-C stops; a restart resumes)"
    )
    return rich.panel.Panel(text, expand=False)


def _joining(reached: local.Running) -> str:
    """How another machine joins; outside the panel, so the command is never wrapped."""
    text = "Another machine joins as NODE with this command, run on it "
    text += "(`nebula join NODE` here prints it with the TOKEN):\n"
    text += f"  {join.agent_command(reached.url, 'NODE', 'TOKEN')}"
    if reached.loopback:
        text += f"\n  Other machines cannot reach {reached.listen}: restart with --host 0.0.0.0 "
        text += "--users FILE for them."
    return text


UP = UpCommand()
