"""Each intent edits exactly what it says, in the example homelab's own files."""

from __future__ import annotations

import datetime
import difflib
import pathlib

import pydantic
import pytest

from nebula import errors
from nebula.changes import intents
from nebula.manifests import editing
from nebula.resources import bot_config

EXAMPLE = pathlib.Path(__file__).parent.parent.parent / "manifests"


def _changed(path: str, intent: intents.Intent) -> list[str]:
    before = (EXAMPLE / path).read_text()
    after = editing.edit(before, intent.target, intent.edit)
    diff = difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
    return [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")]


def test_scaling_a_service_changes_its_replicas_line_only() -> None:
    assert _changed(
        "services/cloud.yaml", intents.ScaleService(service="dashboard", replicas=2)
    ) == [
        "-  replicas: 1",
        "+  replicas: 2",
    ]


def test_setting_an_image_changes_its_image_line_only() -> None:
    intent = intents.SetServiceImage(
        service="dashboard", image="ghcr.io/example/nebula-dashboard:1.5.0"
    )

    assert _changed("services/cloud.yaml", intent) == [
        "-  image: ghcr.io/example/nebula-dashboard:1.4.2",
        "+  image: ghcr.io/example/nebula-dashboard:1.5.0",
    ]


def test_turning_a_feature_off_in_one_guild_changes_one_line() -> None:
    intent = intents.ToggleBotFeature(
        bot_config="homelab-bots", feature="tickets", enabled=False, guild="912345678901234567"
    )

    assert _changed("bots.yaml", intent) == [
        "-            enabled: true",
        "+            enabled: false",
    ]


def test_labelling_a_node_adds_one_line_and_removing_takes_it_away() -> None:
    added = _changed("nodes.yaml", intents.LabelNode(node="linode-vps", key="tier", value="gold"))
    removed = _changed("nodes.yaml", intents.LabelNode(node="linode-vps", key="edge"))

    assert added == ["+    tier: gold"]
    assert removed == [
        '-    edge: "true"         # label values are text: quote true/false/numbers'
    ]


def test_asking_for_a_pipeline_run_stamps_annotations() -> None:
    intent = intents.RunPipeline(
        pipeline="daily-content", parameters={"topic": "GPUs"}, requested_at="2026-11-26T12:00:00Z"
    )

    changed = _changed("pipelines.yaml", intent)

    assert "+    nebula.dev/run-requested-at: '2026-11-26T12:00:00Z'" in changed
    assert "+    nebula.dev/run.topic: GPUs" in changed


def test_an_intent_that_changes_nothing_says_so() -> None:
    with pytest.raises(errors.NothingToChange):
        _changed("services/cloud.yaml", intents.ScaleService(service="dashboard", replicas=1))
    with pytest.raises(errors.NothingToChange):
        _changed("nodes.yaml", intents.LabelNode(node="linode-vps", key="nope"))


def test_bad_intents_are_refused_before_any_edit() -> None:
    with pytest.raises(pydantic.ValidationError, match="unknown feature 'karaoke'"):
        intents.parse(
            {
                "intent": "toggle-bot-feature",
                "botConfig": "b",
                "feature": "karaoke",
                "enabled": True,
            }
        )
    with pytest.raises(pydantic.ValidationError, match="image reference"):
        intents.parse(
            {"intent": "set-service-image", "service": "dashboard", "image": "Not An Image"}
        )
    with pytest.raises(pydantic.ValidationError, match=r"does not match any of the expected tags"):
        intents.parse({"intent": "delete-everything"})


def test_every_intent_offers_a_json_schema_naming_its_fields() -> None:
    schemas = intents.schemas()

    assert list(schemas) == list(intents.INTENTS)
    assert set(schemas["add-model-to-node"]["properties"]) == {
        "intent",
        "namespace",
        "model",
        "node",
    }
    assert schemas["scale-service"]["properties"]["replicas"]["maximum"] == 50


def test_the_schema_offers_the_features_a_bot_config_has() -> None:
    # Issue 11, point 5: a bot or an assistant offered the schema saw "feature: string" and
    # had to guess; the allowed values are part of it now, the same the validator checks.
    feature = intents.schemas()["toggle-bot-feature"]["properties"]["feature"]

    assert feature["enum"] == list(bot_config.FEATURES)


def test_parameters_in_words_follow_the_json_schema() -> None:
    found = {p.name: p for p in intents.parameters("scale-service")}

    assert list(found) == ["namespace", "service", "replicas"]
    assert (found["replicas"].accepts, found["replicas"].required) == (
        "a whole number from 0 to 50",
        True,
    )
    assert (found["namespace"].required, found["namespace"].default) == (False, "default")
    assert found["replicas"].schema == intents.schemas()["scale-service"]["properties"]["replicas"]


def test_a_pipeline_run_asked_without_a_time_is_asked_for_now() -> None:
    # Issue 11, point 5: requestedAt had to be typed by hand (an ISO 8601 time).
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    intent = intents.parse({"intent": "run-pipeline", "pipeline": "daily-content"})
    after = datetime.datetime.now(datetime.UTC)

    assert isinstance(intent, intents.RunPipeline)
    assert before <= datetime.datetime.fromisoformat(intent.requested_at) <= after
    assert "requestedAt" not in intents.schemas()["run-pipeline"].get("required", [])


def _explained(data: dict[str, object]) -> str:
    with pytest.raises(pydantic.ValidationError) as raised:
        intents.parse(data)
    return intents.explain(raised.value)


def test_a_refused_intent_is_explained_in_one_line_per_intent() -> None:
    assert _explained({"intent": "scale-service", "service": "dashboard", "replicas": 51}) == (
        "scale-service: replicas: 51 is not a whole number from 0 to 50"
    )
    assert _explained({"intent": "label-node", "key": "gpu"}) == (
        "label-node: node is required: a name of lowercase letters, digits, '-' and '.' "
        "(The NebulaNode)"
    )
    assert _explained({"intent": "toggle-bot-feature", "botConfig": "b", "feature": "tickets",
                       "enabled": "maybe"}) == (
        "toggle-bot-feature: enabled: 'maybe' is not true or false"
    )  # fmt: skip
    assert _explained({"intent": "delete-everything"}).startswith(
        "unknown intent 'delete-everything': one of add-model-to-node, "
    )
