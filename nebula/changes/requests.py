"""Change requests as PostgreSQL keeps them: the record, its states, and atomic moves between them.

Called by :mod:`nebula.changes.service` (which does the git work) and read by the web UI, the
CLI and the bots. A change moves only through :meth:`ChangeStore.move`, which names the states
it may leave, so two approvers racing can never both move it; every move is announced on the
``nebula_changes`` channel. Nothing here touches git.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import datetime
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import psycopg
import psycopg.rows
import psycopg.types.json

from nebula import db, errors

__all__ = ["CHANNEL", "LIVE", "ChangeRequest", "ChangeStore", "Origin", "State"]

CHANNEL = "nebula_changes"
"""The LISTEN/NOTIFY channel on which every move of a change is announced (payload: its id)."""

State = Literal["open", "approved", "merged", "applied", "rejected", "conflict"]
Origin = Literal["discord", "web", "cli", "pipeline", "twitch"]
LIVE: tuple[State, ...] = ("open", "approved", "conflict")
"""States of a change that still waits for someone: a repeated request returns it."""

_COLUMNS = (
    "id, title, intent, requester, origin, source, target_branch, branch, file, base_revision,"
    " head_revision, merge_revision, diff, state, conflict_files, decided_by, reason,"
    " idempotency_key, reply_to, created_at, updated_at, overrides"
)


@dataclasses.dataclass(frozen=True)
class ChangeRequest:
    """One proposed change: what it does, who asked, where it stands."""

    id: int
    title: str
    intent: dict[str, Any]
    requester: str
    origin: str
    source: str
    target_branch: str
    branch: str
    file: str
    base_revision: str
    head_revision: str
    merge_revision: str | None
    diff: str
    state: State
    conflict_files: list[str]
    decided_by: str | None
    reason: str | None
    idempotency_key: str
    reply_to: str | None
    """Where a bot reports the change's moves (``discord:<guild>/<channel>``); None otherwise."""
    created_at: datetime.datetime
    updated_at: datetime.datetime
    overrides: list[str] = dataclasses.field(default_factory=list)
    """Lines of the target branch this change replaces that the branch itself had changed since
    the change was made (found by a rebase): approving undoes those newer edits."""

    @property
    def summary(self) -> str:
        """The diff in one line: ``models.yaml: +1 -0``."""
        lines = self.diff.splitlines()
        added = sum(1 for line in lines if line.startswith("+") and not line.startswith("+++"))
        removed = sum(1 for line in lines if line.startswith("-") and not line.startswith("---"))
        return f"{self.file}: +{added} -{removed}"


