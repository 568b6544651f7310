"""Heartbeats of node agents: what each machine reported, and when, kept in PostgreSQL.

Written by the node agent (in-process in ``nebula up``, or through the web API's
``POST /api/v1/agents/heartbeat`` for a remote machine such as the Windows VM); read by the
NebulaNode controller, which matches a heartbeat to a declared node by name or address. Each
write is announced on the ``nebula_heartbeats`` channel. Only the latest heartbeat of an agent
is kept: the history of a machine is not the desired state's business.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
import psycopg.types.json
import pydantic

from nebula import db
from nebula.resources import base
from nebula.resources.nebula_node import Hardware, NebulaNode

__all__ = ["CHANNEL", "Heartbeat", "HeartbeatStore", "match"]

CHANNEL = "nebula_heartbeats"
"""The LISTEN/NOTIFY channel on which every heartbeat is announced (payload: the node name)."""


class Heartbeat(base.Model):
    """One report of a node agent: who it is, what it found, how often it reports."""

    node: str = pydantic.Field(min_length=1, max_length=253)
    """The name the agent reports as; a NebulaNode of that name, or one with its address."""
    hostname: str = ""
    """The machine's own host name."""
    agent_version: str
    """The version of the agent that reported."""
    interval_seconds: float = pydantic.Field(gt=0, le=3600)
    """How often the agent reports; the node turns not Ready after three missed reports."""
    hardware: Hardware
    """What the agent detected."""
    problems: list[str] = pydantic.Field(default_factory=list)
    """Probes that failed, with why (a missing GPU is not a problem: it is a fact)."""
    received_at: datetime.datetime | None = None
    """When the server received it (the server's clock); set by the store."""


def match(node: NebulaNode, heartbeats: Iterable[Heartbeat]) -> Heartbeat | None:
    """The heartbeat that belongs to a declared node: by its name, else by one of its addresses.

    The freshest wins when several match (a machine renamed its agent).
    """
    name = node.metadata.name
    addresses = {a.address for a in node.spec.addresses}
    found = [
        beat
        for beat in heartbeats
        if beat.node == name
        or beat.hostname in addresses
        or addresses.intersection(beat.hardware.addresses)
    ]
    by_name = [beat for beat in found if beat.node == name]
    candidates = by_name or found
    return max(candidates, key=_received, default=None)


def _received(beat: Heartbeat) -> datetime.datetime:
    return beat.received_at or datetime.datetime.min.replace(tzinfo=datetime.UTC)


class HeartbeatStore:
    """The heartbeats table of the database at ``conninfo``."""

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo

    def _connect(self) -> contextlib.AbstractContextManager[psycopg.Connection[Any]]:
        return db.connect(self._conninfo)

    def record(self, heartbeat: Heartbeat, *, received_at: datetime.datetime | None = None) -> None:
        """Keeps a heartbeat as its agent's latest; ``received_at`` defaults to the server's now."""
        hardware = heartbeat.hardware.model_dump(mode="json", by_alias=True, exclude_none=True)
        with self._connect() as conn:
            conn.execute(
                """
                INSERT INTO node_heartbeats
                    (node, hostname, agent_version, interval_seconds, hardware, problems,
                     received_at)
                VALUES (%s, %s, %s, %s, %s, %s, coalesce(%s, now()))
                ON CONFLICT (node) DO UPDATE SET
                    hostname = excluded.hostname, agent_version = excluded.agent_version,
                    interval_seconds = excluded.interval_seconds, hardware = excluded.hardware,
                    problems = excluded.problems, received_at = excluded.received_at
                """,
                (
                    heartbeat.node,
                    heartbeat.hostname,
                    heartbeat.agent_version,
                    heartbeat.interval_seconds,
                    psycopg.types.json.Jsonb(hardware),
                    psycopg.types.json.Jsonb(heartbeat.problems),
                    received_at,
                ),
            )

    def all(self) -> list[Heartbeat]:
        """The latest heartbeat of every agent, newest first."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT node, hostname, agent_version, interval_seconds, hardware, problems,"
                " received_at FROM node_heartbeats ORDER BY received_at DESC"
            ).fetchall()
        return [_heartbeat(row) for row in rows]

    def forget(self, nodes: Sequence[str]) -> None:
        """Deletes the heartbeats of agents that are gone for good."""
        with self._connect() as conn:
            conn.execute("DELETE FROM node_heartbeats WHERE node = ANY(%s)", (list(nodes),))


def _heartbeat(row: tuple[Any, ...]) -> Heartbeat:
    node, hostname, version, interval, hardware, problems, received = row
    return Heartbeat(
        node=node,
        hostname=hostname,
        agent_version=version,
        interval_seconds=interval,
        hardware=Hardware.model_validate(hardware),
        problems=problems,
        received_at=received,
    )
