"""``nebula bot discord|twitch`` read their tokens from secrets only, and say what is missing.

They connect to Discord and Twitch for real, which no test does; what runs before connecting
(finding the BotConfig, reading the secrets it names) is checked here through the real CLI.
"""

from __future__ import annotations

import os
import pathlib

import pytest

from nebula import cli
from tests.bots.conftest import Homelab


def _run(homelab: Homelab, tmp_path: pathlib.Path, *args: str) -> int:
    return cli.main(
        ["bot", *args, "--database-url", homelab.conninfo, "--state-dir", str(tmp_path / "st")]
    )


def test_the_discord_bot_names_the_variable_its_token_is_read_from(
    homelab: Homelab, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "NEBULA_SECRET_DISCORD_BOT_TOKEN" not in os.environ

    assert _run(homelab, tmp_path, "discord") == cli.EXIT_INVALID

    error = capsys.readouterr().err
    assert "no Discord bot token: set NEBULA_SECRET_DISCORD_BOT_TOKEN" in error
    assert "secret discord-bot/token" in error


def test_the_twitch_bot_names_every_credential_it_lacks(
    homelab: Homelab, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(homelab, tmp_path, "twitch", "--config", "default/homelab-bots") == 1

    error = " ".join(capsys.readouterr().err.split())
    assert "secret 'stream-bot' lacks what the Twitch bot needs: set " in error
    for variable in ("TWITCH_OAUTH", "CLIENT_ID", "CLIENT_SECRET", "BOT_ID"):
        assert f"NEBULA_SECRET_STREAM_BOT_{variable}" in error


def test_a_botconfig_that_is_not_there_is_named(
    homelab: Homelab, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(homelab, tmp_path, "discord", "--config", "default/nope") == 1

    assert "there is no BotConfig/default/nope" in capsys.readouterr().err
