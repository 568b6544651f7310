"""Change requests: proposed changes as commits on branches, merged only once approved.

``intents`` is the vocabulary (what may be proposed), ``requests`` the record in PostgreSQL,
``service`` the git work (open, approve, reject, rebase, follow the sync).
"""

from nebula.changes import intents, requests, service
from nebula.changes.intents import INTENTS, AnyIntent, Intent
from nebula.changes.requests import ChangeRequest, ChangeStore
from nebula.changes.service import ChangeService, MergeCheck, Person

__all__ = [
    "INTENTS",
    "AnyIntent",
    "ChangeRequest",
    "ChangeService",
    "ChangeStore",
    "Intent",
    "MergeCheck",
    "Person",
    "intents",
    "requests",
    "service",
]
