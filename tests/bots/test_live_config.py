"""The Discord bot's live configuration: what it must change on Discord for a new BotConfig.

Only what differs is applied: a nickname that changed, an avatar whose URL changed (uploads
are slow and rate-limited), the presence when it changed; the example BotConfig is the start.
"""

from __future__ import annotations

import pathlib
from typing import Any

import ruamel.yaml

from bots import live
from nebula.resources.bot_config import BotConfig

EXAMPLE = pathlib.Path(__file__).parent.parent.parent / "manifests" / "bots.yaml"
CREATORS, LAB = "912345678901234567", "987654321098765432"


def _example() -> dict[str, Any]:
    document: dict[str, Any] = ruamel.yaml.YAML(typ="safe").load(EXAMPLE.read_text())
    return document


def _config(document: dict[str, Any]) -> BotConfig:
    return BotConfig.model_validate(document)


def test_an_unchanged_botconfig_changes_nothing_on_discord() -> None:
    running = live.LiveConfig()
    running.apply(_config(_example()), 1)

    again = running.apply(_config(_example()), 1)

    assert again.empty and again.features == {} and again.added == () and again.left == ()


def test_an_avatar_is_uploaded_only_when_its_url_changes_and_removed_when_unset() -> None:
    running = live.LiveConfig()
    first = running.apply(_config(_example()), 1)
    document = _example()
    identity = document["spec"]["discord"]["guilds"][0]["identity"]
    identity["avatarUrl"] = "https://cdn.example.com/nebula/avatar-winter.png"
    changed = running.apply(_config(document), 2)
    del identity["avatarUrl"]
    removed = running.apply(_config(document), 3)

    # The lab server never had one: nothing is uploaded there, not even at start.
    assert first.avatars == {CREATORS: "https://cdn.example.com/nebula/avatar.png"}
    assert changed.avatars == {CREATORS: "https://cdn.example.com/nebula/avatar-winter.png"}
    assert changed.nicknames == {} and not changed.presence_changed
    assert removed.avatars == {CREATORS: None}


def test_a_new_presence_and_a_guild_left_are_applied() -> None:
    running = live.LiveConfig()
    running.apply(_config(_example()), 1)
    document = _example()
    guilds = document["spec"]["discord"]["guilds"]
    guilds[0]["identity"]["presence"] = {"type": "listening", "text": "the fans spin"}
    del guilds[1]

    changes = running.apply(_config(document), 2)

    assert changes.presence_changed
    assert changes.activity == live.Activity("listening", "the fans spin")
    assert changes.notes == ()  # one guild, one presence
    assert changes.left == (LAB,)
    assert running.guild(LAB) is None and not running.enabled(LAB, "moderation")


def test_a_guild_forgotten_after_a_refusal_is_set_again_at_the_next_apply() -> None:
    running = live.LiveConfig()
    running.apply(_config(_example()), 1)
    running.forget(LAB)  # Discord refused the nickname there

    changes = running.apply(_config(_example()), 1)

    assert changes.nicknames == {LAB: "Nebula Dev"}
    assert changes.added == (LAB,)
    assert changes.features == {LAB: frozenset({"moderation", "analytics"})}
