"""Another machine joins ``nebula up`` by following what the pages and the banner say, literally.

Regression (issue 11.2): a node nobody reported for said "run `nebula agent --node NAME` on the
machine", which fails ("needs --server URL and a token"), and a server started as the README
shows answered heartbeats with 404 "this server takes no agent heartbeats".
"""

from __future__ import annotations

import pathlib
import re
import shlex
import shutil
import subprocess

import httpx

from tests.e2e.processes import ROOT, environment, free_port, stop, until, up


def _ready(port: int, node: str) -> dict[str, str]:
    """The node's Ready condition as the API lists it (all empty until the sync made it)."""
    found = httpx.get(f"http://127.0.0.1:{port}/api/v1/resources").json()
    item = next((i for i in found if i["kind"] == "NebulaNode" and i["name"] == node), None)
    if item is None:
        return {"status": "", "reason": "", "message": ""}
    return {"status": item["ready"], "reason": item["reason"] or "", "message": item["message"]}


def _run(folder: pathlib.Path, line: str) -> subprocess.Popen[str]:
    """A command line as a user pastes it into a shell in ``folder``."""
    return subprocess.Popen(
        shlex.split(line),
        cwd=folder,
        env=environment(folder),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_the_hint_of_a_silent_node_and_what_it_prints_make_the_node_report(
    tmp_path: pathlib.Path,
) -> None:
    server, machine = tmp_path / "server", tmp_path / "windows-vm"
    shutil.copytree(ROOT / "manifests", server / "manifests")
    machine.mkdir()
    port = free_port()
    process = up(server, port)
    agent = None
    try:
        silent = until(lambda: (r := _ready(port, "windows-vm"))["reason"] == "NoHeartbeat" and r)
        assert silent["status"] == "False"
        # The hint is a command in backquotes, to run where Nebula runs.
        hint = re.search(r"`(nebula [^`]+)`", silent["message"])
        assert hint is not None, silent["message"]
        joined = _run(server, hint.group(1))
        printed, _ = joined.communicate(timeout=60)
        assert joined.returncode == 0, printed
        command = next(line for line in printed.splitlines() if line.startswith("nebula agent"))
        assert f":{port}" in command and "--node windows-vm" in command
        # What it printed, run as printed on the other machine (another folder, no state).
        agent = _run(machine, command)
        reporting = until(lambda: (r := _ready(port, "windows-vm"))["status"] == "True" and r)
        assert reporting["reason"] == "Reporting"
    finally:
        if agent is not None:
            stop(agent)
        output = stop(process)
    # The banner already said how: the agent command with this server's address, and how to
    # get the token.
    assert f"nebula agent --server http://127.0.0.1:{port} --node NODE --token TOKEN" in output
    assert "nebula join NODE" in output


def test_join_without_a_running_up_says_what_to_start(tmp_path: pathlib.Path) -> None:
    joined = _run(tmp_path, "nebula join windows-vm")
    output, _ = joined.communicate(timeout=60)
    assert joined.returncode == 1, output
    assert "no nebula up is running" in output and "Traceback" not in output
