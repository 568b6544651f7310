"""The BotConfig reconciler: the bots a BotConfig configures, against what each one reported.

Run by both runtimes through :class:`BotConfigKind` (listed in ``kinds.py``; woken by every bot
report), with the BotConfig and the latest reports of its bots (``nebula.bot_reports``). It
reads top to bottom: which bots the spec configures → what each reported → who lags behind the
current generation → Ready. It writes nothing and talks to no chat platform: the bots apply
the configuration themselves and report the generation they run.

A bot is configured when the spec has a section Nebula runs a bot for: ``discord`` (``nebula
bot discord``) and a ``twitch`` stream platform (``nebula bot twitch``). YouTube and Kick
platforms are valid in the spec, but no Nebula bot watches them yet: they are named in the
Ready message and not waited for, so a BotConfig listing them can still become Ready.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Literal

from controllers import outcomes, reconciling
from nebula import bot_reports
from nebula.bot_reports import BotName, BotReport
from nebula.resources import base, conditions
from nebula.resources.bot_config import BotConfig, BotConfigSpec, BotConfigStatus, BotStatus

__all__ = [
    "APPLIED",
    "APPLYING",
    "DISCONNECTED",
    "NOT_REPORTED",
    "BotConfigKind",
    "configured_bots",
    "reconcile",
    "unwatched_platforms",
]

# Ready reasons and the message of a bot that never reported, shared by status, logs and tests.
APPLIED = "Applied"
APPLYING = "Applying"
DISCONNECTED = "Disconnected"
NOT_REPORTED = "has not reported: start it with `nebula bot {bot}`"
NEEDS_SECRET = " (it reads its credentials from secret {name})"
"""What NOT_REPORTED adds when the spec names the secret the bot reads its token from."""


Result = reconciling.Result[BotConfigStatus]


def configured_bots(spec: BotConfigSpec) -> list[BotName]:
    """The bots that must run this configuration, in a fixed order (discord, then twitch)."""
    bots: list[BotName] = []
    if spec.discord is not None:
        bots.append("discord")
    if spec.stream is not None and any(p.platform == "twitch" for p in spec.stream.platforms):
        bots.append("twitch")
    return bots


def unwatched_platforms(spec: BotConfigSpec) -> list[str]:
    """Stream platforms of the spec that no Nebula bot watches yet (youtube, kick), sorted."""
    if spec.stream is None:
        return []
    return sorted({p.platform for p in spec.stream.platforms if p.platform != "twitch"})


def reconcile(
    config: BotConfig,
    *,
    reports: Sequence[BotReport],
    now: datetime.datetime,
    previous: BotConfigStatus | None,
) -> Result:
    """The BotConfig's status from its bots' latest reports (only a report or a change of the
    BotConfig makes it look again); see the module docstring."""
    status = previous or BotConfigStatus()
    generation = config.metadata.generation
    spec = config.spec

    # What each configured bot says it runs; a bot that never reported runs nothing yet.
    latest = {report.bot: report for report in reports}
    bots = [_bot_status(bot, latest.get(bot), spec) for bot in configured_bots(spec)]
    applied = [bot.applied_generation for bot in bots if bot.applied_generation is not None]
    oldest = min(applied) if applied and len(applied) == len(bots) else None

    # Who lags: a bot on an older generation (or none) first; then one that lost its platform.
    behind = [bot for bot in bots if not _current(bot, generation)]
    offline = [bot for bot in bots if _current(bot, generation) and not bot.connected]
    unwatched = unwatched_platforms(spec)
    note = f" ({', '.join(unwatched)}: no Nebula bot watches them yet)" if unwatched else ""
    ready: tuple[conditions.ConditionStatus, str, str]
    if behind:
        ready = ("False", APPLYING, "waiting for " + "; ".join(map(_lag, behind)) + note)
    elif offline:
        names = ", ".join(bot.bot for bot in offline)
        ready = ("False", DISCONNECTED, f"{names} applied generation {generation} but is offline")
    else:
        ready = ("True", APPLIED, _running(bots, generation) + note)

    # One finishing step: conditions, counts, and the generation observed once every bot runs it.
    found = conditions.set_condition(
        list(status.conditions), type_=conditions.READY, status=ready[0], reason=ready[1],
        message=ready[2], now=now, generation=generation,
    )  # fmt: skip
    # Reconciling while a bot still has to apply this generation; an offline bot is waited for.
    if ready[1] != APPLYING:
        found = [c for c in found if c.type != conditions.RECONCILING]
    else:
        found = conditions.set_condition(
            found, type_=conditions.RECONCILING, status="True", reason=ready[1],
            message=ready[2], now=now, generation=generation,
        )  # fmt: skip
    update: dict[str, object] = {
        "conditions": found,
        "bots": bots,
        "applied_generation": oldest,
        "guilds": len(spec.discord.guilds) if spec.discord else 0,
    }
    if ready[0] == "True" and generation is not None:
        update["observed_generation"] = generation
    new = status.model_copy(update=update)
    event = _event(previous, ready)
    return Result(new, None, (event,) if event else ())


def _bot_status(bot: BotName, report: BotReport | None, spec: BotConfigSpec) -> BotStatus:
    if report is None:
        ref = _token_ref(bot, spec)
        needs = NEEDS_SECRET.format(name=ref.name) if ref else ""
        return BotStatus(bot=bot, message=NOT_REPORTED.format(bot=bot) + needs)
    return BotStatus(
        bot=bot,
        applied_generation=report.applied_generation,
        connected=report.connected,
        message=report.message,
    )


def _token_ref(bot: BotName, spec: BotConfigSpec) -> base.SecretKeyRef | None:
    """The secret key the bot reads its token from, as the spec names it."""
    if bot == "discord" and spec.discord is not None:
        return spec.discord.token_secret_ref
    platforms = spec.stream.platforms if spec.stream is not None else []
    return next((p.credentials_secret_ref for p in platforms if p.platform == "twitch"), None)


def _current(bot: BotStatus, generation: int | None) -> bool:
    # A store that keeps no generations (an emulator): any applied configuration is current.
    if generation is None:
        return bot.applied_generation is not None or bot.connected
    return bot.applied_generation == generation


def _lag(bot: BotStatus) -> str:
    if bot.applied_generation is None:
        return f"{bot.bot} ({bot.message or 'has applied nothing yet'})"
    return f"{bot.bot} (runs generation {bot.applied_generation})"


def _running(bots: Sequence[BotStatus], generation: int | None) -> str:
    if not bots:
        return "no bot to run"
    names = " and ".join(bot.bot for bot in bots)
    verb = "runs" if len(bots) == 1 else "run"
    return f"{names} {verb} generation {generation}" if generation is not None else f"{names} run"


def _event(previous: BotConfigStatus | None, ready: tuple[str, str, str]) -> outcomes.Event | None:
    """An event when Ready's verdict or reason changed; a look that changes nothing is silent."""
    before = conditions.find(previous.conditions, conditions.READY) if previous else None
    if before is not None and (before.status, before.reason) == ready[:2]:
        return None
    kind: Literal["Normal", "Warning"] = "Warning" if ready[1] == DISCONNECTED else "Normal"
    return outcomes.Event(kind, ready[1], ready[2])


class BotConfigKind(reconciling.Kind[BotConfig, BotConfigStatus, list[BotReport]]):
    """BotConfigs as the runtimes run them: compared with their bots' latest reports."""

    model = BotConfig
    status_model = BotConfigStatus
    wakes_on = (bot_reports.CHANNEL,)

    def observe(self, resource: BotConfig) -> list[BotReport]:
        """The latest report of each bot running this BotConfig."""
        return list(self.services.reports.of(resource.key))

    def reconcile(
        self,
        resource: BotConfig,
        observed: list[BotReport] | None,
        *,
        previous: BotConfigStatus | None,
        now: datetime.datetime,
        attempt: int,
        progress: reconciling.Progress,
    ) -> Result:
        """See :func:`reconcile`."""
        return reconcile(resource, reports=observed or [], now=now, previous=previous)
