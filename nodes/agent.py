"""The node agent: probe this machine's hardware and report a heartbeat every interval.

One per machine: a DaemonSet on k3s nodes, a plain service elsewhere (the Windows VM), and
in-process in ``nebula up`` for the machine it runs on. It reports through a :class:`Link`: to
the web API of ``nebula up`` or ``nebula serve`` with a bearer token (remote machines), or
straight into PostgreSQL (the agent inside ``nebula up``). ``nebula agent --once --output
json`` prints one heartbeat and reports nothing. The agent decides nothing about the homelab:
it only says what is there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import logging
import pathlib
import signal
import socket
import sys
from collections.abc import Callable
from typing import Protocol

import httpx
import rich.console

import nebula
from nebula import cli, errors, hardware, heartbeats, settings
from nebula.resources import fields

__all__ = [
    "AGENT",
    "Agent",
    "AgentCommand",
    "DatabaseLink",
    "HttpLink",
    "Link",
    "default_node_name",
    "heartbeat",
]

log = logging.getLogger("nebula.agent")
DEFAULT_INTERVAL = "15s"


def heartbeat(
    node: str, interval: float, *, probe: Callable[[], hardware.Probe] = hardware.probe
) -> heartbeats.Heartbeat:
    """Probes this machine once and dresses the result as a heartbeat of ``node``."""
    found = probe()
    return heartbeats.Heartbeat(
        node=node,
        hostname=socket.gethostname(),
        agent_version=nebula.__version__,
        interval_seconds=interval,
        hardware=found.hardware,
        problems=[str(problem) for problem in found.problems],
    )


class Link(Protocol):
    """Where an agent's heartbeats go."""

    def report(self, beat: heartbeats.Heartbeat) -> None:
        """Delivers one heartbeat; raises a TransientError when it could not."""
        ...


class HttpLink:
    """Reports to ``POST /api/v1/agents/heartbeat`` of a Nebula web server."""

    def __init__(self, server: str, token: str, *, timeout: float = 10.0) -> None:
        self._client = httpx.Client(base_url=server.rstrip("/"), timeout=timeout)
        self._headers = {"Authorization": f"Bearer {token}"}

    def report(self, beat: heartbeats.Heartbeat) -> None:
        """Posts the heartbeat; a refused token is permanent, anything else transient."""
        body = beat.model_dump(mode="json", by_alias=True, exclude_none=True)
        try:
            response = self._client.post(
                "/api/v1/agents/heartbeat", json=body, headers=self._headers
            )
        # The server is down or unreachable: the next heartbeat tries again.
        except httpx.HTTPError as error:
            raise errors.StoreUnavailable(f"the Nebula server did not answer: {error}") from None
        if response.status_code == 401:
            raise errors.ConfigurationError("the Nebula server refused the agent token")
        if response.status_code >= 300:
            raise errors.StoreUnavailable(f"the Nebula server answered {response.status_code}")

    def close(self) -> None:
        """Closes the HTTP connections."""
        self._client.close()


class DatabaseLink:
    """Records heartbeats straight into PostgreSQL (the agent inside ``nebula up``)."""

    def __init__(self, store: heartbeats.HeartbeatStore) -> None:
        self._store = store

    def report(self, beat: heartbeats.Heartbeat) -> None:
        """Keeps the heartbeat as this agent's latest."""
        self._store.record(beat)


class Agent:
    """Probes and reports every ``interval`` seconds until stopped."""

    def __init__(
        self,
        *,
        node: str,
        interval: float,
        link: Link,
        probe: Callable[[], hardware.Probe] = hardware.probe,
    ) -> None:
        self.node, self.interval, self._link, self._probe = node, interval, link, probe
        self.reported = 0  # heartbeats delivered (for tests and the status page)

    async def run(self, stop: asyncio.Event) -> None:
        """Reports at once, then every interval; a failed report is logged and retried."""
        while not stop.is_set():
            try:
                beat = await asyncio.to_thread(
                    heartbeat, self.node, self.interval, probe=self._probe
                )
                await asyncio.to_thread(self._link.report, beat)
                self.reported += 1
            # The server or database did not answer: the next heartbeat will try again.
            except errors.TransientError as error:
                log.warning("heartbeat of %s not delivered: %s", self.node, error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.interval)


