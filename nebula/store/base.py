"""What every resource store offers the sync and the reconcilers, whatever keeps the objects.

Two implementations: :mod:`nebula.store.postgres` (the embedded runtime) and
:mod:`nebula.store.kubernetes` (custom resources on k3s). Values here are plain data; a store
never parses specs into models (the caller does, at the boundary) and never decides what to
apply (the sync plans, the store carries the plan out).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from nebula.resources import KINDS, ResourceKey

__all__ = [
    "SOURCE_LABEL",
    "AppliedState",
    "Desired",
    "Plan",
    "ResourceStore",
    "StoredObject",
    "content_hash",
    "source_id",
]

SOURCE_LABEL = "nebula.dev/source"
"""Marks an object as applied by a GitSource (value ``<namespace>.<name>``): the inventory.

Only objects carrying it are ever pruned, and only by the source it names; an object a person
created by hand is never touched by a prune.
"""


def source_id(key: ResourceKey) -> str:
    """How a GitSource is named in labels, columns and locks: ``<namespace>.<name>``."""
    return f"{key.namespace}.{key.name}"


def content_hash(document: Mapping[str, Any]) -> str:
    """A stable hash of a document (key order and spacing do not matter)."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class Desired:
    """One object as the sync wants it: the document to apply and the hash of that document.

    ``document`` holds apiVersion, kind, metadata (name, namespace, labels, annotations) and
    spec, as JSON-ready data; never status.
    """

    key: ResourceKey
    document: Mapping[str, Any]
    hash: str


class AppliedState(NamedTuple):
    """What a store knows of an object a source applied: the hash it applied, and drift.

    A named tuple: a sync reads one per object of the source, ten thousand at a time.
    """

    hash: str | None  # None when the object carries no record of what was applied
    drifted: bool  # someone changed it since it was applied


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one sync changes: objects to create, to update, and keys to prune."""

    create: Sequence[Desired] = ()
    update: Sequence[Desired] = ()
    prune: Sequence[ResourceKey] = ()
    unchanged: int = 0

    @property
    def empty(self) -> bool:
        """True when carrying the plan out would write nothing."""
        return not (self.create or self.update or self.prune)

    def ordered(self) -> tuple[list[Desired], list[ResourceKey]]:
        """Writes in dependency order (nodes before what is placed on them), prunes reversed."""
        rank = {kind: index for index, kind in enumerate(KINDS)}
        writes = sorted([*self.create, *self.update], key=lambda d: rank.get(d.key.kind, 99))
        prunes = sorted(self.prune, key=lambda k: -rank.get(k.kind, 99))
        return writes, prunes


@dataclasses.dataclass(frozen=True)
class StoredObject:
    """An object as a store holds it, for reconcilers and the UI."""

    key: ResourceKey
    document: Mapping[str, Any]  # apiVersion, kind, metadata, spec
    status: Mapping[str, Any]
    generation: int | None  # None where the store does not count generations (an emulator)
    source: str | None  # the GitSource that applied it, or None
    updated: datetime.datetime | None = None
    # Changes whenever the object or its status is written (PostgreSQL: the row's xmin;
    # Kubernetes: its resourceVersion): what a reader may memoise by. None: unknown.
    version: str | None = None


class ResourceStore(Protocol):
    """The narrow interface the sync and the reconcilers need from a store."""

    def inventory(
        self, source: str, desired: Mapping[ResourceKey, Desired] | None = None
    ) -> Mapping[ResourceKey, AppliedState]:
        """Every object ``source`` applied that still exists, with what was applied.

        ``desired``: what the sync is about to apply. A store whose server fills in defaults
        (Kubernetes) judges drift against it: an object whose applied hash equals its desired
        one is drifted when a field the desired document sets no longer has that value; with
        no ``desired`` it reports none. PostgreSQL compares what it wrote and ignores it.
        """
        ...

    def commit(self, source: str, plan: Plan) -> None:
        """Carries a plan out: writes in dependency order, then prunes.

        Atomic where the store can be (PostgreSQL); elsewhere each write is idempotent so a
        retried sync finishes the job. Raises :class:`~nebula.errors.OwnershipConflict` when a
        write would take over an object another source applied, before writing anything.
        """
        ...

    def get(self, key: ResourceKey) -> StoredObject | None:
        """One object, or None."""
        ...

    def list(self, kind: str) -> list[StoredObject]:
        """Every object of a kind."""
        ...

    def write_status(self, key: ResourceKey, status: Mapping[str, Any]) -> None:
        """Replaces an object's status (the status subresource); spec and generation stay."""
        ...
