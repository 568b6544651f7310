"""The PostgreSQL resource store: the embedded runtime's stand-in for the Kubernetes API.

Used by ``nebula up``, ``nebula sync`` and the embedded reconcilers. A sync's plan is carried
out in one transaction, so it is applied entirely or not at all; generation grows when a spec
changes, as in Kubernetes; every change is announced on the ``nebula_resources`` channel
(LISTEN/NOTIFY) so nobody polls. Drift is marked by the database itself: a trigger flags an
object whose document changed without the sync writing it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Generator, Mapping, Sequence
from typing import Any

import psycopg
import psycopg.sql
import psycopg.types.json

from nebula import db, errors
from nebula.resources import ResourceKey
from nebula.store import base

__all__ = ["CHANNEL", "Notification", "PostgresStore", "Signal", "listen", "parse_notification"]

CHANNEL = "nebula_resources"
"""The LISTEN/NOTIFY channel on which every change of a resource is announced."""

_INVENTORY = "SELECT kind, namespace, name, applied_hash, drifted FROM resources WHERE source = %s"
# Fingerprints change whenever a row of theirs is committed as written or deleted. Every
# insert or update gives its row the writing transaction's id (xmin), new to the table, and a
# delete lowers the count; the sum of the ids moves with either. (Not max(updated_at): now() is
# when a transaction began, so one that began earlier and commits later hides behind the max.)
_FINGERPRINT = """
SELECT count(*), sum(xmin::text::bigint), bool_or(drifted) FROM resources WHERE source = %s
"""
_KIND_FINGERPRINT = "SELECT count(*), sum(xmin::text::bigint) FROM resources WHERE kind = %s"
_OWNERS = """
SELECT r.kind, r.namespace, r.name, r.source
FROM resources r JOIN unnest(%s::text[], %s::text[], %s::text[]) AS k(kind, namespace, name)
  ON (r.kind, r.namespace, r.name) = (k.kind, k.namespace, k.name)
WHERE r.source IS NOT NULL AND r.source <> %s
"""
_UPSERT = """
INSERT INTO resources (kind, namespace, name, document, source, applied_hash, applied_at)
VALUES (%(kind)s, %(namespace)s, %(name)s, %(document)s, %(source)s, %(hash)s, now())
ON CONFLICT (kind, namespace, name) DO UPDATE SET
    generation = resources.generation
        + (resources.document -> 'spec' IS DISTINCT FROM excluded.document -> 'spec')::int,
    document = excluded.document,
    source = excluded.source,
    applied_hash = excluded.applied_hash,
    applied_at = excluded.applied_at,
    drifted = false,
    updated_at = now()
