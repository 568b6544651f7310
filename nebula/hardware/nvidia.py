"""NVIDIA GPUs as ``nvidia-smi`` reports them: model, VRAM, driver, CUDA, load, temperature.

Called by ``probing``; ``detect`` is the only function here that runs anything, and only
through the ``CommandRunner`` it is given. The parsers are pure functions of the tool's text.
It prefers ``nvidia-smi -q -x`` (XML: the only output with the CUDA version) and falls back to
the ``--query-gpu`` CSV when the XML cannot be read. A MIG-partitioned card is reported once,
as the physical GPU with its whole memory. No ``nvidia-smi`` means no NVIDIA GPU: a fact, not
an error. This module never changes a GPU setting (no ``-pm``, ``-r``, ``-c`` or the like).
"""

from __future__ import annotations

import csv
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence

from nebula.hardware import commands, quantities
from nebula.resources.nebula_node import GpuInfo

__all__ = [
    "CSV_COMMAND",
    "QUERY_FIELDS",
    "XML_COMMAND",
    "detect",
    "parse_csv",
    "parse_xml",
    "reports_no_gpu",
]

XML_COMMAND = ("nvidia-smi", "-q", "-x")
"""The full query as XML: driver and CUDA version, and per GPU name, memory, load, heat."""

QUERY_FIELDS = (
    "index",
    "name",
    "memory.total",
    "memory.used",
    "driver_version",
    "utilization.gpu",
    "temperature.gpu",
)
"""The ``--query-gpu`` fields of the CSV fallback, in the order ``CSV_COMMAND`` asks for them."""

CSV_COMMAND = (
    "nvidia-smi",
    f"--query-gpu={','.join(QUERY_FIELDS)}",
    "--format=csv,noheader,nounits",
)
"""The CSV fallback: no CUDA version (no query field carries it), everything else."""

# What nvidia-smi writes where a value is unknown; all of them mean "not reported".
_UNKNOWN = {
    "",
    "n/a",
    "[n/a]",
    "not supported",
    "[not supported]",
    "unknown error",
    "[unknown error]",
}
_DEPRECATED = "requested functionality has been deprecated"

# Texts nvidia-smi prints when the tool is there but no GPU is: a fact, not a failure.
_NO_DEVICE = ("no devices were found",)

_LEADING_NUMBER = re.compile(r"^\s*(-?\d+(?:\.\d+)?)")


def _known(text: str | None) -> str | None:
    """``text`` stripped, or None for nvidia-smi's ways of saying it does not know."""
    if text is None:
        return None
    value = text.strip()
    lowered = value.lower()
    if lowered in _UNKNOWN or lowered == _DEPRECATED:
        return None
    return value


def _number(text: str | None) -> float | None:
    """The number at the start of ``81920 MiB``, ``27 C`` or ``0 %``; None when unknown."""
    value = _known(text)
    if value is None:
        return None
    match = _LEADING_NUMBER.match(value)
    if match is None:
        raise ValueError(f"expected a number, got {value!r}")
    return float(match.group(1))


def _whole(text: str | None) -> int | None:
    number = _number(text)
    return None if number is None else round(number)


def _mib(text: str | None) -> str | None:
    mib = _whole(text)
    return None if mib is None else quantities.from_bytes(mib * quantities.MIB)


def _percent(text: str | None) -> int | None:
    value = _whole(text)
    # Some drivers report load above 100 during boost sampling; the model caps at 100.
    return None if value is None else max(0, min(100, value))


def _child_text(element: ElementTree.Element, path: str) -> str | None:
    found = element.find(path)
    return None if found is None else _known(found.text)


