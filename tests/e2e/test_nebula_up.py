"""``nebula up`` as a newcomer runs it: from nothing to applied resources, edit, commit, Ctrl-C.

The real command in a child process, with its own private PostgreSQL under a fresh state
folder; only HTTP and git are used to watch it.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx

ROOT = pathlib.Path(__file__).parent.parent.parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _until(check: Callable[[], Any], *, timeout: float = 60.0) -> Any:
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


def _up(folder: pathlib.Path, port: int) -> subprocess.Popen[str]:
    environment = {**os.environ, "NEBULA_STATE_DIR": str(folder / ".nebula")}
    environment.pop("DATABASE_URL", None)
    return subprocess.Popen(
        [sys.executable, "-m", "nebula", "up", "--port", str(port)],
        cwd=folder,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    return output


def _model_size(port: int, name: str) -> str | None:
    items = httpx.get(f"http://127.0.0.1:{port}/api/v1/resources/NebulaModel").json()
    return next(
        (item["spec"].get("size") for item in items if item["metadata"]["name"] == name), None
    )


def test_up_applies_the_example_then_a_commit_and_resumes_after_ctrl_c(
    tmp_path: pathlib.Path,
) -> None:
    shutil.copytree(ROOT / "manifests", tmp_path / "manifests")
    port = _free_port()
    process = _up(tmp_path, port)
    try:
        _until(lambda: httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200)
        _until(lambda: _model_size(port, "llama3-1-8b") == "4.9G")
        assert "Traceback" not in httpx.get(f"http://127.0.0.1:{port}/").text

        clone = tmp_path / ".nebula" / "homelab"
        models = clone / "models.yaml"
        models.write_text(models.read_text().replace("size: 4.9G", "size: 6G", 1))
        git = ["git", "-c", "user.name=Ada", "-c", "user.email=ada@example", "commit", "-qam", "x"]
        subprocess.run(git, cwd=clone, check=True)
        subprocess.run(["git", "push", "-q"], cwd=clone, check=True)
        _until(lambda: _model_size(port, "llama3-1-8b") == "6G")
    finally:
        output = _stop(process)
    assert "Nebula is up" in output and "stopped" in output
    assert "Traceback" not in output

    # A restart resumes from the stored state: the same repository, what it applied kept.
    again = _up(tmp_path, port)
    try:
        _until(lambda: _model_size(port, "llama3-1-8b") == "6G")
    finally:
        output = _stop(again)
    assert "made a git repository" not in output
