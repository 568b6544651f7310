"""Reports of running chat bots: which BotConfig generation each one applied, kept in PostgreSQL.

Written by the bots (``nebula bot discord``, ``nebula bot twitch``) each time they apply a
BotConfig, connect or disconnect; read by the BotConfig controller, which turns them into the
BotConfig's status (Ready only when every configured bot runs the current generation). Each
write is announced on the ``nebula_bot_reports`` channel. Only the latest report of a bot is
kept. A report never holds a token or anything else read from a secret.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any, Literal

import pydantic

from nebula import db
from nebula.resources import ResourceKey, base

__all__ = ["CHANNEL", "BotName", "BotReport", "BotReportStore"]

CHANNEL = "nebula_bot_reports"
"""The LISTEN/NOTIFY channel on which every report is announced (payload: namespace/name)."""

BotName = Literal["discord", "twitch", "youtube", "kick"]
"""Which bot reports: the Discord bot, or the stream bot of one platform."""


class BotReport(base.Model):
    """What one running bot says about the BotConfig it runs with."""

    namespace: str = pydantic.Field(min_length=1, max_length=63)
    """The BotConfig's namespace."""
    name: str = pydantic.Field(min_length=1, max_length=253)
    """The BotConfig's name."""
    bot: BotName
    """Which bot reports."""
    applied_generation: int | None = pydantic.Field(default=None, ge=0)
    """The BotConfig's metadata.generation the bot applied; None before it applied any."""
    connected: bool
    """Whether the bot is connected to its platform (Discord's gateway, Twitch's EventSub)."""
    message: str = pydantic.Field(default="", max_length=4096)
    """What went wrong applying (a nickname Discord refused); empty when all is well."""
    received_at: datetime.datetime | None = None
    """When the database received it (its clock); set by the store."""

    @property
    def config(self) -> ResourceKey:
        """The BotConfig the report is about."""
        return ResourceKey("BotConfig", self.namespace, self.name)


class BotReportStore:
    """The ``bot_reports`` table of the database at ``conninfo``."""

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo

    def record(self, report: BotReport) -> None:
        """Keeps a report as that bot's latest for its BotConfig; safe to repeat."""
        with db.connect(self._conninfo) as conn:
            conn.execute(
                """
                INSERT INTO bot_reports
                    (namespace, name, bot, applied_generation, connected, message, received_at)
                VALUES (%s, %s, %s, %s, %s, %s, coalesce(%s, now()))
                ON CONFLICT (namespace, name, bot) DO UPDATE SET
                    applied_generation = excluded.applied_generation,
                    connected = excluded.connected, message = excluded.message,
                    received_at = excluded.received_at
                """,
                (
                    report.namespace,
                    report.name,
                    report.bot,
                    report.applied_generation,
                    report.connected,
                    report.message,
                    report.received_at,
                ),
            )

    def of(self, config: ResourceKey) -> list[BotReport]:
        """The latest report of every bot about one BotConfig, sorted by bot."""
        with db.connect(self._conninfo) as conn:
            rows = conn.execute(
                "SELECT namespace, name, bot, applied_generation, connected, message, received_at"
                " FROM bot_reports WHERE namespace = %s AND name = %s ORDER BY bot",
                (config.namespace or "", config.name),
            ).fetchall()
        return [_report(row) for row in rows]

    def forget(self, config: ResourceKey, bots: Sequence[BotName] | None = None) -> None:
        """Deletes the reports about a BotConfig (of these bots only, when given)."""
        where = "namespace = %s AND name = %s"
        params: list[Any] = [config.namespace or "", config.name]
        if bots is not None:
            where += " AND bot = ANY(%s)"
            params.append(list(bots))
        with db.connect(self._conninfo) as conn:
            conn.execute(f"DELETE FROM bot_reports WHERE {where}", params)


def _report(row: tuple[Any, ...]) -> BotReport:
    namespace, name, bot, generation, connected, message, received = row
    return BotReport(
        namespace=namespace,
        name=name,
        bot=bot,
        applied_generation=generation,
        connected=connected,
        message=message,
        received_at=received,
    )
