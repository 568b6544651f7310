"""Printer columns evaluate like kubectl's JSONPath, for the web UI's tables."""

from __future__ import annotations

from nebula.resources import NebulaNode, NebulaService, columns

NODE = {
    "apiVersion": "nebula.dev/v1alpha1",
    "kind": "NebulaNode",
    "metadata": {"name": "home-ubuntu"},
    "spec": {"role": "ai"},
}
STATUS = {
    "gpu": "RTX 3090",
    "vram": "24Gi",
    "cpu": "24 cores",
    "conditions": [
        {"type": "HardwareMatches", "status": "False"},
        {"type": "Ready", "status": "True"},
    ],
}


def test_paths_filters_and_indexes_resolve_or_give_none() -> None:
    whole = {**NODE, "status": STATUS}

    assert columns.evaluate(".spec.role", whole) == "ai"
    assert columns.evaluate('.status.conditions[?(@.type=="Ready")].status', whole) == "True"
    assert columns.evaluate('.status.conditions[?(@.type=="Stalled")].status', whole) is None
    assert columns.evaluate(".status.conditions[1].type", whole) == "Ready"
    assert columns.evaluate(".status.conditions[5].type", whole) is None
    assert columns.evaluate(".spec.role.deeper", whole) is None


def test_a_node_shows_role_gpu_vram_and_the_wide_columns_but_not_ready_or_age() -> None:
    shown = columns.columns(NebulaNode.info, NODE, STATUS)

    assert shown == [
        ("Role", "ai"), ("GPU", "RTX 3090"), ("VRAM", "24Gi"), ("CPU", "24 cores"),
        ("RAM", ""), ("Address", ""), ("Agent", ""),
    ]  # fmt: skip


def test_a_service_shows_its_first_domain() -> None:
    service = {
        "kind": "NebulaService",
        "spec": {"image": "ghcr.io/acme/dash:1", "replicas": 2,
                 "domains": [{"host": "dash.example.com"}, {"host": "b.example.com"}]},
    }  # fmt: skip

    shown = dict(columns.columns(NebulaService.info, service, {}))

    assert shown["Domain"] == "dash.example.com"
    assert shown["Replicas"] == "2"
