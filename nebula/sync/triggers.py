"""Asking for a sync now, instead of at the next interval (a webhook, ``nebula sync``).

The runtime that runs the syncs implements :class:`SyncTrigger`: the embedded runtime wakes its
GitSource loop in-process; on k3s the request is the annotation :data:`REQUESTED_AT` on the
GitSource (as Flux does), which the operator notices as a change of the object.
"""

from __future__ import annotations

from typing import Protocol

from nebula.resources import ResourceKey

__all__ = ["REQUESTED_AT", "SyncTrigger"]

REQUESTED_AT = "nebula.dev/requested-at"
"""Annotation whose new value asks the operator to sync a GitSource now."""


class SyncTrigger(Protocol):
    """Requests an immediate sync of a GitSource; returns without waiting for it."""

    def request(self, source: ResourceKey) -> None:
        """Asks for a sync of ``source`` as soon as possible; repeated asks may merge."""
        ...
