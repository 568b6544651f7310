"""Running the probe's external commands (``nvidia-smi``, ``rocm-smi``) through one seam.

Every command the hardware probe runs goes through a ``CommandRunner``: the default one starts
a subprocess with a timeout; tests hand in a runner that replays recorded real outputs. The GPU
modules call it; ``probing`` picks it. A runner reports a missing program and a timeout as the
two exceptions below, never as text, so "not installed" (a fact) and "hung" (a problem) cannot
be confused. Nothing here runs a shell, asks for privileges or changes the machine.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Sequence
from typing import Protocol

__all__ = [
    "CommandNotFound",
    "CommandResult",
    "CommandRunner",
    "CommandTimedOut",
    "ProbeFailed",
    "run_subprocess",
]


@dataclasses.dataclass(frozen=True)
class CommandResult:
    """What a finished command printed and how it exited."""

    returncode: int
    stdout: str
    stderr: str = ""


class CommandNotFound(Exception):
    """The program is not installed here: for a GPU tool, a fact ("no GPU of that vendor")."""


class CommandTimedOut(Exception):
    """The program did not finish within its timeout (it was killed): a problem to report."""


class ProbeFailed(Exception):
    """A probe ran but could not tell; the message says why, for the probe's list of problems."""


class CommandRunner(Protocol):
    """Runs ``argv`` without a shell; raises CommandNotFound or CommandTimedOut, else returns."""

    def __call__(self, argv: Sequence[str], *, timeout: float) -> CommandResult: ...


# A service on Windows has no console: without this flag each probe would flash a window.
_CREATION_FLAGS = getattr(subprocess, "CREATE_NO_WINDOW", 0) if sys.platform == "win32" else 0


def run_subprocess(argv: Sequence[str], *, timeout: float) -> CommandResult:
    """The default runner: ``argv`` as a child process, killed after ``timeout`` seconds.

    Output is decoded as UTF-8 with replacement (nvidia-smi writes UTF-8 XML on every system).
    Safe to repeat; it reads nothing from stdin.
    """
    try:
        done = subprocess.run(
            list(argv),
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
            encoding="utf-8",
            errors="replace",
            creationflags=_CREATION_FLAGS,
        )
    # The program is not on PATH: the caller decides whether that is a fact or a problem.
    except FileNotFoundError as error:
        raise CommandNotFound(f"{argv[0]} is not installed") from error
    # subprocess.run has already killed the child; only the report is left to make.
    except subprocess.TimeoutExpired as error:
        raise CommandTimedOut(f"no answer within {timeout:g}s") from error
    return CommandResult(returncode=done.returncode, stdout=done.stdout, stderr=done.stderr)