class ChangeStore:
    """The ``change_requests`` table of the database at ``conninfo``."""

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo

    @property
    def conninfo(self) -> str:
        """The database the changes are kept in (the audit log is there too)."""
        return self._conninfo

    def _connect(self) -> contextlib.AbstractContextManager[psycopg.Connection[Any]]:
        return db.connect(self._conninfo)

    def next_id(self) -> int:
        """A new change's number, before its row exists (the branch is named after it)."""
        with self._connect() as conn:
            row = conn.execute("SELECT nextval('change_requests_id_seq')").fetchone()
        assert row is not None  # nextval returns one row
        return int(row[0])

    def insert(self, change: ChangeRequest) -> ChangeRequest:
        """Keeps a new change; returns the live change with the same key if one won the race."""
        values = dataclasses.asdict(change)
        del values["created_at"], values["updated_at"]
        values["intent"] = psycopg.types.json.Jsonb(values["intent"])
        values["conflict_files"] = psycopg.types.json.Jsonb(values["conflict_files"])
        values["overrides"] = psycopg.types.json.Jsonb(values["overrides"])
        names = ", ".join(values)
        placeholders = ", ".join(f"%({name})s" for name in values)
        with self._connect() as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cursor:
            cursor.execute(
                f"INSERT INTO change_requests ({names}) VALUES ({placeholders})"
                f" ON CONFLICT (idempotency_key) WHERE state IN ('open', 'approved', 'conflict')"
                f" DO NOTHING RETURNING {_COLUMNS}",
                values,
            )
            row = cursor.fetchone()
        if row is not None:
            return _change(row)
        existing = self.live(change.idempotency_key)
        assert existing is not None  # the conflict was with a live change of that key
        return existing

    def live(self, key: str) -> ChangeRequest | None:
        """The change of a request that still waits (open, approved or in conflict), if any."""
        return self._one("idempotency_key = %s AND state = ANY(%s)", (key, list(LIVE)))

    def get(self, change: int) -> ChangeRequest:
        """One change; raises ResourceNotFound when there is none with that number."""
        found = self._one("id = %s", (change,))
        if found is None:
            raise errors.ResourceNotFound(f"there is no change #{change}")
        return found

    def list(
        self, *, states: Sequence[State] | None = None, source: str | None = None, limit: int = 100
    ) -> list[ChangeRequest]:
        """Changes, newest first, in the given states and of the given source."""
        where: list[str] = ["TRUE"]
        params: list[object] = []
        if states:
            where.append("state = ANY(%s)")
            params.append(list(states))
        if source:
            where.append("source = %s")
            params.append(source)
        return self._many(" AND ".join(where), (*params, limit), tail=" ORDER BY id DESC LIMIT %s")

    def opened_since(self, requester: str, since: datetime.datetime) -> int:
        """How many changes ``requester`` opened since then (a rate limit counts these)."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT count(*) FROM change_requests WHERE requester = %s AND created_at >= %s",
                (requester, since),
            ).fetchone()
        return int(row[0]) if row else 0

    def move(
        self, change: int, *, leaving: Sequence[State], to: State, **fields: Any
    ) -> ChangeRequest | None:
        """Moves a change to ``to`` if it is in one of ``leaving``; None when it was not.

        The check and the move are one statement: of two racing movers, one wins.
        """
        sets = ["state = %(to)s", "updated_at = now()"]
        values: dict[str, Any] = {"to": to, "id": change, "leaving": list(leaving)}
        for name, value in fields.items():
            sets.append(f"{name} = %({name})s")
            values[name] = psycopg.types.json.Jsonb(value) if isinstance(value, list) else value
        with self._connect() as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cursor:
            cursor.execute(
                f"UPDATE change_requests SET {', '.join(sets)}"
                f" WHERE id = %(id)s AND state = ANY(%(leaving)s) RETURNING {_COLUMNS}",
                values,
            )
            row = cursor.fetchone()
        return _change(row) if row else None

    def unannounced(
        self, *, reply_to: str, states: Sequence[State], since: datetime.datetime
    ) -> builtins.list[int]:
        """Changes asked for in a chat (``reply_to`` a prefix such as ``discord:``) that moved
        to one of ``states`` since ``since`` and were not told of in that state yet, oldest first.
        """
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT id FROM change_requests WHERE reply_to LIKE %s AND state = ANY(%s)"
                " AND announced_state IS DISTINCT FROM state AND updated_at >= %s"
                " ORDER BY updated_at, id",
                (f"{reply_to}%", builtins.list(states), since),
            ).fetchall()
        return [int(row[0]) for row in rows]

    def claim_announcement(self, change: int, state: State) -> bool:
        """Marks the change as told of in ``state``; False when someone already did (another
        bot process, or this one before a restart): only the one that claims it posts."""
        with self._connect() as conn:
            row = conn.execute(
                "UPDATE change_requests SET announced_state = %s"
                " WHERE id = %s AND state = %s AND announced_state IS DISTINCT FROM %s"
                " RETURNING id",
                (state, change, state, state),
            ).fetchone()
        return row is not None

    @contextlib.contextmanager
    def lock(self, change: int) -> Iterator[None]:
        """Holds the change's lock: its git work (merge, rebase) never runs twice at once."""
        with self._connect() as conn:
            conn.execute(
                "SELECT pg_advisory_lock(hashtextextended('nebula.change:' || %s, 0))", (change,)
            )
            try:
                yield
            finally:
                if not conn.broken:
                    conn.execute(
                        "SELECT pg_advisory_unlock(hashtextextended('nebula.change:' || %s, 0))",
                        (change,),
                    )

    def _one(self, where: str, params: tuple[Any, ...]) -> ChangeRequest | None:
        found = self._many(where, params, tail=" LIMIT 1")
        return found[0] if found else None

    def _many(
        self, where: str, params: tuple[Any, ...], *, tail: str
    ) -> builtins.list[ChangeRequest]:
        with self._connect() as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cursor:
            cursor.execute(f"SELECT {_COLUMNS} FROM change_requests WHERE {where}{tail}", params)
            return [_change(row) for row in cursor.fetchall()]


def _change(row: dict[str, Any]) -> ChangeRequest:
    return ChangeRequest(**row)
