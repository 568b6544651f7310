"""Byte counts as Kubernetes quantities, with one rule for every size the probe reports.

Called by the probe's parsers (memory, disks, VRAM) and by ``summary`` (VRAM tiers). Pure
functions, no I/O. The rule: write the exact byte count in the largest binary unit that divides
it (``24Gi``, ``116Mi``, ``24684096Ki``), else in plain bytes; never round, so two reports of
the same hardware always compare equal.
"""

from __future__ import annotations

from nebula.resources import fields

__all__ = ["MIB", "from_bytes", "human", "to_bytes"]

MIB = 1024**2
"""Bytes in a mebibyte: nvidia-smi reports memory in MiB."""

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


def to_bytes(quantity: str) -> int:
    """The byte count of a quantity such as ``24Gi`` (fractions of a byte are dropped)."""
    return int(fields.parse_quantity(quantity))


def human(quantity: str | int) -> str:
    """A size as people read it, rounded to one decimal: ``8Gi``, ``23.5Gi``, ``512Mi``."""
    size = fields.parse_quantity(quantity) if isinstance(quantity, str) else quantity
    for suffix, unit in _UNITS[2:]:
        if size >= unit:
            value = round(float(size) / unit, 1)
            return f"{value:g}{suffix}"
    return str(int(size))
