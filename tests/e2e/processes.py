"""``nebula`` commands as a user runs them: child processes with their own state folder.

Shared by the end-to-end tests of ``nebula up``; only HTTP, git and the processes' output are
used to watch them.
"""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
import psutil

ROOT = pathlib.Path(__file__).parent.parent.parent
BIN = pathlib.Path(sys.executable).parent
"""Where the virtualenv's console scripts are: ``nebula`` as a user types it."""


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def until(check: Callable[[], Any], *, timeout: float = 60.0) -> Any:
    """The first truthy result of ``check``; not listening yet or a 503 counts as not yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
        # Not listening yet, or answering 503 while it starts.
        except (httpx.HTTPError, AssertionError):
            found = None
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"gave up after {timeout} s")


def environment(folder: pathlib.Path) -> dict[str, str]:
    """The environment of a user working in ``folder``: its state folder, ``nebula`` on PATH."""
    env = {**os.environ, "NEBULA_STATE_DIR": str(folder / ".nebula")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.pop("DATABASE_URL", None)
    env.pop("NEBULA_AGENT_TOKEN", None)
    return env


def nebula(folder: pathlib.Path, *args: str) -> subprocess.Popen[str]:
    """``nebula ARGS`` started in ``folder``, its stderr merged into its stdout."""
    return subprocess.Popen(
        [sys.executable, "-m", "nebula", *args],
        cwd=folder,
        env=environment(folder),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def up(folder: pathlib.Path, port: int, *args: str) -> subprocess.Popen[str]:
    """``nebula up --port PORT`` in ``folder`` (which holds a copy of ``manifests/``)."""
    return nebula(folder, "up", "--port", str(port), *args)


def stop(process: subprocess.Popen[str], *, expected: int = 0) -> str:
    """Ctrl-C, then everything it printed; it must end with ``expected``."""
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == expected, output
    return output


def postgres_processes(folder: pathlib.Path) -> list[str]:
    """The command lines of PostgreSQL servers whose data lies under ``folder``."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        line = " ".join(process.info["cmdline"] or [])
        if "postgres" in line and str(folder) in line:
            found.append(line)
    return found
