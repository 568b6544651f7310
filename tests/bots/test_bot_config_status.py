"""The BotConfig reconciler: Ready only when every configured bot runs the current generation.

Pure: a BotConfig and the bots' latest reports in, a status out. (It belongs to the
controllers; it sits with the bots' tests because it is the bots' half of the contract.)
"""

from __future__ import annotations

import datetime
import pathlib
from typing import Any

import pytest
import ruamel.yaml

from controllers import bot_config, reconciling
from nebula.bot_reports import BotName, BotReport
from nebula.resources import conditions
from nebula.resources.bot_config import BotConfig, BotConfigStatus

EXAMPLE = pathlib.Path(__file__).parent.parent.parent / "manifests" / "bots.yaml"
NOW = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=datetime.UTC)


def _config(generation: int = 3, **spec: Any) -> BotConfig:
    data = ruamel.yaml.YAML(typ="safe").load(EXAMPLE.read_text())
    data["metadata"] = {**data["metadata"], "namespace": "default", "generation": generation}
    if spec:
        data["spec"] = spec
    return BotConfig.model_validate(data)


def _report(bot: BotName, generation: int | None, *, connected: bool = True) -> BotReport:
    return BotReport(
        namespace="default",
        name="homelab-bots",
        bot=bot,
        applied_generation=generation,
        connected=connected,
        received_at=NOW,
    )


def _ready(outcome: reconciling.Result[BotConfigStatus]) -> tuple[str, str, str]:
    found = conditions.find(outcome.status.conditions, conditions.READY)
    assert found is not None
    return found.status, found.reason, found.message


def test_every_bot_on_the_current_generation_is_ready() -> None:
    outcome = bot_config.reconcile(
        _config(),
        reports=[_report("discord", 3), _report("twitch", 3)],
        now=NOW,
        previous=None,
    )

    assert _ready(outcome) == (
        "True",
        "Applied",
        "discord and twitch run generation 3 (kick, youtube: no Nebula bot watches them yet)",
    )
    status = outcome.status
    assert (status.observed_generation, status.applied_generation, status.guilds) == (3, 3, 2)
    assert [event.type for event in outcome.events] == ["Normal"]


def test_a_bot_on_an_older_generation_keeps_it_applying_and_is_named() -> None:
    ready = bot_config.reconcile(
        _config(2), reports=[_report("discord", 2), _report("twitch", 2)], now=NOW, previous=None
    ).status

    outcome = bot_config.reconcile(
        _config(3),
        reports=[_report("discord", 3), _report("twitch", 2)],
        now=NOW,
        previous=ready,
    )

    assert _ready(outcome)[:2] == ("False", "Applying")
    assert _ready(outcome)[2].startswith("waiting for twitch (runs generation 2)")
    reconciling = conditions.find(outcome.status.conditions, conditions.RECONCILING)
    assert reconciling is not None and reconciling.status == "True"
    # Not done with generation 3 yet; the oldest generation running is 2.
    assert outcome.status.observed_generation == 2
    assert outcome.status.applied_generation == 2


def test_a_bot_that_never_reported_says_how_to_start_it() -> None:
    outcome = bot_config.reconcile(
        _config(), reports=[_report("twitch", 3)], now=NOW, previous=None
    )

    # The hint names the secret the bot needs, as the spec does (a bare `nebula bot discord`
    # only says it lacks its token).
    assert _ready(outcome)[2].startswith(
        "waiting for discord (has not reported: start it with `nebula bot discord` "
        "(it reads its credentials from secret discord-bot))"
    )
    [discord, twitch] = outcome.status.bots
    assert (discord.bot, discord.applied_generation, discord.connected) == ("discord", None, False)
    assert (twitch.bot, twitch.applied_generation) == ("twitch", 3)
    assert outcome.status.applied_generation is None


def test_a_bot_that_went_offline_is_not_ready_and_warns_once() -> None:
    first = bot_config.reconcile(
        _config(),
        reports=[_report("discord", 3, connected=False), _report("twitch", 3)],
        now=NOW,
        previous=None,
    )
    again = bot_config.reconcile(
        _config(),
        reports=[_report("discord", 3, connected=False), _report("twitch", 3)],
        now=NOW + datetime.timedelta(minutes=1),
        previous=first.status,
    )

    assert _ready(first) == ("False", "Disconnected", "discord applied generation 3 but is offline")
    assert [event.type for event in first.events] == ["Warning"]
    assert again.events == () and again.status == first.status


@pytest.mark.parametrize(
    ("platform", "bots"),
    [pytest.param("kick", [], id="kick only"), pytest.param("twitch", ["twitch"], id="twitch")],
)
def test_only_bots_nebula_runs_are_waited_for(platform: str, bots: list[BotName]) -> None:
    config = _config(stream={"platforms": [{"platform": platform, "channel": "examplecreator"}]})

    assert bot_config.configured_bots(config.spec) == bots
    outcome = bot_config.reconcile(
        config, reports=[_report(bot, 3) for bot in bots], now=NOW, previous=None
    )
    assert _ready(outcome)[0] == "True"
    assert outcome.status.guilds == 0
