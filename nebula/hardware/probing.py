"""One look at the machine: every probe at once, gathered into ``Hardware`` plus what failed.

Called by the node agent on each heartbeat (and by ``nebula agent --once``). ``probe`` runs the
GPU tools, the system readings and the endpoint checks at the same time, each within a
deadline, so one slow or broken probe costs its own answer and nothing else: it becomes a
``Problem`` (the probe's name and why), and ``Hardware`` still carries everything the others
found. Absence is not a problem: no ``nvidia-smi`` or ``rocm-smi`` means no GPU of that vendor,
and a service that does not answer is ``False`` in ``endpoints``. This module reads only; it
never raises for what it finds on the machine.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import pathlib
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

from nebula.hardware import amd, commands, nvidia, system
from nebula.hardware import endpoints as endpoint_checks
from nebula.resources.nebula_node import CpuInfo, DiskInfo, GpuInfo, Hardware

__all__ = ["DEFAULT_COMMAND_TIMEOUT", "Probe", "Problem", "probe"]

DEFAULT_COMMAND_TIMEOUT = 5.0
"""Seconds a GPU tool may take: nvidia-smi needs a second or two to wake an idle driver."""

_GRACE = 1.0  # beyond the command timeout, for the runner to kill and reap a hung tool

_T = TypeVar("_T")


@dataclasses.dataclass(frozen=True)
class Problem:
    """A probe that could not tell, and why: "nvidia-smi: no answer within 5s"."""

    probe: str
    """Which probe: nvidia-smi, rocm-smi, cpu, memory, os, disks, addresses or endpoints."""
    reason: str
    """What went wrong, in the words of the tool or the operating system where possible."""

    def __str__(self) -> str:
        return f"{self.probe}: {self.reason}"


@dataclasses.dataclass(frozen=True)
class Probe:
    """What one probe of the machine found, what it could not find, and what each part cost."""

    hardware: Hardware
    """Everything detected; a failed part holds its empty value (no GPUs, no disks...)."""
    problems: tuple[Problem, ...]
    """The probes that failed, in a fixed order; empty when everything answered."""
    timings: Mapping[str, float]
    """Seconds each probe took (a probe past the deadline is missing), and "total"."""


class _Probes:
    """The probes in flight on one pool, and the problems and timings they leave behind."""

    def __init__(self, pool: concurrent.futures.Executor, deadline: float) -> None:
        self.pool, self.deadline = pool, deadline
        self.problems: list[Problem] = []
        self.timings: dict[str, float] = {}

    def start(self, name: str, read: Callable[[], _T]) -> concurrent.futures.Future[_T]:
        def timed() -> _T:
            started = time.perf_counter()
            try:
                return read()
            finally:
                self.timings[name] = time.perf_counter() - started

        return self.pool.submit(timed)

    def outcome(self, name: str, future: concurrent.futures.Future[_T], fallback: _T) -> _T:
        """The probe's answer, or ``fallback`` after recording why there is none."""
        try:
            return future.result(timeout=max(0.0, self.deadline - time.monotonic()))
        # Stuck past the deadline (a hung network mount, a wedged driver): report and move on.
        except concurrent.futures.TimeoutError:
            reason = "did not finish before the probe's deadline"
        # The tools' own failures, already worded for people (no driver, timed out...).
        except (commands.CommandTimedOut, commands.ProbeFailed) as error:
            reason = str(error)
        # Anything else is a case this code did not foresee on some machine; one heartbeat
        # must not die of it, so it is reported like any failed probe, with its type.
        except Exception as error:
            reason = f"{type(error).__name__}: {error}"
        self.problems.append(Problem(name, reason))
        return fallback


def probe(
    *,
    # Where the readings come from (tests substitute both).
    runner: commands.CommandRunner = commands.run_subprocess,
    root: pathlib.Path = pathlib.Path("/"),
    # What to ask and how long to wait.
    endpoints: endpoint_checks.Endpoints | None = None,
    command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
) -> Probe:
    """Look at this machine once: CPU, memory, disks, OS, addresses, GPUs, local services.

    ``root`` is where ``/proc`` and ``/etc`` are read from on Linux; ``endpoints`` defaults to
    the platform's defaults overridden by ``DOCKER_HOST`` and ``OLLAMA_HOST``. Blocks for at
    most ``command_timeout`` plus a second (async callers use ``asyncio.to_thread``). Never
    raises for what it finds; safe to repeat, changes nothing.
    """
    started = time.perf_counter()
    pool = concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="probe")
    probes = _Probes(pool, deadline=time.monotonic() + command_timeout + _GRACE)
    try:
        targets = endpoints or endpoint_checks.Endpoints.from_environment()
    # A malformed OLLAMA_HOST: say so, and look where Ollama listens by default.
    except ValueError as error:
        probes.problems.append(Problem("endpoints", str(error)))
        targets = endpoint_checks.Endpoints()
    try:
        # All at once: the slowest probe sets the cost of a heartbeat, not the sum of them.
        nvidia_gpus = probes.start(
            "nvidia-smi", lambda: nvidia.detect(runner, timeout=command_timeout)
        )
        amd_gpus = probes.start("rocm-smi", lambda: amd.detect(runner, timeout=command_timeout))
        cpu = probes.start("cpu", lambda: system.read_cpu(root))
        memory = probes.start("memory", lambda: system.read_memory(root))
        operating_system = probes.start("os", lambda: system.read_os(root))
        disks = probes.start("disks", system.read_disks)
        addresses = probes.start("addresses", system.read_addresses)
        answering = probes.start("endpoints", lambda: endpoint_checks.check(targets))

        # Collected in a fixed order, so problems always come out in the same order.
        gpus: list[GpuInfo] = probes.outcome("nvidia-smi", nvidia_gpus, [])
        gpus = gpus + probes.outcome("rocm-smi", amd_gpus, [])
        fallback_cpu = CpuInfo(model="", cores=os.cpu_count() or 0)
        found_disks: tuple[list[DiskInfo], list[str]] = probes.outcome("disks", disks, ([], []))
        probes.problems += [Problem("disks", failure) for failure in found_disks[1]]
        os_name, kernel, arch = probes.outcome("os", operating_system, ("", "", ""))
        hardware = Hardware(
            cpu=probes.outcome("cpu", cpu, fallback_cpu),
            memory=probes.outcome("memory", memory, "0"),
            disks=found_disks[0],
            gpus=_renumbered(gpus),
            os=os_name,
            kernel=kernel,
            arch=arch,
            addresses=probes.outcome("addresses", addresses, []),
            endpoints=probes.outcome(
                "endpoints", answering, dict.fromkeys(endpoint_checks.SERVICES, False)
            ),
        )
    finally:
        # A probe stuck in the kernel cannot be interrupted; it is left to finish unwaited.
        pool.shutdown(wait=False, cancel_futures=True)
    timings = dict(probes.timings, total=time.perf_counter() - started)
    return Probe(hardware=hardware, problems=tuple(probes.problems), timings=timings)


def _renumbered(gpus: list[GpuInfo]) -> list[GpuInfo]:
    # Each vendor counts from 0; on a machine with both, the index is the position overall.
    if len({gpu.vendor for gpu in gpus}) < 2:
        return gpus
    return [gpu.model_copy(update={"index": index}) for index, gpu in enumerate(gpus)]
