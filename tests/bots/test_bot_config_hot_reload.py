"""Hot reload: a BotConfig changed in Git reaches the running bots, and their reports make the
BotConfig's status show the new generation, Ready.

The embedded runtime syncs the GitSource and runs the BotConfig controller (woken by every bot
report); each bot runs a real :class:`~bots.reloading.Reloader` (LISTEN on the store). The
Discord bot's part is its real :class:`~bots.live.LiveConfig`; only the last step, calling
Discord with what it says differs, is the glue's, and is recorded here instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from bots import live, reloading
from controllers import bot_config, git_source, local
from nebula import bot_reports
from nebula.crds import generating, validating
from nebula.resources import conditions
from nebula.resources.bot_config import BotConfig, BotConfigStatus
from tests.bots.conftest import BOTS, GUILD, LAB_GUILD, SOURCE, Homelab
from tests.conftest import EmbeddedState

AVATAR = "https://cdn.example.com/nebula/avatar.png"
FIRST_FEATURES = frozenset(
    {"tickets", "welcome", "streamNotifications", "moderation", "music", "nowPlaying",
     "analytics", "starboard"}
)  # fmt: skip


async def _until(check: Callable[[], bool], *, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "gave up waiting"
        await asyncio.sleep(0.05)


def _status(homelab: Homelab) -> BotConfigStatus | None:
    stored = homelab.store.get(BOTS)
    return BotConfigStatus.model_validate(stored.status) if stored and stored.status else None


def _ready_at(homelab: Homelab, generation: int) -> bool:
    status = _status(homelab)
    return (
        status is not None
        and conditions.is_ready(status)
        and status.observed_generation == generation
    )


async def test_a_botconfig_changed_in_git_is_applied_live_and_reported_ready(
    homelab: Homelab, embedded_state: EmbeddedState
) -> None:
    reports = bot_reports.BotReportStore(homelab.conninfo)
    runtime = local.runtime(
        embedded_state(homelab.conninfo, homelab.store),
        only=(git_source.GitSourceKind, bot_config.BotConfigKind),
    )
    # The Discord bot: its live configuration; what it would send Discord is recorded.
    discord_live = live.LiveConfig()
    sent: list[live.Applying] = []

    async def apply_on_discord(config: BotConfig, generation: int | None) -> Sequence[str]:
        changes = discord_live.apply(config, generation)
        sent.append(changes)
        return changes.notes

    # The stream bot keeps the BotConfig it was handed (its templates), as StreamBot.apply.
    stream_configs: list[BotConfig] = []

    async def apply_on_twitch(config: BotConfig, generation: int | None) -> Sequence[str]:
        stream_configs.append(config)
        return []

    def reloader(bot: bot_reports.BotName, apply: reloading.Apply) -> reloading.Reloader:
        return reloading.Reloader(
            conninfo=homelab.conninfo, store=homelab.store, reports=reports, key=BOTS,
            bot=bot, apply=apply, connected=lambda: True, poll=0.1,
        )  # fmt: skip

    discord_bot = reloader("discord", apply_on_discord)
    twitch_bot = reloader("twitch", apply_on_twitch)
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(runtime.run(stop)),
        asyncio.create_task(discord_bot.watch(stop)),
        asyncio.create_task(twitch_bot.watch(stop)),
    ]
    try:
        await runtime.wait_ready()
        await discord_bot.watching.wait()
        await twitch_bot.watching.wait()
        await _until(lambda: _ready_at(homelab, 1))

        # At start the bot sets everything: Discord's current state is unknown.
        [first] = sent
        assert first.generation == 1
        assert first.nicknames == {GUILD: "Nebula", LAB_GUILD: "Nebula Dev"}
        assert first.avatars == {GUILD: AVATAR}
        assert first.presence_changed
        assert first.activity == live.Activity("watching", "the homelab")
        assert first.notes == (
            "Discord shows one presence per bot: Nebula Creators's is shown, not the one of "
            "Homelab Lab (testing)",
        )
        assert first.features[GUILD] == FIRST_FEATURES
        assert first.added == (GUILD, LAB_GUILD)

        # A new nickname and one more feature for the first guild, pushed to Git and synced.
        text = homelab.remote.read("manifests/bots.yaml")
        text = text.replace("nickname: Nebula\n", "nickname: Nebula HQ\n", 1)
        text = text.replace("leveling:\n            enabled: false", "leveling:\n"
                            "            enabled: true", 1)  # fmt: skip
        homelab.remote.write("manifests/bots.yaml", text)
        homelab.remote.commit("The bot is Nebula HQ, and members level up")
        runtime.request(SOURCE)

        await _until(lambda: len(sent) == 2 and len(stream_configs) == 2)
        await _until(lambda: _ready_at(homelab, 2))
    finally:
        stop.set()
        await asyncio.gather(*tasks)

    # Only what changed is applied: one nickname, one guild's features; no avatar, no presence.
    second = sent[1]
    assert second.generation == 2
    assert second.nicknames == {GUILD: "Nebula HQ"}
    assert second.avatars == {}
    assert not second.presence_changed
    assert second.features == {GUILD: FIRST_FEATURES | {"leveling"}}
    assert second.added == () and second.left == ()
    assert discord_live.enabled(GUILD, "leveling") and not discord_live.enabled(
        LAB_GUILD, "leveling"
    )
    settings = discord_live.guild(GUILD)
    assert settings is not None and settings.nickname == "Nebula HQ"
    assert stream_configs[1].metadata.generation == 2

    # Both bots report the new generation, so the BotConfig is Ready at it.
    status = _status(homelab)
    assert status is not None
    assert [(b.bot, b.applied_generation, b.connected) for b in status.bots] == [
        ("discord", 2, True),
        ("twitch", 2, True),
    ]
    assert (status.applied_generation, status.guilds, status.observed_generation) == (2, 2, 2)
    ready = conditions.find(status.conditions, conditions.READY)
    assert ready is not None and (ready.status, ready.reason) == ("True", bot_config.APPLIED)
    assert ready.message == (
        "discord and twitch run generation 2 (kick, youtube: no Nebula bot watches them yet)"
    )
    assert conditions.find(status.conditions, conditions.RECONCILING) is None
    # The status is what a real API server would keep (the CRD's schema).
    stored = homelab.store.get(BOTS)
    assert stored is not None
    whole = {**stored.document, "status": stored.status}
    assert validating.errors(generating.crd(BotConfig), whole) == []
