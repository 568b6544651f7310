"""The probe run for real on this machine reports what the machine itself says it is."""

from __future__ import annotations

import os
import pathlib
import shutil

import psutil  # type: ignore[import-untyped]  # psutil ships no type information

from nebula import hardware
from nebula.hardware import quantities
from tests.nebula.hardware.replay import FIXTURES

NOTHING_LISTENS = hardware.Endpoints.from_environment({})  # the documented defaults


def _meminfo_total_bytes() -> int:
    for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal in /proc/meminfo")


def test_memory_is_meminfo_memtotal_and_cores_are_os_cpu_count() -> None:
    found = hardware.probe(endpoints=NOTHING_LISTENS)

    assert quantities.to_bytes(found.hardware.memory) == _meminfo_total_bytes()
    assert found.hardware.cpu.cores == os.cpu_count()
    assert found.hardware.cpu.model  # named, whatever the CPU is


def test_os_architecture_and_root_disk_are_reported() -> None:
    found = hardware.probe(endpoints=NOTHING_LISTENS).hardware

    assert found.arch == "amd64"
    assert found.os and found.kernel == os.uname().release
    root = next(disk for disk in found.disks if disk.mount == "/")
    total = psutil.disk_usage("/").total
    assert quantities.to_bytes(root.total) == total


def test_nothing_listening_here_means_every_endpoint_is_false_and_nothing_failed() -> None:
    found = hardware.probe(endpoints=NOTHING_LISTENS)

    assert found.hardware.endpoints == {"docker": False, "ollama": False, "comfyui": False}
    assert found.problems == ()


def test_every_probe_reports_its_time_and_the_whole_probe_is_fast() -> None:
    found = hardware.probe(endpoints=NOTHING_LISTENS)

    expected = {"nvidia-smi", "rocm-smi", "cpu", "memory", "os", "disks", "addresses"}
    assert expected | {"endpoints", "total"} == set(found.timings)
    assert found.timings["total"] < 2.0  # a generous bound; bench/probe.py measures it


def test_a_services_answer_shows_in_the_probe(ollama_address: str) -> None:
    targets = hardware.Endpoints.from_environment({"OLLAMA_HOST": ollama_address})

    found = hardware.probe(endpoints=targets)

    assert found.hardware.endpoints == {"docker": False, "ollama": True, "comfyui": False}


def test_proc_and_etc_are_read_under_the_given_root(tmp_path: pathlib.Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "etc").mkdir()
    shutil.copy(FIXTURES / "proc-cpuinfo.this-machine.txt", tmp_path / "proc" / "cpuinfo")
    shutil.copy(FIXTURES / "proc-meminfo.this-machine.txt", tmp_path / "proc" / "meminfo")
    (tmp_path / "etc" / "os-release").write_text('PRETTY_NAME="Nebula Test OS 1.0"\n')

    found = hardware.probe(root=tmp_path, endpoints=NOTHING_LISTENS).hardware

    assert (found.cpu.model, found.memory, found.os) == (
        "AMD EPYC",
        "24684096Ki",
        "Nebula Test OS 1.0",
    )


def test_a_root_without_proc_falls_back_to_psutil_and_platform(tmp_path: pathlib.Path) -> None:
    # What the probe does on Windows and macOS, where there is no /proc to read.
    found = hardware.probe(root=tmp_path, endpoints=NOTHING_LISTENS)

    assert quantities.to_bytes(found.hardware.memory) == psutil.virtual_memory().total
    assert found.hardware.os == f"Linux {os.uname().release}"
    assert found.problems == ()
