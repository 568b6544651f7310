"""GitOps sync: from a revision of a GitSource to the objects of a store, never half-applied.

``syncing.sync`` runs one sync; ``planning`` decides what changes; ``history`` records runs
and serialises the syncs of a source. Nothing here knows which runtime calls it.
"""

from nebula.sync import history, planning, syncing, triggers
from nebula.sync.history import History, SyncRun
from nebula.sync.syncing import FileCache, SyncResult, sync
from nebula.sync.triggers import REQUESTED_AT, SyncTrigger

__all__ = [
    "REQUESTED_AT",
    "FileCache",
    "History",
    "SyncResult",
    "SyncRun",
    "SyncTrigger",
    "history",
    "planning",
    "sync",
    "syncing",
    "triggers",
]
