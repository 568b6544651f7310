"""What reconcilers return besides a status, shared by every kind and both runtimes.

The runtimes turn an :class:`Event` into a Kubernetes event on the object (the operator) or a
log line and the live page (the embedded runtime); the reconcilers never post anything.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

__all__ = ["Event"]


@dataclasses.dataclass(frozen=True)
class Event:
    """An event about the object: only when something changed or failed."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str
