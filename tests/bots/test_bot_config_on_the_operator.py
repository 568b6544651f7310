"""The operator on Kubernetes: a BotConfig's status follows what its running bots report.

The real kopf operator in-process against kmock's emulator (the fixtures of the operator
tests), the reports in a real PostgreSQL as the bots write them. The emulator checks no schema,
so the status the operator writes is validated against the generated CRD here.
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Callable
from typing import Any

import ruamel.yaml

from controllers import bot_config
from nebula import bot_reports, crds
from nebula.crds import validating
from nebula.resources import ResourceKey, conditions
from tests.controllers.conftest import Operator
from tests.controllers.emulator import Cluster

EXAMPLE = pathlib.Path(__file__).parent.parent.parent / "manifests" / "bots.yaml"
BOTS = ResourceKey("BotConfig", "default", "homelab-bots")
CRD = next(c for c in crds.all_crds().values() if c["spec"]["names"]["kind"] == "BotConfig")


def _status(k8s: Cluster) -> dict[str, Any]:
    return dict(k8s.objects("BotConfig").get(BOTS, {}).get("status") or {})


def _ready_is(k8s: Cluster, value: str, reason: str) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        """the BotConfig's Ready condition has the expected status and reason"""
        status = _status(k8s)
        ready = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})
        return status if (ready.get("status"), ready.get("reason")) == (value, reason) else None

    return check


def _eventually(check: Callable[[], dict[str, Any] | None], *, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"not within {timeout} s: {check.__doc__}"
        time.sleep(0.02)
    return result


def test_a_botconfig_turns_ready_when_its_bots_report_its_generation(
    k8s: Cluster, running_operator: Operator
) -> None:
    document = ruamel.yaml.YAML(typ="safe").load(EXAMPLE.read_text())
    document["metadata"]["namespace"] = "default"
    k8s.create(document)

    waiting = _eventually(_ready_is(k8s, "False", bot_config.APPLYING))
    assert waiting["guilds"] == 2
    assert [b["bot"] for b in waiting["bots"]] == ["discord", "twitch"]

    reports = bot_reports.BotReportStore(running_operator.database)
    for bot in ("discord", "twitch"):
        reports.record(
            bot_reports.BotReport(
                namespace="default", name="homelab-bots", bot=bot, applied_generation=1,
                connected=True,
            )
        )  # fmt: skip

    ready = _eventually(_ready_is(k8s, "True", bot_config.APPLIED))
    assert (ready["observedGeneration"], ready["appliedGeneration"]) == (1, 1)
    assert conditions.RECONCILING not in [c["type"] for c in ready["conditions"]]
    whole = {**k8s.objects("BotConfig")[BOTS], "status": ready}
    assert validating.errors(CRD, whole) == []


def test_a_botconfig_applied_by_hand_that_fails_a_cross_field_check_stalls_naming_it(
    k8s: Cluster, running_operator: Operator
) -> None:
    """kubectl accepts what the CRD's schema allows; the operator checks the rest, as a sync."""
    document = ruamel.yaml.YAML(typ="safe").load(EXAMPLE.read_text())
    document["metadata"]["namespace"] = "default"
    # Kick is no longer watched, but the first go-live post still names it.
    document["spec"]["stream"]["platforms"] = document["spec"]["stream"]["platforms"][:2]
    k8s.create(document)

    stalled = _eventually(_ready_is(k8s, "False", "InvalidSpec"))
    ready = next(c for c in stalled["conditions"] if c["type"] == "Ready")
    assert ready["message"] == (
        "the spec is invalid: spec.stream.goLive[0].platforms[1]: "
        "platform 'kick' is not in stream.platforms"
    )
    assert any(c["type"] == "Stalled" and c["status"] == "True" for c in stalled["conditions"])
