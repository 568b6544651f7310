"""One sync of a GitSource: fetch → load what changed → validate all → plan → apply and prune.

Called by the GitSource reconciler (both runtimes), ``nebula sync`` and ``nebula plan``. The
desired set is validated whole before anything is written: one bad file applies nothing and
the result names every error with file:line. Files are parsed once per blob id (the
:class:`FileCache`), so a new revision costs the files it changed, and an unchanged revision
with no drift writes nothing at all. This module holds no state between calls other than the
cache the caller hands in, and never writes status: the reconciler does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Literal

from nebula import errors, manifests
from nebula.manifests import loading
from nebula.resources import ResourceKey, fields
from nebula.resources.git_source import GitSource
from nebula.sources import fetching
from nebula.store import base
from nebula.sync import planning

__all__ = ["FileCache", "Progress", "Step", "SyncResult", "sync"]

Step = Literal["fetching", "loading", "applying"]
Progress = Callable[[Step, str, str], None]
"""Hears each step as it starts: the step, the revision (empty while fetching), a detail."""


class FileCache:
    """Loaded files and their desired documents, by blob id: a blob is parsed only once.

    Holds the files of the latest revision only, so its size follows the repository's.
    """

    def __init__(self) -> None:
        self._files: dict[tuple[str, str], tuple[loading.LoadedFile, list[base.Desired]]] = {}
        # The last assembled set, reused while the files are the same (the same revision,
        # or a commit that touched no manifest): checking references is not free either.
        self._assembled: tuple[tuple[tuple[str, str], ...], loading.ManifestSet] | None = None
        # The last plan, with the desired set and inventory it was made from: when neither
        # changed (the same objects, the store untouched), neither did the plan.
        self._planned: tuple[object, object, bool, base.Plan] | None = None
        self.hits = 0
        self.misses = 0

    def plan(
        self,
        desired_set: loading.ManifestSet,
        wanted: dict[ResourceKey, base.Desired],
        applied: Mapping[ResourceKey, base.AppliedState],
        *,
        prune: bool,
    ) -> base.Plan:
        """The plan for a desired set against an inventory; reused while both are the same."""
        memo = self._planned
        if memo is not None and memo[0] is desired_set and memo[1] is applied and memo[2] == prune:
            return memo[3]
        changes = planning.plan(wanted.values(), applied, prune=prune)
        self._planned = (desired_set, applied, prune, changes)
        return changes

    def load(
        self, mirror: fetching.Mirror, files: list[fetching.File], namespace: str
    ) -> tuple[loading.ManifestSet, dict[ResourceKey, base.Desired]]:
        """The assembled desired set of a revision, and the desired document of each resource."""
        kept: dict[tuple[str, str], tuple[loading.LoadedFile, list[base.Desired]]] = {}
        with manifests.collector_paused():
            for file in files:
                # The path is part of the key: errors name it, and a moved file says so.
                id_ = (f"{file.path}\0{namespace}", file.blob)
                entry = self._files.get(id_)
                if entry is None:
                    self.misses += 1
                    entry = self._load(mirror, file, namespace)
                else:
                    self.hits += 1
                kept[id_] = entry
        self._files = kept
        desired = {d.key: d for _, documents in kept.values() for d in documents}
        signature = tuple(kept)
        if self._assembled is None or self._assembled[0] != signature:
            loaded = [entry[0] for entry in kept.values()]
            self._assembled = (signature, manifests.assemble(loaded))
        return self._assembled[1], desired

    @staticmethod
    def _load(
        mirror: fetching.Mirror, file: fetching.File, namespace: str
    ) -> tuple[loading.LoadedFile, list[base.Desired]]:
        if file.link:
            failure = errors.ManifestError(
                file.path, 1, 1, "", "a link in the repository is not followed"
            )
            return loading.unread_file(file.path, failure), []
        loaded = loading.load_file(file.path, mirror.read(file.blob), namespace=namespace)
        return loaded, [planning.desired(resource) for resource, _ in loaded.resources]


@dataclasses.dataclass(frozen=True)
class SyncResult:
    """How a sync ended; the reconciler turns it into status, history and events."""

    revision: fetching.Revision
    result: Literal["applied", "unchanged", "failed", "planned"]
    plan: base.Plan
    errors: tuple[errors.ManifestError, ...] = ()
    resources: int = 0  # how many resources the revision declares

    @property
    def counts(self) -> dict[str, int]:
        """Created, updated, pruned and unchanged objects."""
        return {
            "created": len(self.plan.create),
            "updated": len(self.plan.update),
            "pruned": len(self.plan.prune),
            "unchanged": self.plan.unchanged,
        }


def sync(
    source: GitSource,
    *,
    # Where the desired state comes from.
    mirror: fetching.Mirror,
    credentials: fetching.Credentials | None = None,
    cache: FileCache,
    # Where it goes.
    store: base.ResourceStore,
    # Behaviour.
    dry_run: bool = False,
    progress: Progress | None = None,
) -> SyncResult:
    """Brings the store to the source's revision; see the module docstring.

    Raises :class:`~nebula.errors.SourceUnavailable` / :class:`~nebula.errors.SourceRejected`
    when fetching fails (nothing is written), :class:`~nebula.errors.OwnershipConflict` when
    an object belongs to another source, and the store's errors when writing fails. Invalid
    manifests are not an exception: the result is ``failed`` with every error.
    """
    say: Progress = progress or (lambda step, revision, detail: None)
    spec = source.spec
    key = source.key
    source_name = base.source_id(key)

    # Fetch first: without the revision there is nothing to compare, and the last applied
    # state stays exactly as it is.
    say("fetching", "", spec.url)
    timeout = fields.parse_duration(spec.timeout).total_seconds()
    revision = mirror.fetch(spec.url, spec.ref, credentials, timeout=timeout)

    # Load: only blobs not seen before are parsed; the set is validated whole.
    say("loading", revision.commit, "")
    files = mirror.files(revision.commit, spec.path)
    desired_set, wanted = cache.load(mirror, files, key.namespace or "default")
    if desired_set.errors:
        return SyncResult(revision, "failed", base.Plan(), tuple(desired_set.errors))

    # Plan against what this source applied before; drift counts as a change.
    wanted_now = {k: wanted[k] for k in desired_set.resources}
    applied = store.inventory(source_name, desired=wanted_now)
    changes = cache.plan(desired_set, wanted_now, applied, prune=spec.prune)
    count = len(desired_set.resources)
    if dry_run:
        return SyncResult(revision, "planned", changes, resources=count)
    if changes.empty:
        return SyncResult(revision, "unchanged", changes, resources=count)

    # Apply and prune in one step of the store (a transaction where it has them).
    written = len(changes.create) + len(changes.update)
    say("applying", revision.commit, f"{written:,} objects, pruning {len(changes.prune):,}")
    store.commit(source_name, changes)
    return SyncResult(revision, "applied", changes, resources=count)
