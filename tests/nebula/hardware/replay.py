"""A ``CommandRunner`` that replays recorded outputs, and the recorded outputs themselves.

Every file under ``fixtures/`` is a real output (``fixtures/SOURCES.md`` says where each came
from); the runner hands them back for the exact command line the probe runs, and answers
"not installed" for any command it has no record of, like a machine without that tool.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence

from nebula.hardware import commands

FIXTURES = pathlib.Path(__file__).parent / "fixtures"

# nvidia-smi's documented exit status when it cannot talk to the driver (nvidia-smi(1),
# RETURN VALUE: "9 - NVIDIA driver is not loaded"); the recorded text carries no status.
DRIVER_NOT_LOADED = 9


def fixture(name: str) -> str:
    """The text of one recorded output under ``fixtures/``."""
    return (FIXTURES / name).read_text(encoding="utf-8")


Reply = commands.CommandResult | Exception


class ReplayRunner:
    """Answers each command line from ``replies``; anything else is not installed."""

    def __init__(self, replies: Mapping[Sequence[str], Reply] | None = None) -> None:
        self.replies = {tuple(argv): reply for argv, reply in (replies or {}).items()}
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, argv: Sequence[str], *, timeout: float) -> commands.CommandResult:
        self.calls.append(tuple(argv))
        reply = self.replies.get(tuple(argv))
        if reply is None:
            raise commands.CommandNotFound(f"{argv[0]} is not installed")
        if isinstance(reply, Exception):
            raise reply
        return reply


def printed(text: str, returncode: int = 0) -> commands.CommandResult:
    """A command that printed ``text`` on stdout and exited with ``returncode``."""
    return commands.CommandResult(returncode=returncode, stdout=text)
