"""Byte counts as Kubernetes quantities: one rule to store them, one to show them, one to
compare a reported size with a declared one.

Called by the probe's parsers (memory, disks, VRAM), by ``summary`` (VRAM tiers), by the
NebulaNode controller (status messages) and by everything a person reads (the agent's text
output, the web pages). Pure functions, no I/O.

- Stored: the exact byte count in the largest binary unit that divides it (``24Gi``, ``116Mi``,
  ``24684096Ki``), else in plain bytes; never rounded, so two reports of the same hardware
  always compare equal, and machines read them as they are.
- Shown: :func:`human`, the one way a size reaches a person (``23.5Gi``), with the exact MiB
  beside it where two sizes are compared (``7.8Gi (7982Mi)``).
- Compared: :func:`meets`, with the margin by which real hardware reports less than its
  nominal size (:data:`SHORTFALL`).
"""

from __future__ import annotations

import functools

from nebula.resources import fields

__all__ = [
    "MIB",
    "SHORTFALL",
    "SHORTFALL_FLOOR",
    "from_bytes",
    "human",
    "least",
    "meets",
    "to_bytes",
]

MIB = 1024**2
"""Bytes in a mebibyte: nvidia-smi reports memory in MiB."""

# Real cards and machines report less than the size they are sold and declared with: the
# driver keeps some VRAM for itself, the firmware and the kernel some RAM. What nvidia-smi
# prints for whole cards (public outputs): 7982 of 8192 MiB (RTX 2070, 2080 SUPER, 3070: 2.6 %
# short), 11019 of 11264 (RTX 2080 Ti, 2.2 %), 12045 of 12288 (RTX 3060, 2.0 %), 24564 of
# 24576 (RTX 4090), 3911 of 4096 (GTX 1650, T400: 185 MiB, 4.5 %), 81251 of 81920 (A100 80GB,
# 669 MiB). The kernel's MemTotal runs a few percent below the RAM installed, in the same way.
# 5 %, and never less than 512 MiB, covers them all and still tells apart the sizes cards come
# in (an 11 GiB card does not pass for 12 GiB, 10 for 11, 3 for 4). ECC on a data-center card
# takes more (a T4 reports 15109 of 16384 MiB): that memory really is not there to use, and the
# message says how much is.
SHORTFALL = 0.05
"""The share of a declared size that reported hardware may lack and still count as having it."""
SHORTFALL_FLOOR = 512 * MIB
"""The bytes it may lack however small the declared size (a 4 GiB card reports 185 MiB less)."""

_UNITS = (
    ("Ei", 1024**6),
    ("Pi", 1024**5),
    ("Ti", 1024**4),
    ("Gi", 1024**3),
    ("Mi", MIB),
    ("Ki", 1024),
)


def from_bytes(count: int) -> str:
    """``count`` bytes as a quantity in the largest binary unit that divides it exactly.

    Raises ValueError for a negative count (no size the probe reads is negative).
    """
    if count < 0:
        raise ValueError(f"a size cannot be negative: {count}")
    for suffix, size in _UNITS:
        if count and count % size == 0:
            return f"{count // size}{suffix}"
    return str(count)


@functools.lru_cache(maxsize=4096)
def to_bytes(quantity: str) -> int:
    """The byte count of a quantity such as ``24Gi`` (fractions of a byte are dropped).

    Remembered: a quantity is parsed once, however many nodes and services compare it."""
    return int(fields.parse_quantity(quantity))


def human(quantity: str | int, *, exact: bool = False) -> str:
    """A size as people read it, rounded to one decimal: ``8Gi``, ``23.5Gi``, ``512Mi``.

    ``exact`` adds the whole MiB in brackets to a size shown in Gi or more (``24Gi (24564Mi)``),
    for messages that set two sizes side by side: rounded alone, 24564Mi and 24Gi read the same.
    """
    size = fields.parse_quantity(quantity) if isinstance(quantity, str) else quantity
    for suffix, unit in _UNITS[2:]:
        if size >= unit:
            value = round(float(size) / unit, 1)
            shown = f"{value:g}{suffix}"
            if exact and unit > MIB:
                shown += f" ({int(size // MIB)}Mi)"
            return shown
    return str(int(size))


def meets(found: str | int, *, declared: str | int) -> bool:
    """Whether a reported size counts as the declared one: at most :data:`SHORTFALL` of it
    (and never less than :data:`SHORTFALL_FLOOR`) below. Each is a quantity (``7982Mi``,
    ``8Gi``) or a byte count."""
    has = found if isinstance(found, int) else to_bytes(found)
    return has >= least(declared)


@functools.lru_cache(maxsize=4096)
def least(declared: str | int) -> int:
    """The fewest bytes reported hardware may have and still count as ``declared`` (see
    :func:`meets`); remembered, for comparing one declared size with many machines."""
    wanted = declared if isinstance(declared, int) else to_bytes(declared)
    return wanted - max(int(wanted * SHORTFALL), SHORTFALL_FLOOR)
