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
    *gpus: tuple[str, str],
    node: str = "home-ubuntu",
    at: datetime.datetime = T0,
    interval: float = 15,
    memory: str = "64Gi",
    problems: tuple[str, ...] = (),
) -> Heartbeat:
    return Heartbeat(
        node=node,
        hostname="gpu-box",
        agent_version="0.1.0",
        interval_seconds=interval,
        received_at=at,
        problems=list(problems),
        hardware=Hardware.model_validate(
            {
                "cpu": {"model": "AMD Ryzen 9 5900X", "cores": 24},
                "memory": memory,
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
    degraded = _condition(outcome, conditions.DEGRADED)
    assert (degraded.status, degraded.reason) == ("False", nebula_node.MATCHES)
    status = outcome.status
    assert status.problems == []
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


def test_a_declared_24gi_gpu_on_a_node_reporting_8gi_is_degraded_naming_both_in_mib() -> None:
    # Bug: HardwareMatches=False left the node Ready and out of "Needs attention", though the
    # example manifests promise such a node stands out. It is Degraded now, Ready still (the
    # agent reports), and the message sets both sizes side by side in the same units.
    node = _node(gpu={"vendor": "nvidia", "minVram": "24Gi"})

    outcome = nebula_node.reconcile(
        node, heartbeat=_beat(("NVIDIA GeForce RTX 3070", "7982Mi")), now=T0, previous=None
    )

    differs = (
        "declared at least 24Gi (24576Mi) of VRAM per nvidia GPU, "
        "found NVIDIA GeForce RTX 3070 with 7.8Gi (7982Mi)"
    )
    matches = _condition(outcome, nebula_node.HARDWARE_MATCHES)
    assert (matches.status, matches.reason, matches.message) == (
        "False",
        nebula_node.DIFFERS,
        differs,
    )
    degraded = _condition(outcome, conditions.DEGRADED)
    assert (degraded.status, degraded.reason, degraded.message) == (
        "True",
        nebula_node.HARDWARE_DIFFERS,
        differs,
    )
    assert _condition(outcome, "Ready").status == "True"  # it reports: it is there


def test_cards_and_ram_reporting_a_little_under_their_nominal_size_meet_the_declaration() -> None:
    # Bug: a real RTX 4090 reports 24564 MiB, and the example's own `minVram: 24Gi` failed with
    # "declared 24Gi VRAM ... found NVIDIA GeForce RTX 4090 with 24Gi". Declared sizes are
    # nominal; the driver and the kernel keep a little (quantities.SHORTFALL).
    # What nvidia-smi prints for these cards (public outputs; see hardware/quantities.py).
    cards = [("NVIDIA GeForce RTX 4090", "24564Mi"), ("NVIDIA GeForce RTX 3070", "7982Mi"),
             ("NVIDIA GeForce RTX 2080 Ti", "11019Mi"), ("NVIDIA T400 4GB", "3911Mi")]  # fmt: skip
    declared = ["24Gi", "8Gi", "11Gi", "4Gi"]

    for (model, vram), wanted in zip(cards, declared, strict=True):
        node = _node(minMemory="32Gi", gpu={"vendor": "nvidia", "minVram": wanted})
        beat = _beat((model, vram), memory="32818656Ki")  # MemTotal of a real 32 GiB server
        outcome = nebula_node.reconcile(node, heartbeat=beat, now=T0, previous=None)

        assert _condition(outcome, nebula_node.HARDWARE_MATCHES).status == "True", model
        assert _condition(outcome, conditions.DEGRADED).status == "False", model

    # The margin still tells an 11 GiB card from a 12 GiB one, and a 3 GiB from a 4 GiB one.
    for (model, vram), wanted in [(cards[2], "12Gi"), (("NVIDIA GTX 1060 3GB", "3019Mi"), "4Gi")]:
        node = _node(gpu={"vendor": "nvidia", "minVram": wanted})
        outcome = nebula_node.reconcile(node, heartbeat=_beat((model, vram)), now=T0, previous=None)
        assert _condition(outcome, nebula_node.HARDWARE_MATCHES).status == "False", model


def test_a_broken_gpu_driver_makes_the_node_degraded_and_its_problem_reaches_the_status() -> None:
    # Bug: the agent stored "nvidia-smi: NVIDIA-SMI has failed..." with its heartbeat, and the
    # node's status said only that no GPU was found. The problem is in the status and in
    # Degraded's message, after what differs from the declaration.
    failed = (  # as the agent words it (tests/nebula/hardware: nvidia-smi.no-driver.txt)
        "nvidia-smi: NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
    )
    node = _node(gpu={"vendor": "nvidia"})

    outcome = nebula_node.reconcile(
        node, heartbeat=_beat(problems=(failed,)), now=T0, previous=None
    )

    assert outcome.status.problems == [failed]
    degraded = _condition(outcome, conditions.DEGRADED)
    assert (degraded.status, degraded.reason) == ("True", nebula_node.HARDWARE_DIFFERS)
    assert degraded.message == (
        f"declared 1 nvidia GPU, found no GPU; the agent could not read {failed}"
    )
    assert _condition(outcome, "Ready").status == "True"

    # Nothing declared to miss: the problem alone is worth a look.
    outcome = nebula_node.reconcile(
        _node(), heartbeat=_beat(problems=(failed,)), now=T0, previous=outcome.status
    )

    degraded = _condition(outcome, conditions.DEGRADED)
    assert (degraded.status, degraded.reason) == ("True", nebula_node.AGENT_PROBLEMS)
    assert degraded.message == f"the agent could not read {failed}"
    assert _condition(outcome, nebula_node.HARDWARE_MATCHES).status == "True"

    # The driver is back: the problem goes with the next heartbeat.
    outcome = nebula_node.reconcile(_node(), heartbeat=_beat(), now=T0, previous=outcome.status)

    assert outcome.status.problems == []
    assert _condition(outcome, conditions.DEGRADED).status == "False"


def test_missing_gpus_memory_and_cores_are_each_named() -> None:
    node = _node(minMemory="128Gi", minCpus=32, gpu={"vendor": "nvidia", "count": 2})

    outcome = nebula_node.reconcile(
        node, heartbeat=_beat(("NVIDIA GeForce RTX 3090", "24576Mi")), now=T0, previous=None
    )

    assert _condition(outcome, nebula_node.HARDWARE_MATCHES).message == (
        "declared at least 32 CPUs, found 24; "
        "declared at least 128Gi (131072Mi) of memory, found 64Gi (65536Mi); "
        "declared 2 nvidia GPUs, found NVIDIA GeForce RTX 3090 with 24Gi (24576Mi)"
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


def test_an_agent_reporting_faster_than_declared_is_missed_after_three_of_its_own_intervals() -> (
    None
):
    # Bug: an agent every 3 s was declared lost only after 45 s (three of the declared 15 s),
    # and the page said both "reports every 3s" and "expected every 15s". The agent's own
    # interval is what it does: three of those, and one figure everywhere.
    node, beat = _node(), _beat(interval=3)

    ready = nebula_node.reconcile(
        node, heartbeat=beat, now=T0 + datetime.timedelta(seconds=8), previous=None
    )
    stale = nebula_node.reconcile(
        node, heartbeat=beat, now=T0 + datetime.timedelta(seconds=9), previous=ready.status
    )

    assert _condition(ready, "Ready").message == "agent 0.1.0 on gpu-box reports every 3s"
    assert ready.retry_after == 1.0
    gone = _condition(stale, "Ready")
    assert (gone.status, gone.reason) == ("False", nebula_node.HEARTBEAT_STALE)
    assert gone.message.endswith("from gpu-box; expected every 3s")


def test_a_node_nobody_reports_as_says_how_to_start_its_agent() -> None:
    outcome = nebula_node.reconcile(_node(), heartbeat=None, now=T0, previous=None)

    ready = _condition(outcome, "Ready")
    assert (ready.status, ready.reason) == ("False", nebula_node.NO_HEARTBEAT)
    assert "`nebula join home-ubuntu`" in ready.message
    assert _condition(outcome, nebula_node.HARDWARE_MATCHES).status == "Unknown"
    assert _condition(outcome, conditions.DEGRADED).status == "Unknown"
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
