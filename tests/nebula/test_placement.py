"""Placement: where a service runs and which nodes hold a model, from the declared nodes and what
their agents last reported; and why, in words, when nothing fits."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from nebula import placement
from nebula.resources.nebula_model import ModelPlacement
from nebula.resources.nebula_node import NebulaNode
from nebula.resources.nebula_service import Placement

NOW = datetime.datetime(2026, 12, 2, 12, 0, tzinfo=datetime.UTC)


def _node(
    name: str,
    *,
    role: str = "worker",
    runtime: str = "docker",
    ready: bool = True,
    vram: list[str] | None = None,
    labels: dict[str, str] | None = None,
    maintenance: bool = False,
) -> NebulaNode:
    status: dict[str, Any] = {
        "conditions": [
            {
                "type": "Ready",
                "status": "True" if ready else "False",
                "reason": "Reporting" if ready else "HeartbeatStale",
                "message": "" if ready else "no heartbeat since 2026-12-02T11:57:00Z",
                "lastTransitionTime": NOW.isoformat(),
            }
        ],
        "hardware": {
            "cpu": {"cores": 8},
            "memory": "32Gi",
            "gpus": [
                {"index": i, "vendor": "nvidia", "model": "NVIDIA GeForce RTX", "vramTotal": v}
                for i, v in enumerate(vram or [])
            ],
        },
    }
    return NebulaNode.model_validate(
        {
            "apiVersion": "nebula.dev/v1alpha1",
            "kind": "NebulaNode",
            "metadata": {"name": name},
            "spec": {
                "role": role,
                "runtime": runtime,
                "addresses": [{"type": "lan", "address": "192.0.2.1"}],
                "labels": labels or {},
                "maintenance": maintenance,
            },
            "status": status,
        }
    )


def _homelab() -> list[placement.Candidate]:
    return placement.candidates(
        [
            _node("linode-vps", role="control"),
            _node("home-ubuntu", role="ai", ready=False, vram=["24564Mi"]),
            _node("windows-vm", role="ai", vram=["6144Mi"]),
        ]
    )


def test_a_gpu_service_with_no_fitting_node_says_why_for_each_candidate() -> None:
    decision = placement.place(Placement(gpu=True, min_vram="8Gi"), _homelab())

    assert decision.node is None
    assert decision.message == (
        "needs a GPU with 8Gi of VRAM: "
        "home-ubuntu is not Ready (no heartbeat since 2026-12-02T11:57:00Z), "
        "linode-vps has no GPU, "
        "windows-vm has 6Gi (6144Mi) of VRAM, needs 8Gi"
    )


def test_a_card_that_reports_a_little_under_its_size_counts_as_that_size() -> None:
    nodes = placement.candidates([_node("home-ubuntu", role="ai", vram=["24564Mi"])])

    assert placement.place(Placement(gpu=True, min_vram="24Gi"), nodes).node == "home-ubuntu"


def test_a_service_stays_on_its_node_while_it_fits_whatever_appears() -> None:
    nodes = placement.candidates([_node("a"), _node("b")])

    assert placement.place(Placement(), nodes, current="b", load={"b": 10}).node == "b"
    # Once it no longer fits there (b went away), it moves to the least loaded node.
    gone = placement.candidates([_node("a"), _node("b", ready=False), _node("c")])
    assert placement.place(Placement(), gone, current="b", load={"a": 2}).node == "c"


def test_many_services_spread_over_the_nodes_the_same_way_every_time() -> None:
    nodes = placement.candidates([_node("a"), _node("b"), _node("c")])
    load: dict[str, int] = {}
    chosen = []
    for _ in range(6):
        node = placement.place(Placement(), nodes, load=load).node
        assert node is not None
        load[node] = load.get(node, 0) + 1
        chosen.append(node)

    assert chosen == ["a", "b", "c", "a", "b", "c"]


@pytest.mark.parametrize(
    ("asked", "why"),
    [
        (Placement(node="windows-vm"), "linode-vps is not windows-vm"),
        (Placement(node_selector={"site": "home"}), "lacks the labels site=home"),
    ],
)
def test_a_named_node_or_labels_narrow_the_choice(asked: Placement, why: str) -> None:
    nodes = placement.candidates(
        [_node("linode-vps"), _node("windows-vm", labels={"site": "home"})]
    )

    decision = placement.place(asked, nodes)

    assert decision.node == "windows-vm"
    unfit = placement.place(asked, nodes[:1])
    assert unfit.node is None and why in unfit.message


def test_a_node_in_maintenance_or_of_another_runtime_takes_nothing_new() -> None:
    nodes = placement.candidates(
        [_node("k3s-box", runtime="k3s"), _node("old-box", maintenance=True)]
    )

    decision = placement.place(Placement(), nodes, runtimes=frozenset({"docker"}))

    assert decision.node is None
    assert decision.message == "needs a Ready node: k3s-box runs k3s, old-box is in maintenance"


def test_a_model_is_held_by_every_ai_node_unless_nodes_or_labels_say_otherwise() -> None:
    nodes = _homelab()

    every_ai = placement.holders(ModelPlacement(), nodes)
    named = placement.holders(ModelPlacement(nodes=["home-ubuntu"]), nodes)
    big = placement.holders(ModelPlacement(min_vram="8Gi"), nodes)

    # A node that is not Ready still holds its models: it gets them once it reports.
    assert every_ai.nodes == ("home-ubuntu", "windows-vm")
    assert named.nodes == ("home-ubuntu",)
    assert big.nodes == ("home-ubuntu",)
    huge = placement.holders(ModelPlacement(min_vram="48Gi"), nodes)
    assert huge.nodes == ()
    assert dict(huge.refused)["windows-vm"] == "has 6Gi (6144Mi) of VRAM, needs 48Gi"
    assert huge.message.startswith("needs a node to hold it: ")


def test_no_declared_node_says_so() -> None:
    assert placement.place(Placement(), []).message == "no NebulaNode is declared"


def test_the_quick_verdict_agrees_with_the_reasons_for_every_mix_of_node_and_placement() -> None:
    # place() and holders() decide with a cheap check and explain with a thorough one: the two
    # must never disagree, or a service would be refused with no reason (or placed on a node
    # that has one).
    nodes = placement.candidates(
        [
            _node(f"{role}-{runtime}-{vram or 'cpu'}-{ready}-{site}".lower(), role=role,
                  runtime=runtime, ready=ready, vram=[vram] if vram else [],
                  labels={"site": site})
            for role in ("ai", "worker")
            for runtime in ("docker", "k3s")
            for vram in (None, "6144Mi", "24564Mi")
            for ready in (True, False)
            for site in ("home", "cloud")
        ]
    )  # fmt: skip
    asks = [
        Placement(),
        Placement(gpu=True),
        Placement(gpu=True, min_vram="8Gi"),
        Placement(node_selector={"site": "home"}),
        Placement(node=nodes[5].name),
    ]
    models = [
        ModelPlacement(),
        ModelPlacement(min_vram="8Gi"),
        ModelPlacement(node_selector={"site": "cloud"}),
        ModelPlacement(nodes=[nodes[3].name]),
    ]
    for runtimes in (frozenset({"docker"}), frozenset({"docker", "k3s"})):
        for asked in asks:
            least = placement.quantities.least(asked.min_vram) if asked.min_vram else None
            for node in nodes:
                fits = placement._fits(asked, node, runtimes, least)
                assert fits == (not placement._problems(asked, node, runtimes)), (asked, node)
    for model in models:
        least = placement.quantities.least(model.min_vram) if model.min_vram else None
        for node in nodes:
            named = set(model.nodes)
            holds = placement._holds(model, node, named, least)
            assert holds == (not placement._model_problems(model, node, named)), (model, node)
