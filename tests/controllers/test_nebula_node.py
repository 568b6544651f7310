"""The NebulaNode reconciler: a declared machine against its agent's latest heartbeat."""

from __future__ import annotations

import datetime

from controllers import nebula_node
from nebula.heartbeats import Heartbeat, match
from nebula.resources import conditions
from nebula.resources.nebula_node import Hardware, NebulaNode

T0 = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=datetime.UTC)


def _node(**hardware: object) -> NebulaNode:
    return NebulaNode.model_validate(
        {
            "apiVersion": "nebula.dev/v1alpha1",
            "kind": "NebulaNode",
            "metadata": {"name": "home-ubuntu", "generation": 2},
            "spec": {
                "role": "ai",
                "runtime": "k3s",
                "addresses": [
                    {"type": "lan", "address": "192.168.1.20"},
                    {"type": "tailscale", "address": "100.101.1.2"},
                ],
                "agent": {"heartbeatInterval": "15s"},
                "hardware": hardware,
            },
        }
    )


def _beat(
    *gpus: tuple[str, str], node: str = "home-ubuntu", at: datetime.datetime = T0
) -> Heartbeat:
    return Heartbeat(
        node=node,
        hostname="gpu-box",
        agent_version="0.1.0",
        interval_seconds=15,
        received_at=at,
        hardware=Hardware.model_validate(
            {
                "cpu": {"model": "AMD Ryzen 9 5900X", "cores": 24},
                "memory": "64Gi",
                "gpus": [
                    {"index": i, "vendor": "nvidia", "model": model, "vramTotal": vram}
                    for i, (model, vram) in enumerate(gpus)
                ],
                "os": "Ubuntu 24.04.1 LTS",
                "arch": "amd64",
                "addresses": ["192.168.1.20", "100.101.1.2"],
            }
        ),
    )


def _condition(outcome: nebula_node.NodeOutcome, type_: str) -> conditions.Condition:
    found = conditions.find(outcome.status.conditions, type_)
    assert found is not None
    return found


def test_a_fresh_heartbeat_makes_the_node_ready_with_its_hardware_and_labels() -> None:
    node = _node(gpu={"vendor": "nvidia", "minVram": "24Gi"})

    outcome = nebula_node.reconcile(
        node, heartbeat=_beat(("NVIDIA GeForce RTX 3090", "24576Mi")), now=T0, previous=None
    )

    assert (_condition(outcome, "Ready").status, _condition(outcome, "Ready").reason) == (
        "True",
        nebula_node.REPORTING,
    )
    assert _condition(outcome, nebula_node.HARDWARE_MATCHES).status == "True"
    status = outcome.status
    assert (status.gpu, status.vram, status.vram_tier) == (
        "RTX 3090",
        "24Gi",
        "8Gi+",
    )
    assert (status.cpu, status.memory, status.address) == ("24 cores", "64Gi", "100.101.1.2")
    assert status.observed_generation == 2
    assert outcome.labels == {
        "nebula.dev/vram-tier": "8Gi-or-more",
        "nebula.dev/gpu.product": "NVIDIA-GeForce-RTX-3090",
        "nebula.dev/gpu.memory": "24576",
        "nebula.dev/gpu.count": "1",
    }
    # It looks again when the heartbeat would turn stale, three intervals after it.
    assert outcome.retry_after == 45.0


def test_a_declared_24gi_gpu_on_a_node_reporting_8gi_does_not_match_naming_both() -> None:
    node = _node(gpu={"vendor": "nvidia", "minVram": "24Gi"})

    outcome = nebula_node.reconcile(
        node, heartbeat=_beat(("NVIDIA GeForce RTX 3070", "8192Mi")), now=T0, previous=None
    )

    matches = _condition(outcome, nebula_node.HARDWARE_MATCHES)
    assert (matches.status, matches.reason) == ("False", nebula_node.DIFFERS)
    assert matches.message == (
        "declared 24Gi VRAM per nvidia GPU, found NVIDIA GeForce RTX 3070 with 8Gi"
    )
    assert _condition(outcome, "Ready").status == "True"  # it reports: it is there


def test_missing_gpus_memory_and_cores_are_each_named() -> None:
    node = _node(minMemory="128Gi", minCpus=32, gpu={"vendor": "nvidia", "count": 2})

    outcome = nebula_node.reconcile(
        node, heartbeat=_beat(("NVIDIA GeForce RTX 3090", "24576Mi")), now=T0, previous=None
    )

    assert _condition(outcome, nebula_node.HARDWARE_MATCHES).message == (
        "declared at least 32 CPUs, found 24; declared at least 128Gi of memory, found 64Gi; "
        "declared 2 nvidia GPUs, found NVIDIA GeForce RTX 3090 with 24Gi"
    )


def test_a_stopped_agent_turns_the_node_not_ready_after_three_intervals() -> None:
    node, beat = _node(), _beat()
    ready = nebula_node.reconcile(
        node, heartbeat=beat, now=T0 + datetime.timedelta(seconds=44), previous=None
    )

    stale = nebula_node.reconcile(
        node, heartbeat=beat, now=T0 + datetime.timedelta(seconds=45), previous=ready.status
    )

    assert _condition(ready, "Ready").status == "True"
    assert ready.retry_after == 1.0
    gone = _condition(stale, "Ready")
    assert (gone.status, gone.reason) == ("False", nebula_node.HEARTBEAT_STALE)
    assert (
        gone.message == "no heartbeat since 2026-11-26T12:00:00Z from gpu-box; expected every 15s"
    )
    # Looking again later changes nothing: a stale node is not rewritten on every look.
    later = nebula_node.reconcile(
        node, heartbeat=beat, now=T0 + datetime.timedelta(minutes=5), previous=stale.status
    )
    assert later.status == stale.status
    # What was known of the machine stays known.
    assert stale.status.hardware is not None and stale.status.cpu == "24 cores"


def test_a_node_nobody_reports_as_says_how_to_start_its_agent() -> None:
    outcome = nebula_node.reconcile(_node(), heartbeat=None, now=T0, previous=None)

    ready = _condition(outcome, "Ready")
    assert (ready.status, ready.reason) == ("False", nebula_node.NO_HEARTBEAT)
    assert "`nebula join home-ubuntu`" in ready.message
    assert _condition(outcome, nebula_node.HARDWARE_MATCHES).status == "Unknown"
    assert outcome.labels is None


def test_a_heartbeat_matches_by_name_else_by_address_and_the_freshest_wins() -> None:
    node = _node()
    by_address = _beat(node="gpu-box", at=T0 + datetime.timedelta(seconds=5))
    by_name = _beat(at=T0)
    stranger = _beat(node="elsewhere").model_copy(
        update={"hardware": _beat().hardware.model_copy(update={"addresses": ["10.9.9.9"]})}
    )

    assert match(node, [stranger, by_address, by_name]) is by_name
    assert match(node, [stranger, by_address]) is by_address
    assert match(node, [stranger]) is None
