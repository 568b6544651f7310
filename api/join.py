"""``nebula join NODE``: the command that makes another machine report to this ``nebula up``.

Run on the machine where ``nebula up`` runs (same state folder); it prints the exact
``nebula agent`` command to run on the machine that should report as ``NODE``: this server's
address as other machines reach it, and the agent token of the state folder. The banner of
``nebula up`` and the page of a node nobody reports for point here. It starts nothing, and
prints the token only to the terminal that asked for it. Registered as a ``nebula.commands``
entry point; holds no business rules.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import pathlib
import shlex

import rich.console

from controllers import local
from nebula import cli, errors, hardware, settings
from nebula.hardware import system

__all__ = ["JOIN", "JoinCommand", "advertised", "agent_command"]

_out = rich.console.Console(highlight=False, soft_wrap=True)
_err = rich.console.Console(stderr=True, highlight=False, soft_wrap=True)


def advertised(host: str, port: int) -> local.Running:
    """Where other machines reach a server bound to ``host:port`` (this process's pid).

    Bound to every address (0.0.0.0, ::): the machine's Tailscale address if it has one, else
    its first usable LAN address. Bound to loopback: the loopback address, marked so.
    """
    address = host
    loopback = False
    try:
        parsed = ipaddress.ip_address(host)
    # A host name (homelab.local): others reach it by that name.
    except ValueError:
        parsed = None
    if parsed is not None and parsed.is_unspecified:
        found = system.read_addresses()
        address = hardware.tailscale_address(found) or (found[0] if found else "127.0.0.1")
    elif (parsed is not None and parsed.is_loopback) or host == "localhost":
        loopback = True
    shown = f"[{address}]" if ":" in address else address
    return local.Running(
        pid=os.getpid(), listen=f"{host}:{port}", url=f"http://{shown}:{port}", loopback=loopback
    )


def agent_command(url: str, node: str, token: str) -> str:
    """The ``nebula agent`` command line that reports as ``node`` to the server at ``url``."""
    return shlex.join(["nebula", "agent", "--server", url, "--node", node, "--token", token])


class JoinCommand:
    """``nebula join NODE``: print the agent command for another machine."""

    name = "join"
    help = "print the command that makes another machine report to this nebula up"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        """Adds the node name and the state folder."""
        parser.add_argument("node", help="the NebulaNode the other machine reports as")
        parser.add_argument(
            "--state-dir",
            type=pathlib.Path,
            help="the state folder of nebula up (default: $NEBULA_STATE_DIR, else .nebula)",
        )
        parser.epilog = cli.examples(
            "nebula join windows-vm           # then run what it prints on the VM",
            "nebula join home-ubuntu --state-dir /srv/nebula",
        )

    def run(self, args: argparse.Namespace) -> int:
        """Prints the command; exit 1 when no ``nebula up`` runs on this state folder."""
        config = settings.Settings()
        state_dir = args.state_dir or config.state_dir
        found = local.running(state_dir)
        if found is None:
            raise errors.ConfigurationError(
                f"no nebula up is running with the state folder {state_dir}: start it "
                "(or pass --state-dir), then run this again"
            )
        token = config.agent_token or local.agent_token(state_dir)
        if found.loopback:
            _err.print(
                f"This server listens on {found.listen} only, which other machines cannot "
                "reach: restart it with `nebula up --host 0.0.0.0 --users FILE` first.",
                markup=False,
            )
        _err.print(f"On the machine {args.node}, run:", markup=False)
        _out.print(agent_command(found.url, args.node, token), markup=False)
        return cli.EXIT_OK


JOIN = JoinCommand()
