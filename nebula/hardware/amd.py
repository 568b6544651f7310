"""AMD GPUs as ``rocm-smi --json`` reports them: model, VRAM, driver, load, temperature.

Called by ``probing``; ``detect`` is the only function here that runs anything, and only
through the ``CommandRunner`` it is given; ``parse_json`` is a pure function of the tool's text.
Key names differ between ROCm releases ("Card series" / "Card Series"), so lookups ignore case.
No ``rocm-smi`` (every Windows machine, every Linux box without ROCm) means no AMD GPU: a fact,
not an error. This module never changes a GPU setting (no ``--setfan``, ``--resetclocks``...).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from nebula.hardware import commands, quantities
from nebula.resources.nebula_node import GpuInfo

__all__ = ["COMMAND", "detect", "parse_json", "reports_no_gpu"]

COMMAND = (
    "rocm-smi",
    "--showproductname",
    "--showmeminfo",
    "vram",
    "--showuse",
    "--showtemp",
    "--showdriverversion",
    "--json",
)
"""Only what the probe reports: names, VRAM, load, temperatures and the kernel driver."""

_CARD = re.compile(r"^card(\d+)$")
_UNKNOWN = {"", "n/a", "unknown", "unsupported"}
# rocm-smi's words when the amdgpu driver or the GPUs are absent: no AMD GPU here, a fact.
_NO_DEVICE = ("no amd gpus", "amdgpu not found", "driver not initialized")


def _field(card: Mapping[str, Any], *names: str) -> str | None:
    """The first of ``names`` present in ``card`` (ignoring case), or None when unknown."""
    lowered = {str(key).lower(): value for key, value in card.items()}
    for name in names:
        value = lowered.get(name.lower())
        if value is None:
            continue
        text = str(value).strip()
        if text.lower() in _UNKNOWN or text.lower().startswith("n/a"):
            continue
        return text
    return None


def _whole(text: str | None) -> int | None:
    return None if text is None else round(float(text))


def _bytes(text: str | None) -> str | None:
    return None if text is None else quantities.from_bytes(int(text))


def _json_object(text: str) -> dict[str, Any]:
    # rocm-smi may print WARNING lines before the JSON; the object is the outermost braces.
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise ValueError("no JSON object in rocm-smi output")
    try:
        parsed = json.loads(text[start : end + 1])
    # Braces but no JSON between them: output cut short, or not rocm-smi's.
    except json.JSONDecodeError as error:
        raise ValueError(f"unreadable JSON ({error})") from error
    if not isinstance(parsed, dict):
        raise ValueError("expected a JSON object of cards")
    return parsed


def parse_json(text: str) -> list[GpuInfo]:
    """The GPUs in ``rocm-smi ... --json`` output, ordered by card number.

    Raises ValueError when ``text`` holds no such JSON or a card has no VRAM total.
    """
    report = _json_object(text)
    system = report.get("system")
    driver = _field(system, "Driver version") if isinstance(system, dict) else None
    cards = sorted(
        (int(match.group(1)), card)
        for key, card in report.items()
        if (match := _CARD.match(key)) and isinstance(card, dict)
    )
    gpus = []
    for number, card in cards:
        total = _bytes(_field(card, "VRAM Total Memory (B)"))
        if total is None:
            raise ValueError(f"card{number} reports no VRAM total")
        model = _field(card, "Card series", "Card SKU", "Card model", "Device ID")
        gpus.append(
            GpuInfo(
                index=number,
                vendor="amd",
                model=model or f"AMD GPU card{number}",
                vram_total=total,
                vram_used=_bytes(_field(card, "VRAM Total Used Memory (B)")),
                driver=driver,
                utilization=_whole(_field(card, "GPU use (%)")),
                temperature=_whole(
                    _field(
                        card,
                        "Temperature (Sensor edge) (C)",
                        "Temperature (Sensor junction) (C)",
                    )
                ),
            )
        )
    return gpus


def reports_no_gpu(text: str) -> bool:
    """Whether rocm-smi's message says there is no AMD GPU or amdgpu driver on this machine."""
    lowered = text.lower()
    return any(phrase in lowered for phrase in _NO_DEVICE)


def detect(run: commands.CommandRunner, *, timeout: float) -> list[GpuInfo]:
    """The AMD GPUs of this machine; an empty list when rocm-smi is missing or sees none.

    Raises ProbeFailed when rocm-smi fails in another way or prints what cannot be read, and
    CommandTimedOut when it hangs. Reads only; safe to repeat.
    """
    try:
        result = run(COMMAND, timeout=timeout)
    # No rocm-smi: no ROCm stack, so no AMD GPU the agent could report. A fact, not a problem.
    except commands.CommandNotFound:
        return []
    output = result.stdout + result.stderr
    if reports_no_gpu(output):
        return []
    try:
        gpus = parse_json(result.stdout)
    # rocm-smi answered something else than its JSON: quote its first line as the reason.
    except ValueError as error:
        first = output.strip().splitlines()[0] if output.strip() else "no output"
        raise commands.ProbeFailed(f"{error}: {first}") from None
    if result.returncode != 0 and not gpus:
        raise commands.ProbeFailed(f"exited with status {result.returncode}")
    return gpus