def parse_xml(text: str) -> list[GpuInfo]:
    """The GPUs in ``nvidia-smi -q -x`` output, in nvidia-smi's order (index 0 first).

    Raises ValueError when ``text`` is not that XML, or a GPU has no name or no memory total.
    """
    try:
        root = ElementTree.fromstring(text)
    # Cut short or not XML at all: the caller may try the CSV query instead.
    except ElementTree.ParseError as error:
        raise ValueError(f"unreadable XML ({error})") from error
    if root.tag != "nvidia_smi_log":
        raise ValueError(f"expected <nvidia_smi_log>, got <{root.tag}>")
    driver = _child_text(root, "driver_version")
    cuda = _child_text(root, "cuda_version")
    gpus = []
    for index, gpu in enumerate(root.findall("gpu")):
        name = _child_text(gpu, "product_name")
        # Direct children only: a MIG card repeats fb_memory_usage per slice under mig_devices.
        total = _mib(_child_text(gpu, "fb_memory_usage/total"))
        if name is None or total is None:
            raise ValueError(f"GPU {index} ({gpu.get('id', '?')}) reports no name or no memory")
        gpus.append(
            GpuInfo(
                index=index,
                vendor="nvidia",
                model=name,
                vram_total=total,
                vram_used=_mib(_child_text(gpu, "fb_memory_usage/used")),
                driver=driver,
                cuda_version=cuda,
                utilization=_percent(_child_text(gpu, "utilization/gpu_util")),
                temperature=_whole(_child_text(gpu, "temperature/gpu_temp")),
            )
        )
    return gpus


def parse_csv(text: str, *, fields: Sequence[str] = QUERY_FIELDS) -> list[GpuInfo]:
    """The GPUs in ``--query-gpu`` CSV output whose columns are ``fields``.

    Accepts both ``noheader,nounits`` rows and the default form with a header line and units
    (``24576 MiB``, ``3 %``). Raises ValueError for a row of the wrong width or a GPU with no
    name or no memory total.
    """
    rows = [row for row in csv.reader(text.splitlines(), skipinitialspace=True) if row]
    if rows and rows[0] and rows[0][0].strip().lower() == fields[0]:
        rows = rows[1:]  # the header line of --format=csv
    gpus = []
    for position, row in enumerate(rows):
        if len(row) != len(fields):
            raise ValueError(f"expected {len(fields)} columns, got {len(row)}: {row!r}")
        value = dict(zip(fields, row, strict=True))
        name, total = _known(value.get("name")), _mib(value.get("memory.total"))
        if name is None or total is None:
            raise ValueError(f"GPU row {position} reports no name or no memory: {row!r}")
        index = _whole(value.get("index"))
        gpus.append(
            GpuInfo(
                index=position if index is None else index,
                vendor="nvidia",
                model=name,
                vram_total=total,
                vram_used=_mib(value.get("memory.used")),
                driver=_known(value.get("driver_version")),
                utilization=_percent(value.get("utilization.gpu")),
                temperature=_whole(value.get("temperature.gpu")),
            )
        )
    return gpus


def reports_no_gpu(text: str) -> bool:
    """Whether nvidia-smi's message says there is simply no NVIDIA GPU ("No devices were found")."""
    lowered = text.lower()
    return any(phrase in lowered for phrase in _NO_DEVICE)


def _failure(result: commands.CommandResult) -> str:
    """nvidia-smi's own first line of complaint, e.g. that it cannot talk to the driver."""
    message = (result.stdout.strip() or result.stderr.strip()).splitlines()
    first = message[0].strip() if message else ""
    return first or f"exited with status {result.returncode} and no message"


def detect(run: commands.CommandRunner, *, timeout: float) -> list[GpuInfo]:
    """The NVIDIA GPUs of this machine; an empty list when nvidia-smi is missing or sees none.

    Raises ProbeFailed when nvidia-smi is installed but fails (no driver, unreadable output)
    and CommandTimedOut when it hangs. Reads only; safe to repeat.
    """
    try:
        result = run(XML_COMMAND, timeout=timeout)
    # No nvidia-smi: no NVIDIA driver stack, so no usable NVIDIA GPU. A fact, not a problem.
    except commands.CommandNotFound:
        return []
    if result.returncode != 0:
        if reports_no_gpu(result.stdout + result.stderr):
            return []
        raise commands.ProbeFailed(_failure(result))
    try:
        return parse_xml(result.stdout)
    # Garbled or truncated XML: the CSV query asks for less and may still get through.
    except ValueError as xml_error:
        fallback = run(CSV_COMMAND, timeout=timeout)
        if fallback.returncode != 0:
            raise commands.ProbeFailed(f"{xml_error}; CSV query: {_failure(fallback)}") from None
        try:
            return parse_csv(fallback.stdout)
        # Neither form could be read: report both reasons, the XML's first.
        except ValueError as csv_error:
            raise commands.ProbeFailed(f"{xml_error}; CSV query: {csv_error}") from None
