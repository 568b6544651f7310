"""Planning a sync: the desired documents of a set, compared with what a source applied.

Pure functions, no I/O. The store reports, per object, the hash of what was applied and whether
it drifted since; an object is written only when it is new, its desired document changed, or
someone changed it behind the sync's back. Unchanged revision, no drift: an empty plan.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from nebula.resources import Resource, ResourceKey
from nebula.store import base

__all__ = ["desired", "document_of", "plan"]

_METADATA = ("name", "namespace", "labels", "annotations")


def document_of(resource: Resource) -> dict[str, Any]:
    """What is applied for a resource: apiVersion, kind, the user's metadata and spec.

    Only what the user wrote (no defaults: the CRD or the reader fills those), in the types
    the CRD expects (a Discord id written as a YAML number becomes text), never status.
    """
    data = resource.model_dump(mode="json", by_alias=True, exclude_unset=True)
    metadata = {k: v for k, v in data["metadata"].items() if k in _METADATA}
    return {
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "metadata": metadata,
        "spec": data.get("spec", {}),
    }


def desired(resource: Resource) -> base.Desired:
    """The desired object for a resource, with the hash its changes are detected by."""
    document = document_of(resource)
    return base.Desired(key=resource.key, document=document, hash=base.content_hash(document))


def plan(
    wanted: Iterable[base.Desired],
    applied: Mapping[ResourceKey, base.AppliedState],
    *,
    prune: bool = True,
) -> base.Plan:
    """What to create, update and prune so that the store holds exactly ``wanted``.

    Only objects in ``applied`` (what this source applied) are pruned, and only with ``prune``.
    """
    create, update = [], []
    unchanged = 0
    seen: set[ResourceKey] = set()
    lookup = applied.get
    for item in wanted:
        key = item.key
        seen.add(key)
        state = lookup(key)
        if state is None:
            create.append(item)
        elif state.drifted or state.hash != item.hash:
            update.append(item)
        else:
            unchanged += 1
    gone = list(applied.keys() - seen) if prune else []
    return base.Plan(create=create, update=update, prune=sorted(gone), unchanged=unchanged)