def default_node_name() -> str:
    """The name this machine reports as: ``$NEBULA_NODE_NAME``, else its host name."""
    configured = settings.Settings().node_name
    return configured or socket.gethostname().split(".")[0].lower()


class AgentCommand:
    """``nebula agent``: report this machine's hardware, or print it once."""

    name = "agent"
    help = "probe this machine and report heartbeats (or print one with --once)"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        """Adds the agent's options."""
        parser.epilog = cli.examples(
            "nebula agent --once                     # what this machine has, nothing reported",
            "nebula agent --once --output json",
            "nebula agent --server http://192.168.1.10:8080 --token TOKEN --interval 30s",
        )
        parser.add_argument("--once", action="store_true", help="probe once, print, and exit")
        parser.add_argument(
            "--output",
            "-o",
            choices=("text", "json"),
            default="text",
            help="with --once: text for people, json for scripts (default: text)",
        )
        parser.add_argument(
            "--node", default=None, help="report as this NebulaNode (default: host name)"
        )
        parser.add_argument(
            "--server", help="the Nebula web server to report to (http://host:8080)"
        )
        parser.add_argument("--token", default=None, help="default: $NEBULA_AGENT_TOKEN")
        parser.add_argument(
            "--interval",
            type=cli.duration,
            default=DEFAULT_INTERVAL,
            help="how often to report, e.g. 30s or 2m (default: 15s)",
        )
        parser.add_argument(
            "--root",
            type=pathlib.Path,
            default=pathlib.Path("/"),
            help="the host's file system (/host in the DaemonSet); default: /",
        )

    def run(self, args: argparse.Namespace) -> int:
        """Prints one heartbeat (--once), or reports until Ctrl-C."""
        node = args.node or default_node_name()
        interval = fields.parse_duration(args.interval).total_seconds()
        probe = functools.partial(hardware.probe, root=args.root)
        if args.once:
            _print(heartbeat(node, interval, probe=probe), args.output)
            return cli.EXIT_OK
        token = args.token or settings.Settings().agent_token
        if not args.server or not token:
            raise errors.ConfigurationError(
                "nebula agent needs --server URL and a token (--token or $NEBULA_AGENT_TOKEN)"
            )
        link = HttpLink(args.server, token)
        agent = Agent(node=node, interval=interval, link=link, probe=probe)

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                # Windows has no signal handlers on its event loop: Ctrl-C ends the process.
                with contextlib.suppress(NotImplementedError):
                    loop.add_signal_handler(signum, stop.set)
            await agent.run(stop)

        try:
            asyncio.run(main())
        finally:
            link.close()
        return cli.EXIT_OK


def _print(beat: heartbeats.Heartbeat, output: str) -> None:
    if output == "json":
        data = beat.model_dump(mode="json", by_alias=True, exclude_none=True)
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    console = rich.console.Console(highlight=False)
    found = beat.hardware
    console.print(f"{beat.node} ({beat.hostname}), agent {beat.agent_version}", markup=False)
    console.print(f"  CPU     {found.cpu.model} ({found.cpu.cores} cores)", markup=False)
    console.print(f"  memory  {hardware.human(found.memory)}", markup=False)
    for gpu in found.gpus:
        vram = hardware.human(gpu.vram_total)
        console.print(f"  GPU {gpu.index}   {gpu.model}, {vram} VRAM", markup=False)
    for disk in found.disks:
        free, total = hardware.human(disk.free), hardware.human(disk.total)
        console.print(f"  disk    {disk.mount}: {free} free of {total}", markup=False)
    if not found.gpus:
        console.print("  GPU     none", markup=False)
    console.print(f"  OS      {found.os} ({found.arch}), kernel {found.kernel}", markup=False)
    console.print(f"  address {', '.join(found.addresses) or 'none'}", markup=False)
    answering = [name for name, up in sorted(found.endpoints.items()) if up]
    console.print(f"  serving {', '.join(answering) or 'nothing detected'}", markup=False)
    for problem in beat.problems:
        console.print(f"  problem {problem}", markup=False)


AGENT = AgentCommand()
