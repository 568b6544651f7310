"""The ``/nebula`` command tree as discord.py would register it with Discord.

The client is built for real but never connected; the tree's payload (``to_dict``, what
``tree.sync`` sends) is checked, so names, options, choices, autocomplete and permissions are
those Discord would receive.
"""

from __future__ import annotations

from typing import Any

import pytest
from discord import app_commands

from bots import commands, discord_bot, live

STRING, INTEGER, SUBCOMMAND, GROUP = 3, 4, 1, 2  # Discord's option types


@pytest.fixture
def payload(handlers: commands.Handlers) -> dict[str, Any]:
    """What ``tree.sync`` would send for ``/nebula``."""
    bot = discord_bot.NebulaBot(handlers=handlers, live_config=live.LiveConfig())
    [nebula] = bot.tree.get_commands()
    assert isinstance(nebula, app_commands.Group)
    found: dict[str, Any] = nebula.to_dict(bot.tree)
    return found


def _options(payload: dict[str, Any], *path: str) -> list[tuple[str, int, bool, bool]]:
    """(name, type, required, autocomplete) of a command's options."""
    node = payload
    for name in path:
        node = next(o for o in node["options"] if o["name"] == name)
    return [
        (o["name"], o["type"], o.get("required", False), o.get("autocomplete", False))
        for o in node["options"]
    ]


def test_nebula_is_one_guild_only_command_open_to_every_member(payload: dict[str, Any]) -> None:
    assert payload["name"] == "nebula"
    assert payload["dm_permission"] is False
    assert payload["contexts"] == [0]  # guilds only: no DMs, no group DMs
    # Who may do what is the BotConfig's permissions, per guild and role.
    assert payload["default_member_permissions"] is None
    assert payload["nsfw"] is False


def test_every_command_is_there_with_its_kind(payload: dict[str, Any]) -> None:
    shown = {o["name"]: o["type"] for o in payload["options"]}
    assert shown == {
        "status": SUBCOMMAND,
        "nodes": SUBCOMMAND,
        "feature": SUBCOMMAND,
        "changes": SUBCOMMAND,
        "model": GROUP,
        "service": GROUP,
    }
    assert [o["name"] for o in _find(payload, "model")["options"]] == ["add", "remove"]
    assert [o["name"] for o in _find(payload, "service")["options"]] == ["image", "scale"]
    assert all(o["description"] for o in _walk(payload))


def test_reading_commands_take_no_options(payload: dict[str, Any]) -> None:
    for name in ("status", "nodes", "changes"):
        assert _options(payload, name) == []


def test_mutating_commands_take_required_options_with_autocomplete_of_real_names(
    payload: dict[str, Any],
) -> None:
    for verb in ("add", "remove"):
        assert _options(payload, "model", verb) == [
            ("model", STRING, True, True),
            ("node", STRING, True, True),
        ]
    assert _options(payload, "service", "image") == [
        ("service", STRING, True, True),
        ("image", STRING, True, False),
    ]
    assert _options(payload, "service", "scale") == [
        ("service", STRING, True, True),
        ("replicas", INTEGER, True, False),
    ]
    replicas = _find(payload, "service", "scale", "replicas")
    assert (replicas["min_value"], replicas["max_value"]) == (0, 50)
    assert _options(payload, "feature") == [
        ("name", STRING, True, True),
        ("state", STRING, True, False),
    ]
    assert _find(payload, "feature", "state")["choices"] == [
        {"name": "on", "value": "on"},
        {"name": "off", "value": "off"},
    ]


def _find(payload: dict[str, Any], *path: str) -> dict[str, Any]:
    node = payload
    for name in path:
        node = next(o for o in node["options"] if o["name"] == name)
    return node


def _walk(node: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for option in node.get("options", []):
        found.append(option)
        found += _walk(option)
    return found