"""
_PRUNE = "DELETE FROM resources WHERE kind = %s AND namespace = %s AND name = %s AND source = %s"
_SELECT = """
SELECT kind, namespace, name, document, status, generation, source, updated_at, xmin::text
FROM resources
"""

Row = tuple[Any, ...]


def _ns(key: ResourceKey) -> str:
    return key.namespace or ""


def _key(kind: str, namespace: str, name: str) -> ResourceKey:
    return ResourceKey(kind, namespace or None, name)


class PostgresStore:
    """Resources in PostgreSQL, shared by every process of the embedded runtime."""

    def __init__(self, conninfo: str, *, max_connections: int = 4) -> None:
        # Not autocommit: a block of _connection() is one transaction (a sync's commit).
        self._pool = db.Pool(conninfo, max_size=max_connections, autocommit=False)
        # The last inventory read per source, with the fingerprint it was read at: a sync of
        # an unchanged source reads four numbers instead of ten thousand rows.
        self._inventories: dict[
            str, tuple[tuple[Any, ...], dict[ResourceKey, base.AppliedState]]
        ] = {}
        # The last list read per kind, the same way: the web pages list every kind on every
        # view, and decoding a thousand documents costs more than the page's whole budget.
        self._lists: dict[str, tuple[tuple[Any, ...], list[base.StoredObject]]] = {}

    def open(self) -> PostgresStore:
        """Connects; raises :class:`~nebula.errors.StoreUnavailable` when PostgreSQL is down."""
        self._pool.open()
        return self

    def close(self) -> None:
        """Closes every connection; safe to call twice."""
        self._pool.close()

    def __enter__(self) -> PostgresStore:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connection(self) -> contextlib.AbstractContextManager[psycopg.Connection[Any]]:
        return self._pool.connection()

    def inventory(
        self, source: str, desired: Mapping[ResourceKey, base.Desired] | None = None
    ) -> dict[ResourceKey, base.AppliedState]:
        """Every object ``source`` applied, with its applied hash and whether it drifted.

        ``desired`` is not needed: the database compares what it wrote with what it holds.
        """
        with self._connection() as conn:
            fingerprint = conn.execute(_FINGERPRINT, (source,)).fetchone()
            known = self._inventories.get(source)
            if known is not None and known[0] == fingerprint:
                return known[1]
            rows = conn.execute(_INVENTORY, (source,)).fetchall()
        key, state = ResourceKey, base.AppliedState
        found = {
            key(kind, namespace or None, name): state(applied, drifted)
            for kind, namespace, name, applied, drifted in rows
        }
        self._inventories[source] = (tuple(fingerprint or ()), found)
        return found

    def commit(self, source: str, plan: base.Plan) -> None:
        """Carries out a plan in one transaction: all of it, or (on any error) nothing."""
        writes, prunes = plan.ordered()
        if not writes and not prunes:
            return
        with self._connection() as conn, conn.transaction():
            self._refuse_takeovers(conn, source, writes)
            with conn.cursor() as cursor:
                cursor.executemany(
                    _UPSERT,
                    [
                        {
                            "kind": d.key.kind,
                            "namespace": _ns(d.key),
                            "name": d.key.name,
                            "document": psycopg.types.json.Jsonb(d.document),
                            "source": source,
                            "hash": d.hash,
                        }
                        for d in writes
                    ],
                )
                cursor.executemany(
                    _PRUNE, [(key.kind, _ns(key), key.name, source) for key in prunes]
                )

    @staticmethod
    def _refuse_takeovers(conn: Any, source: str, writes: Sequence[base.Desired]) -> None:
        kinds = [d.key.kind for d in writes]
        namespaces = [_ns(d.key) for d in writes]
        names = [d.key.name for d in writes]
        owned = conn.execute(_OWNERS, (kinds, namespaces, names, source)).fetchall()
        if owned:
            listed = ", ".join(f"{_key(k, ns, n)} ({owner})" for k, ns, n, owner in owned[:5])
            raise errors.OwnershipConflict(
                f"{len(owned)} object(s) belong to another GitSource: {listed}"
            )

    def get(self, key: ResourceKey) -> base.StoredObject | None:
        """One object, or None when it does not exist."""
        where = " WHERE kind = %s AND namespace = %s AND name = %s"
        with self._connection() as conn:
            row = conn.execute(_SELECT + where, (key.kind, _ns(key), key.name)).fetchone()
        return _stored(row) if row else None

    def list(self, kind: str) -> list[base.StoredObject]:
        """Every object of a kind, sorted by namespace and name.

        While nothing of the kind changed, it answers with the objects it read last time (a
        count and a sum instead of every document): treat them as read-only.
        """
        with self._connection() as conn:
            fingerprint = tuple(conn.execute(_KIND_FINGERPRINT, (kind,)).fetchone() or ())
            known = self._lists.get(kind)
            if known is not None and known[0] == fingerprint:
                return list(known[1])
            rows = conn.execute(
                _SELECT + " WHERE kind = %s ORDER BY namespace, name", (kind,)
            ).fetchall()
        found = [_stored(row) for row in rows]
        self._lists[kind] = (fingerprint, found)
        return list(found)

    def write_status(self, key: ResourceKey, status: Mapping[str, Any]) -> None:
        """Replaces an object's status; raises ResourceNotFound when the object is gone."""
        with self._connection() as conn:
            cursor = conn.execute(
                "UPDATE resources SET status = %s, updated_at = now()"
                " WHERE kind = %s AND namespace = %s AND name = %s",
                (psycopg.types.json.Jsonb(dict(status)), key.kind, _ns(key), key.name),
            )
            if cursor.rowcount == 0:
                raise errors.ResourceNotFound(f"{key} does not exist")

    def put(self, document: Mapping[str, Any]) -> ResourceKey:
        """Creates or replaces one object by hand (not through a sync): it has no source.

        Used by ``nebula up`` for its bootstrap GitSource and by tests; a sync never prunes it.
        """
        metadata = document["metadata"]
        key = _key(document["kind"], metadata.get("namespace") or "", metadata["name"])
        with self._connection() as conn:
            conn.execute(
                """
                INSERT INTO resources (kind, namespace, name, document) VALUES (%s, %s, %s, %s)
                ON CONFLICT (kind, namespace, name) DO UPDATE SET
                    generation = resources.generation
                        + (resources.document -> 'spec' IS DISTINCT FROM
                           excluded.document -> 'spec')::int,
                    document = excluded.document, updated_at = now()
                """,
                (key.kind, _ns(key), key.name, psycopg.types.json.Jsonb(dict(document))),
            )
        return key


def _stored(row: Row) -> base.StoredObject:
    kind, namespace, name, document, status, generation, source, updated, version = row
    return base.StoredObject(
        key=_key(kind, namespace, name),
        document=document,
        status=status,
        generation=generation,
        source=source,
        updated=updated,
        version=version,
    )


@dataclasses.dataclass(frozen=True)
class Notification:
    """One change announced on :data:`CHANNEL`: which object, how, and whether its spec moved."""

    key: ResourceKey
    op: str  # insert | update | delete
    spec: bool  # False when only the status changed


def parse_notification(payload: str) -> Notification:
    """The change a NOTIFY payload describes."""
    data = json.loads(payload)
    key = _key(data["kind"], data["namespace"], data["name"])
    return Notification(key, data["op"], bool(data["spec"]))


@dataclasses.dataclass(frozen=True)
class Signal:
    """A message on another channel than :data:`CHANNEL` (e.g. a node agent's heartbeat)."""

    channel: str
    payload: str


def listen(
    conninfo: str, *, timeout: float = 1.0, channels: Sequence[str] = ()
) -> Generator[Notification | Signal | None, None, None]:
    """Yields each change as it is committed, or None every ``timeout`` seconds of silence.

    ``channels`` are listened to as well; their messages come as :class:`Signal`. Blocking;
    runs in its own connection (LISTEN needs one that does nothing else). The caller stops by
    closing the generator.
    """
    try:
        conn = psycopg.connect(conninfo, autocommit=True)
    # The server is down or refuses: the caller retries, as with any other store call.
    except psycopg.OperationalError as error:
        raise errors.StoreUnavailable(f"PostgreSQL did not answer: {error}") from None
    with conn:
        for channel in (CHANNEL, *channels):
            conn.execute(psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(channel)))
        while True:
            got = False
            for notify in conn.notifies(timeout=timeout):
                got = True
                if notify.channel == CHANNEL:
                    yield parse_notification(notify.payload)
                else:
                    yield Signal(notify.channel, notify.payload)
            if not got:
                yield None
