"""One-line views of detected GPUs: the VRAM tier, and the GPU and VRAM printer columns.

Called by the NebulaNode controller (status fields, node labels) and the agent's output. Pure
functions of ``GpuInfo`` lists, no I/O. The tier is the original system's: the VRAM of the
largest single GPU (models are not split across cards), ``cpu`` when there is none; a card
reaches a tier's lower bound as it reaches a declared size (``quantities.meets``: an 8 GiB card
reporting 7982 MiB is ``8Gi+``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from nebula.hardware import quantities
from nebula.resources.nebula_node import GpuInfo, VramTier

__all__ = ["gpu_summary", "short_model", "vram_summary", "vram_tier"]

_TIMES = "\u00d7"  # the multiplication sign, as people write "2x A100" by hand
# Vendor and family words that every card of a line repeats; the column has no room for them.
_PREFIXES = re.compile(r"^(?:NVIDIA\s+|AMD\s+|GeForce\s+|Tesla\s+)+", re.IGNORECASE)
# rocm-smi names a card "Navi 22 [Radeon RX 6700/6700 XT / 6800M]": the brackets hold the
# marketing name people know.
_BRACKETED = re.compile(r"\[([^\]]+)\]\s*$")


def vram_tier(gpus: Sequence[GpuInfo]) -> VramTier:
    """``cpu`` with no GPU, else the tier of the largest GPU: ``<4Gi``, ``4-8Gi`` or ``8Gi+``.

    The lower bound of a tier belongs to it: a card of 4Gi is ``4-8Gi``, one of 8Gi is ``8Gi+``,
    each counted as having the size when it reports it with the usual shortfall.
    """
    if not gpus:
        return "cpu"
    largest = max((gpu.vram_total for gpu in gpus), key=quantities.to_bytes)
    if quantities.meets(largest, declared="8Gi"):
        return "8Gi+"
    if quantities.meets(largest, declared="4Gi"):
        return "4-8Gi"
    return "<4Gi"


def short_model(model: str) -> str:
    """A GPU name without vendor and family words: "NVIDIA GeForce RTX 3090" -> "RTX 3090"."""
    bracketed = _BRACKETED.search(model)
    if bracketed:
        model = bracketed.group(1)
    return _PREFIXES.sub("", model.strip()) or model.strip()


def _grouped(values: Sequence[str]) -> str:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return ", ".join(value if n == 1 else f"{n}{_TIMES} {value}" for value, n in counts.items())


def gpu_summary(gpus: Sequence[GpuInfo]) -> str:
    """The GPU column: "RTX 3090", "2\u00d7 A100-SXM4-80GB", "RTX 3090, GTX 1070 Ti".

    Empty for a machine without GPU; the same model is counted, not repeated.
    """
    return _grouped([short_model(gpu.model) for gpu in gpus])


def vram_summary(gpus: Sequence[GpuInfo]) -> str:
    """The VRAM column: "24Gi", "2\u00d7 8Gi", "12Gi, 4Gi", "7.8Gi"; "" for no GPU."""
    return _grouped([quantities.human(gpu.vram_total) for gpu in gpus])
