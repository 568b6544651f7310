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

import rich.console
import rich.markup
import rich.panel
import uvicorn

from api import app as web
from api import auth as web_auth
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
        # Read first: a wrong users file stops here, before anything has started.
        users = auth.load_users(args.users) if args.users else None
        with (
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
                    host=args.host,
                    port=args.port,
                    repo=args.repo,
                    node=node,
                    users=users,
                    users_file=args.users,
                    sessions=sessions,
                )
            )
        _err.print("stopped", markup=False)
        return 0


async def _serve(
    state: local.LocalState,
    *,
    host: str,
    port: int,
    repo: str | None,
    node: str,
    # Who may sign in, read from which file, and where their sessions are kept; all three
    # None for an open web UI.
    users: auth.Users | None,
    users_file: pathlib.Path | None,
    sessions: auth.Sessions | None,
) -> None:
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
        agent_token=settings.Settings().agent_token,
        users=users,
        sessions=sessions,
        # A merge wakes the bootstrap source's loop: the sync applies it at once.
        changes=local.change_service(state, merged=lambda source: runtime.request(source.key)),
        events=feed,
    )
    # The agent of this machine reports in-process, straight into the database.
    agent = nodes_agent.Agent(
        node=node, interval=AGENT_INTERVAL, link=nodes_agent.DatabaseLink(beats)
    )
    # timeout_graceful_shutdown: a backstop only; the feed's close already ended the streams.
    web.steady_collector()
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", lifespan="off", timeout_graceful_shutdown=5
    )
    server = web.Server(config)
    reconciling = asyncio.create_task(runtime.run(stop), name="nebula-runtime")
    reporting = asyncio.create_task(agent.run(stop), name="nebula-agent")
    serving = asyncio.create_task(server.serve(), name="nebula-web")
    await runtime.wait_ready()
    # A panel wraps its lines only without soft wrapping (the console soft-wraps log lines).
    _err.print(_banner(state, host=host, port=port, repo=repo, users=users_file), soft_wrap=False)
    # Either a signal, or the web server ending on its own (its port was taken).
    waiting = asyncio.create_task(stop.wait())
    await asyncio.wait({waiting, serving}, return_when=asyncio.FIRST_COMPLETED)
    # The live streams first: uvicorn waits for every open response before it stops.
    await asyncio.to_thread(feed.close)
    server.should_exit = True
    stop.set()
    await asyncio.gather(serving, reconciling, reporting, waiting, return_exceptions=True)


def _banner(
    state: local.LocalState, *, host: str, port: int, repo: str | None, users: pathlib.Path | None
) -> rich.panel.Panel:
    work = local.local_repository(state)[1]
    edit = (
        f"Edit a file in {work}, commit, git push, and watch it apply."
        if repo is None
        else f"Push to {repo}; POST its webhook to /hooks/git to sync at once."
    )
    access = (
        f"Sign in as a user of {rich.markup.escape(str(users))}."
        if users
        else f"[yellow]The web UI is {OPEN_WARNING}.[/yellow]"
    )
    text = (
        f"[bold]Nebula is up[/bold]: http://{host}:{port}\n"
        f"{rich.markup.escape(edit)}\n"
        f"Approve changes (nebula change open ...) at http://{host}:{port}/changes\n"
        f"{access}\n"
        f"State: {rich.markup.escape(str(state.state_dir))} (Ctrl-C stops; a restart resumes)"
    )
    return rich.panel.Panel(text, expand=False)


UP = UpCommand()
