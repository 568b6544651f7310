"""A failing probe becomes a problem with its reason; absence is a fact; the rest still works."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence

import pytest

from nebula import hardware
from nebula.hardware import amd, commands, nvidia
from tests.nebula.hardware.replay import (
    DRIVER_NOT_LOADED,
    ReplayRunner,
    fixture,
    printed,
)

NOTHING_LISTENS = hardware.Endpoints.from_environment({})


def test_a_machine_without_gpu_tools_has_no_gpus_and_no_problems() -> None:
    found = hardware.probe(runner=ReplayRunner(), endpoints=NOTHING_LISTENS)

    assert found.hardware.gpus == []
    assert found.problems == ()


def test_recorded_gpus_of_both_vendors_are_numbered_across_the_machine() -> None:
    runner = ReplayRunner(
        {
            nvidia.XML_COMMAND: printed(fixture("nvidia-smi-q-x.rtx-3060.xml")),
            amd.COMMAND: printed(fixture("rocm-smi-json.rx-6700-xt.json")),
        }
    )

    gpus = hardware.probe(runner=runner, endpoints=NOTHING_LISTENS).hardware.gpus

    assert [(gpu.index, gpu.vendor, gpu.vram_total) for gpu in gpus] == [
        (0, "nvidia", "12Gi"),
        (1, "amd", "12272Mi"),
    ]


def test_a_timed_out_gpu_tool_is_a_problem_and_the_other_vendor_still_counts() -> None:
    runner = ReplayRunner(
        {
            nvidia.XML_COMMAND: commands.CommandTimedOut("no answer within 5s"),
            amd.COMMAND: printed(fixture("rocm-smi-json.4x-mi100.json")),
        }
    )

    found = hardware.probe(runner=runner, endpoints=NOTHING_LISTENS)

    assert [str(problem) for problem in found.problems] == ["nvidia-smi: no answer within 5s"]
    assert len(found.hardware.gpus) == 4
    assert found.hardware.cpu.cores > 0 and found.hardware.disks


def test_a_driver_that_does_not_answer_is_a_problem_in_nvidia_smis_words() -> None:
    text = fixture("nvidia-smi.no-driver.txt")
    runner = ReplayRunner({nvidia.XML_COMMAND: printed(text, returncode=DRIVER_NOT_LOADED)})

    found = hardware.probe(runner=runner, endpoints=NOTHING_LISTENS)

    assert found.hardware.gpus == []
    assert found.problems == (
        hardware.Problem(
            "nvidia-smi",
            "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
        ),
    )


def test_an_unforeseen_error_of_one_probe_does_not_stop_the_others() -> None:
    runner = ReplayRunner({amd.COMMAND: PermissionError(13, "Permission denied")})

    found = hardware.probe(runner=runner, endpoints=NOTHING_LISTENS)

    assert [str(problem) for problem in found.problems] == [
        "rocm-smi: PermissionError: [Errno 13] Permission denied"
    ]
    assert found.hardware.memory != "0"


def _hanging_nvidia_smi(argv: Sequence[str], *, timeout: float) -> commands.CommandResult:
    # The real subprocess runner on a program that hangs like a wedged nvidia-smi.
    if argv[0] == "nvidia-smi":
        argv = [sys.executable, "-c", "import time; time.sleep(30)"]
    return commands.run_subprocess(argv, timeout=timeout)


def test_a_real_hung_tool_is_killed_at_its_timeout_and_reported() -> None:
    started = time.monotonic()

    found = hardware.probe(
        runner=_hanging_nvidia_smi, endpoints=NOTHING_LISTENS, command_timeout=0.5
    )

    assert time.monotonic() - started < 5
    assert [str(problem) for problem in found.problems] == ["nvidia-smi: no answer within 0.5s"]


def test_the_subprocess_runner_reports_a_missing_program_as_not_installed() -> None:
    with pytest.raises(commands.CommandNotFound, match="is not installed"):
        commands.run_subprocess(["nebula-no-such-tool-here"], timeout=1)


def test_the_subprocess_runner_returns_what_the_program_printed() -> None:
    done = commands.run_subprocess([sys.executable, "-c", "print('VRAM')"], timeout=10)

    assert (done.returncode, done.stdout) == (0, "VRAM\n")


def test_a_malformed_ollama_host_is_a_problem_and_the_default_address_is_asked() -> None:
    # Run in a child process: the probe reads OLLAMA_HOST from its own environment.
    script = "from nebula import hardware; print(*hardware.probe().problems, sep='\\n')"
    environ = {**os.environ, "OLLAMA_HOST": "gpu-box:eleven"}

    done = subprocess.run(
        [sys.executable, "-c", script], env=environ, capture_output=True, text=True, check=True
    )

    assert done.stdout.startswith("endpoints: OLLAMA_HOST 'gpu-box:eleven' is not a host and port")
