"""The Discord bot as ``nebula bot discord`` runs it (:func:`bots.discord_bot.serve`), against a
local Discord (:mod:`tests.bots.discord_server`) instead of discord.com.

discord.py's real client logs in over HTTPS, opens the gateway, IDENTIFYs and receives READY
and the example homelab's two guilds; the real :class:`~bots.reloading.Reloader` applies the
example BotConfig from PostgreSQL, and the real notifications listener posts the moves of a
change. Nothing of discord.py is patched: the bot reaches the fake only through the
``connector=`` that ``discord.Client`` takes (:func:`tests.bots.conftest.discord_bot_on`). The
one edit to the example is its avatarUrl, which points at the fake's CDN so the bot's avatar
download stays local (the ``lab`` fixture).
"""

from __future__ import annotations

import asyncio
import base64

import discord
import psycopg

from nebula import bot_reports
from nebula.changes import Person, requests
from tests.bots.conftest import (
    ADA,
    APPLICATION,
    BOTS,
    CHANNEL,
    GUILD,
    LAB_GUILD,
    TOKEN,
    UI_URL,
    Homelab,
    serving,
)
from tests.bots.discord_server import AVATAR_PNG, FakeDiscord, until

BEA = Person("Bea Approver", "bea@homelab.example")


def _listening_for_changes(conninfo: str) -> bool:
    """Whether some session of the database LISTENs on the change channel (the bot's)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        found = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND state = 'idle' AND query = %s",
            (f'LISTEN "{requests.CHANNEL}"',),
        ).fetchone()
    return found is not None and found[0] > 0


async def test_the_bot_logs_in_and_applies_the_example_botconfig_once(
    lab: Homelab, fake: FakeDiscord
) -> None:
    async with serving(lab, fake) as (bot, reloader):
        # Logged in with the token, one gateway session for the guilds intent only.
        assert [c.path for c in fake.calls[:2]] == ["/users/@me", "/oauth2/applications/@me"]
        assert len(fake.connections) == 1
        assert "compress=zlib-stream" in fake.connections[0]
        [identify] = fake.identified
        assert identify["token"] == TOKEN
        assert identify["intents"] == discord.Intents(guilds=True).value
        assert bot.connected()
        assert {g.id for g in bot.guilds} == {int(GUILD), int(LAB_GUILD)}

        # The /nebula tree is registered in each guild of the BotConfig.
        for guild in (GUILD, LAB_GUILD):
            [synced] = fake.sent("PUT", f"/applications/{APPLICATION}/guilds/{guild}/commands")
            assert [command["name"] for command in synced.body] == ["nebula"]
        assert fake.sent("PUT", f"/applications/{APPLICATION}/commands") == []

        # Each guild's nickname, the first guild's avatar (downloaded from its URL, uploaded).
        creators = [c.body for c in fake.sent("PATCH", f"/guilds/{GUILD}/members/@me")]
        png = base64.b64encode(AVATAR_PNG).decode()
        assert creators == [{"nick": "Nebula"}, {"avatar": f"data:image/png;base64,{png}"}]
        assert fake.cdn_hits == 1
        assert [c.body for c in fake.sent("PATCH", f"/guilds/{LAB_GUILD}/members/@me")] == [
            {"nick": "Nebula Dev"}
        ]

        # One presence for the bot: the first guild's (watching the homelab).
        await until(lambda: len(fake.presences()) == 1, what="the presence update")
        [presence] = fake.presences()
        [activity] = presence["activities"]
        assert (activity["type"], activity["name"]) == (3, "the homelab")  # 3: watching
        assert presence["status"] == "online" and presence["afk"] is False

        # The reloader reported the generation, with the one thing Discord cannot show.
        config = lab.bot_config()
        assert config is not None and reloader.generation == config.metadata.generation
        [report] = bot_reports.BotReportStore(lab.conninfo).of(BOTS)
        assert report.applied_generation == config.metadata.generation and report.connected
        assert report.message.startswith("Discord shows one presence per bot")

        # The same BotConfig again (as after joining a guild): Discord hears nothing new.
        before = fake.activity()
        assert await reloader.reload(force=True)
        problems = await bot.apply(config, config.metadata.generation)
        assert problems == [report.message]
        await asyncio.sleep(0.3)  # what would have been sent has arrived by now
        assert fake.activity() == before, fake.calls[-3:]
        assert fake.cdn_hits == 1


async def test_the_moves_of_a_change_are_posted_in_the_channel_it_came_from(
    lab: Homelab, fake: FakeDiscord
) -> None:
    async with serving(lab, fake):
        await until(lambda: _listening_for_changes(lab.conninfo), what="the notices' LISTEN")
        posted_before = len(fake.sent("POST", r"/channels/\d+/messages"))
        assert posted_before == 0

        # Ada asks from the channel; Bea approves (merged at once); the sync applies it.
        reply = await asyncio.to_thread(
            lab.handlers.model_add, ADA, model="llama3-1-8b", node="windows-vm"
        )
        assert reply.change is not None
        change = reply.change
        await asyncio.to_thread(lab.changes.approve, change, approver=BEA)

        def said(phrase: str) -> bool:
            return any(phrase in m["content"] for m in fake.messages(CHANNEL))

        await until(lambda: said("is merged"), what="the merged notice")
        await asyncio.to_thread(lab.sync)
        await until(lambda: said("is applied"), what="the applied notice")
        assert lab.changes.store.get(change).state == "applied"

    # Every post went to the channel the command was run in, each move once, in order.
    posts = fake.sent("POST", r"/channels/\d+/messages")
    assert {c.path for c in posts} == {f"/channels/{CHANNEL}/messages"}
    what = f"<@{ADA.user_id}> change #{change} (Add model llama3-1-8b to node windows-vm)"
    link = f"\n{UI_URL}/changes/{change}"
    approved = f"{what} was approved by Bea Approver; merging it now.{link}"
    merged = f"{what} is merged; the sync applies it next.{link}"
    applied = f"{what} is applied: the homelab runs it now.{link}"
    contents = [m["content"] for m in fake.messages(CHANNEL)]
    assert contents in ([approved, merged, applied], [merged, applied]), contents
    # The requester is pinged: the post allows user mentions.
    for message in fake.messages(CHANNEL):
        assert "users" in message["allowed_mentions"]["parse"]
        assert "embeds" not in message or not message["embeds"]


async def test_commands_refused_in_a_guild_are_registered_by_the_next_apply(
    lab: Homelab, fake: FakeDiscord
) -> None:
    fake.refused_commands.add(GUILD)  # invited without the applications.commands scope
    route = f"/applications/{APPLICATION}/guilds/{GUILD}/commands"
    async with serving(lab, fake) as (_bot, reloader):
        assert len(fake.sent("PUT", route)) == 1
        [report] = bot_reports.BotReportStore(lab.conninfo).of(BOTS)
        assert f"commands not registered in guild {GUILD}: Missing Access" in report.message

        # The scope is granted; the next apply (a BotConfig change, a rejoin) tries again.
        fake.refused_commands.clear()
        assert await reloader.reload(force=True)
        assert len(fake.sent("PUT", route)) == 2
