"""The audit log: who did what to which subject, and when, in PostgreSQL (``audit_log``).

Called wherever a person or a bot acts: logins, change requests (opened, approved, merged,
rejected), bot commands. Rows are only ever added. Never records a secret: callers pass
names and ids in ``detail``, not tokens or passwords.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any

import psycopg
import psycopg.types.json

from nebula import db

__all__ = ["Entry", "entries", "record"]


@dataclasses.dataclass(frozen=True)
class Entry:
    """One row of the audit log."""

    at: datetime.datetime
    actor: str
    action: str
    subject: str
    detail: Mapping[str, Any]


def record(
    conninfo: str,
    *,
    actor: str,
    action: str,
    subject: str,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Adds one entry (``actor`` did ``action`` to ``subject``), dated by the database."""
    with db.connect(conninfo) as conn:
        conn.execute(
            "INSERT INTO audit_log (actor, action, subject, detail) VALUES (%s, %s, %s, %s)",
            (actor, action, subject, psycopg.types.json.Jsonb(dict(detail or {}))),
        )


def entries(conninfo: str, *, subject: str | None = None, limit: int = 100) -> list[Entry]:
    """The newest entries first, of one subject (``change/42``) or of all."""
    where, params = ("WHERE subject = %s", (subject, limit)) if subject else ("", (limit,))
    with db.connect(conninfo) as conn:
        rows = conn.execute(
            f"SELECT at, actor, action, subject, detail FROM audit_log {where}"
            " ORDER BY at DESC, id DESC LIMIT %s",
            params,
        ).fetchall()
    return [Entry(*row) for row in rows]
