"""``nebula up``: the whole product on one machine, no cluster needed.

Starts (or reuses) the private PostgreSQL of the state folder, makes a local git repository from
``manifests/`` unless ``--repo`` names one, runs the embedded runtime's reconcilers and serves
the web UI on http://127.0.0.1:8080. Ctrl-C (or SIGTERM) stops everything in order: the web
server, the reconcilers, then the database; a restart resumes from the stored state.
Registered as a ``nebula.commands`` entry point; this module holds no business rules.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Iterator

import rich.console
import rich.panel
import uvicorn

from api import app as web
from controllers import commands, local
from nebula import heartbeats, settings
from nodes import agent as nodes_agent

__all__ = ["AGENT_INTERVAL", "UP", "UpCommand"]

AGENT_INTERVAL = 15.0
"""How often the agent inside ``nebula up`` reports (seconds)."""

_err = rich.console.Console(stderr=True, highlight=False, soft_wrap=True)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: ``nebula up`` stops every part in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class UpCommand:
    """``nebula up``: database, sync, reconcilers and web UI on this machine."""

    name = "up"
    help = "run Nebula on this machine: database, GitOps sync, reconcilers, web UI"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        """Adds the state options and where the web UI listens."""
        commands.add_state_options(parser)
        parser.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
        parser.add_argument("--port", type=int, default=8080, help="default: 8080")
        parser.add_argument(
            "--node", help="the NebulaNode this machine reports as (default: its host name)"
        )

    def run(self, args: argparse.Namespace) -> int:
        """Runs until Ctrl-C or SIGTERM; returns 0 after a clean stop."""
        config = settings.Settings()
        if args.state_dir:
            config = config.model_copy(update={"state_dir": args.state_dir})
        if args.database_url:
            config = config.model_copy(update={"database_url": args.database_url})
        with (
            _err.status("starting Nebula…") as spinner,
            local.local_state(config, say=lambda m: spinner.update(m)) as state,
        ):
            local.bootstrap_source(
                state,
                repo=args.repo,
                branch=args.branch,
                path=args.repo_path or ("manifests" if args.repo else "."),
                manifests=args.manifests,
                say=lambda m: _err.print(m, markup=False),
            )
            spinner.stop()
            node = args.node or nodes_agent.default_node_name()
            asyncio.run(_serve(state, host=args.host, port=args.port, repo=args.repo, node=node))
        _err.print("stopped", markup=False)
        return 0


async def _serve(
    state: local.LocalState, *, host: str, port: int, repo: str | None, node: str
) -> None:
    stop = local.stop_on_signals()
    runtime = local.runtime(state)
    beats = heartbeats.HeartbeatStore(state.conninfo)
    app = web.create_app(
        store=state.store,
        runs=state.runs,
        trigger=runtime,
        secrets=state.secrets,
        heartbeats=beats,
        agent_token=settings.Settings().agent_token,
    )
    # The agent of this machine reports in-process, straight into the database.
    agent = nodes_agent.Agent(
        node=node, interval=AGENT_INTERVAL, link=nodes_agent.DatabaseLink(beats)
    )
    server = _Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off"))
    reconciling = asyncio.create_task(runtime.run(stop), name="nebula-runtime")
    reporting = asyncio.create_task(agent.run(stop), name="nebula-agent")
    serving = asyncio.create_task(server.serve(), name="nebula-web")
    await runtime.wait_ready()
    _err.print(_banner(state, host=host, port=port, repo=repo))
    # Either a signal, or the web server ending on its own (its port was taken).
    waiting = asyncio.create_task(stop.wait())
    await asyncio.wait({waiting, serving}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    stop.set()
    await asyncio.gather(serving, reconciling, reporting, waiting, return_exceptions=True)


def _banner(state: local.LocalState, *, host: str, port: int, repo: str | None) -> rich.panel.Panel:
    work = local.local_repository(state)[1]
    edit = (
        f"Edit a file in {work}, commit, git push, and watch it apply."
        if repo is None
        else f"Push to {repo}; POST its webhook to /hooks/git to sync at once."
    )
    text = (
        f"[bold]Nebula is up[/bold]: http://{host}:{port}\n"
        f"{edit}\n"
        f"State: {state.state_dir} (Ctrl-C stops; a restart resumes)"
    )
    return rich.panel.Panel(text, expand=False)


UP = UpCommand()
