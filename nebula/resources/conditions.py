"""Status conditions in the Kubernetes/kstatus convention: ``Ready``, ``Reconciling``, ``Stalled``
(and ``Degraded``, an abnormal-true condition a person should look at).

Pure data, no I/O. Every kind's status derives from :class:`Status`, so ``kubectl wait
--for=condition=Ready`` and kstatus-aware tools understand all of them. :func:`set_condition`
keeps ``lastTransitionTime`` when a condition's status does not change.
"""

from __future__ import annotations

import datetime
from typing import Literal

import pydantic

from nebula.resources import base

__all__ = [
    "DEGRADED",
    "READY",
    "RECONCILING",
    "STALLED",
    "Condition",
    "ConditionStatus",
    "PlacementStatus",
    "Status",
    "find",
    "is_ready",
    "set_condition",
]

READY = "Ready"
DEGRADED = "Degraded"
"""True while an object works but not as declared (a node with less VRAM than it should have, a
driver its agent could not read): a person should look, nothing waits on it."""
RECONCILING = "Reconciling"
STALLED = "Stalled"

ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(base.Model):
    """One observation about an object (``metav1.Condition``)."""

    type: str = pydantic.Field(pattern=r"^([a-z0-9.-]+/)?[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?$")
    """What the condition is about, in CamelCase: Ready, Reconciling or Stalled."""
    status: ConditionStatus
    """Whether the condition holds: True, False or Unknown."""
    reason: str = pydantic.Field(
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$", max_length=1024
    )
    """Why, in one CamelCase word such as SourceNotFound or ValidationFailed."""
    message: str = pydantic.Field(default="", max_length=32768)
    """Human-readable details; may be empty."""
    last_transition_time: datetime.datetime
    """When status last changed (not when it was last checked)."""
    observed_generation: int | None = pydantic.Field(default=None, ge=0)
    """The metadata.generation this condition was computed for."""


class PlacementStatus(base.Model):
    """How one node is doing with its part of an object (a model pulled, a service running)."""

    node: str
    """Name of the NebulaNode this entry is about."""
    ready: bool = False
    """Whether this node's part is done (model present, service running)."""
    message: str = ""
    """What the node is doing, or why it is not ready; empty when all is well."""
    progress: int | None = pydantic.Field(default=None, ge=0, le=100)
    """Percent done (0-100) of a pull or download; unset when not measurable."""


class Status(base.Model):
    """What every kind's status has: the generation observed and the conditions."""

    observed_generation: int | None = pydantic.Field(default=None, ge=0)
    """The metadata.generation last fully handled; lower means a change is pending."""
    conditions: list[Condition] = pydantic.Field(
        default_factory=list,
        # One condition per type, merged by type under server-side apply (metav1.Condition).
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    """Current observations, one per type: Ready, Reconciling, Stalled."""


def find(conditions: list[Condition], type_: str) -> Condition | None:
    """The condition of that type, or None when it has not been set."""
    return next((c for c in conditions if c.type == type_), None)


def is_ready(status: Status | None) -> bool:
    """Whether the object reports ``Ready=True``."""
    ready = find(status.conditions, READY) if status else None
    return ready is not None and ready.status == "True"


def set_condition(
    conditions: list[Condition],
    *,
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str = "",
    now: datetime.datetime,
    generation: int | None = None,
) -> list[Condition]:
    """A new list with that condition set; its transition time moves only when status changes."""
    old = find(conditions, type_)
    since = old.last_transition_time if old is not None and old.status == status else now
    new = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=generation,
    )
    return [new if c.type == type_ else c for c in conditions] if old else [*conditions, new]
