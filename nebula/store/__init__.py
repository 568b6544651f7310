"""Resource stores: one interface (:class:`ResourceStore`), PostgreSQL and Kubernetes behind it.

The sync writes desired objects through it and the reconcilers read specs and write status
through it, so neither knows which runtime they run in.
"""

from nebula.store import base, postgres
from nebula.store.base import (
    SOURCE_LABEL,
    AppliedState,
    Desired,
    Plan,
    ResourceStore,
    StoredObject,
    content_hash,
    source_id,
)
from nebula.store.postgres import PostgresStore

__all__ = [
    "SOURCE_LABEL",
    "AppliedState",
    "Desired",
    "Plan",
    "PostgresStore",
    "ResourceStore",
    "StoredObject",
    "base",
    "content_hash",
    "postgres",
    "source_id",
]
