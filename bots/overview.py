"""What the bots say about the homelab: sync revisions, what is not Ready, the nodes table.

Read from the resource store by the Discord commands (``/nebula status``, ``/nebula nodes``)
and the stream bot's ``!status``. Plain data and text, no chat framework; it never writes.
Statuses are read as the controllers wrote them (camelCase JSON), through the kinds' models
where a field matters, never guessed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from nebula.resources import KINDS, ResourceKey, conditions
from nebula.resources.git_source import GitSourceStatus
from nebula.store import ResourceStore, StoredObject

__all__ = ["NodeRow", "Overview", "SourceState", "Trouble", "node_rows", "overview", "short"]


@dataclasses.dataclass(frozen=True)
class SourceState:
    """One GitSource: what it follows and the revision it last applied."""

    key: ResourceKey
    branch: str | None  # None: it follows a tag or a commit
    revision: str | None  # None: nothing applied yet
    ready: conditions.Condition | None  # None: not synced yet


@dataclasses.dataclass(frozen=True)
class Trouble:
    """An object whose Ready condition is not True, with why."""

    key: ResourceKey
    status: str  # False or Unknown
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class Overview:
    """The homelab at a glance."""

    sources: Sequence[SourceState]
    troubles: Sequence[Trouble]
    objects: int  # every object the store holds
    unobserved: int  # objects no controller has written a status for yet

    @property
    def healthy(self) -> bool:
        """True when every object a controller looked at is Ready."""
        return not self.troubles

    def line(self) -> str:
        """The state in one line, for a chat that shows one (Twitch)."""
        revisions = ", ".join(
            f"{s.key.name}@{short(s.revision)}" if s.revision else f"{s.key.name} not synced"
            for s in self.sources
        )
        head = f"{self.objects} resources" + (f", {revisions}" if revisions else "")
        if self.healthy:
            return f"{head}; everything is Ready"
        names = ", ".join(f"{t.key.kind}/{t.key.name} ({t.reason})" for t in self.troubles[:3])
        more = f" and {len(self.troubles) - 3} more" if len(self.troubles) > 3 else ""
        return f"{head}; not Ready: {names}{more}"


@dataclasses.dataclass(frozen=True)
class NodeRow:
    """One row of ``kubectl get nebulanodes``: NAME ROLE GPU VRAM READY."""

    name: str
    role: str
    gpu: str
    vram: str
    ready: str  # True, False or Unknown


def short(revision: str | None) -> str:
    """A commit as people quote it (seven hex digits); empty for none."""
    return (revision or "")[:7]


def overview(store: ResourceStore) -> Overview:
    """Every GitSource's revision, and every object whose Ready is not True (reads the store)."""
    sources: list[SourceState] = []
    troubles: list[Trouble] = []
    objects = unobserved = 0
    for kind in KINDS:
        for stored in store.list(kind):
            objects += 1
            ready = _ready(stored.status)
            if kind == "GitSource":
                sources.append(_source(stored, ready))
            if not stored.status:
                unobserved += 1
            elif ready is None or ready.status != "True":
                troubles.append(
                    Trouble(
                        key=stored.key,
                        status=ready.status if ready else "Unknown",
                        reason=ready.reason if ready else "NoReadyCondition",
                        message=ready.message if ready else "",
                    )
                )
    return Overview(sources, troubles, objects, unobserved)


def node_rows(store: ResourceStore) -> list[NodeRow]:
    """The NebulaNodes as ``kubectl get nebulanodes`` shows them, sorted by name."""
    rows = []
    for stored in store.list("NebulaNode"):
        ready = _ready(stored.status)
        rows.append(
            NodeRow(
                name=stored.key.name,
                role=str(stored.document.get("spec", {}).get("role", "")),
                gpu=str(stored.status.get("gpu") or "-"),
                vram=str(stored.status.get("vram") or "-"),
                ready=ready.status if ready else "Unknown",
            )
        )
    return sorted(rows, key=lambda row: row.name)


def _ready(status: Mapping[str, Any]) -> conditions.Condition | None:
    found = [
        conditions.Condition.model_validate(raw)
        for raw in status.get("conditions") or []
        if isinstance(raw, Mapping) and raw.get("type") == conditions.READY
    ]
    return found[0] if found else None


def _source(stored: StoredObject, ready: conditions.Condition | None) -> SourceState:
    spec = stored.document.get("spec", {})
    ref = spec.get("ref") or {"branch": "main"}
    status = GitSourceStatus.model_validate(stored.status) if stored.status else None
    return SourceState(
        key=stored.key,
        branch=ref.get("branch"),
        revision=status.last_applied_revision if status else None,
        ready=ready,
    )
