"""``nebula up`` as a newcomer runs it: from nothing to applied resources, edit, commit, Ctrl-C.

The real command in a child process, with its own private PostgreSQL under a fresh state
folder; only HTTP and git are used to watch it.
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import httpx

from tests.e2e.processes import ROOT, free_port, stop, until, up


def _model_size(port: int, name: str) -> str | None:
    items = httpx.get(f"http://127.0.0.1:{port}/api/v1/resources/NebulaModel").json()
    return next(
        (item["spec"].get("size") for item in items if item["metadata"]["name"] == name), None
    )


def test_up_applies_the_example_then_a_commit_and_resumes_after_ctrl_c(
    tmp_path: pathlib.Path,
) -> None:
    shutil.copytree(ROOT / "manifests", tmp_path / "manifests")
    port = free_port()
    process = up(tmp_path, port)
    try:
        until(lambda: httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200)
        until(lambda: _model_size(port, "llama3-1-8b") == "4.9G")
        assert "Traceback" not in httpx.get(f"http://127.0.0.1:{port}/").text

        clone = tmp_path / ".nebula" / "homelab"
        models = clone / "models.yaml"
        models.write_text(models.read_text().replace("size: 4.9G", "size: 6G", 1))
        git = ["git", "-c", "user.name=Ada", "-c", "user.email=ada@example", "commit", "-qam", "x"]
        subprocess.run(git, cwd=clone, check=True)
        subprocess.run(["git", "push", "-q"], cwd=clone, check=True)
        until(lambda: _model_size(port, "llama3-1-8b") == "6G")
    finally:
        output = stop(process)
    assert "Nebula is up" in output and "stopped" in output
    assert "Traceback" not in output

    # A restart resumes from the stored state: the same repository, what it applied kept.
    again = up(tmp_path, port)
    try:
        until(lambda: _model_size(port, "llama3-1-8b") == "6G")
    finally:
        output = stop(again)
    assert "made a git repository" not in output
