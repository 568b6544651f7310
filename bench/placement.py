"""Benchmark: placing 1,000 services and 1,000 models over 100 nodes (bench/placement.py).

Reports the time to turn the declared nodes into candidates and place every service and every
model (aim: under 100 ms), best and median of ``--runs``, and checks that placing again with
the result as the current placement moves nothing (a re-run with nothing changed changes
nothing). The nodes mix roles, runtimes, labels, GPUs of 0-24Gi, some not Ready and some in
maintenance; the services and models mix every kind of placement.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from typing import Any

from nebula import placement
from nebula.resources.nebula_model import ModelPlacement
from nebula.resources.nebula_node import NebulaNode
from nebula.resources.nebula_service import Placement

VRAM = [None, "4096Mi", "7982Mi", "12045Mi", "24564Mi"]


def nodes(count: int, rng: random.Random) -> list[NebulaNode]:
    """``count`` declared nodes with what their agents reported."""
    made = []
    for index in range(count):
        vram = rng.choice(VRAM)
        ready = rng.random() > 0.1
        status: dict[str, Any] = {
            "conditions": [
                {"type": "Ready", "status": "True" if ready else "False",
                 "reason": "Reporting" if ready else "HeartbeatStale", "message": "",
                 "lastTransitionTime": "2026-12-02T12:00:00Z"}
            ],
            "hardware": {
                "cpu": {"cores": 8}, "memory": "32Gi",
                "gpus": [{"vendor": "nvidia", "model": "RTX", "vramTotal": vram}] if vram else [],
            },
        }  # fmt: skip
        made.append(
            NebulaNode.model_validate(
                {
                    "apiVersion": "nebula.dev/v1alpha1",
                    "kind": "NebulaNode",
                    "metadata": {"name": f"node-{index:03d}"},
                    "spec": {
                        "role": "ai" if vram else rng.choice(["worker", "control", "storage"]),
                        "runtime": rng.choice(["docker", "k3s"]),
                        "addresses": [{"type": "lan", "address": f"10.0.{index // 250}.{index}"}],
                        "labels": {"site": rng.choice(["home", "cloud"])},
                        "maintenance": rng.random() < 0.05,
                    },
                    "status": status,
                }
            )
        )
    return made


def services(count: int, names: list[str], rng: random.Random) -> list[Placement]:
    """``count`` service placements of every sort."""
    made = []
    for _ in range(count):
        pick = rng.random()
        if pick < 0.1:
            made.append(Placement(node=rng.choice(names)))
        elif pick < 0.3:
            made.append(Placement(gpu=True, min_vram=rng.choice(["4Gi", "8Gi", "24Gi"])))
        elif pick < 0.5:
            made.append(Placement(node_selector={"site": rng.choice(["home", "cloud"])}))
        else:
            made.append(Placement())
    return made


def models(count: int, names: list[str], rng: random.Random) -> list[ModelPlacement]:
    """``count`` model placements of every sort."""
    made = []
    for _ in range(count):
        pick = rng.random()
        if pick < 0.3:
            made.append(ModelPlacement(nodes=rng.sample(names, 2)))
        elif pick < 0.6:
            made.append(ModelPlacement(min_vram=rng.choice(["4Gi", "8Gi"])))
        else:
            made.append(ModelPlacement())
    return made


def run_once(
    declared: list[NebulaNode],
    wanted: list[Placement],
    held: list[ModelPlacement],
    current: list[str | None],
) -> tuple[list[str | None], list[tuple[str, ...]]]:
    """One placement of everything; returns where each service runs and who holds each model."""
    found = placement.candidates(declared)
    load: dict[str, int] = {}
    chosen: list[str | None] = []
    for asked, now in zip(wanted, current, strict=True):
        node = placement.place(asked, found, current=now, load=load).node
        if node is not None:
            load[node] = load.get(node, 0) + 1
        chosen.append(node)
    holders = [placement.holders(model, found).nodes for model in held]
    return chosen, holders


def main() -> None:
    """Places everything ``--runs`` times and prints the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    rng = random.Random(7)
    declared = nodes(args.nodes, rng)
    names = [node.metadata.name for node in declared]
    wanted = services(args.services, names, rng)
    held = models(args.models, names, rng)

    first, holders = run_once(declared, wanted, held, [None] * len(wanted))
    timings = []
    for _ in range(args.runs):
        start = time.perf_counter()
        again, held_again = run_once(declared, wanted, held, first)
        timings.append(time.perf_counter() - start)
        if again != first or held_again != holders:
            sys.exit("placing again with nothing changed moved something")
    placed = sum(node is not None for node in first)
    print(f"{args.services} services over {args.nodes} nodes: {placed} placed, "
          f"{args.services - placed} with no fitting node; {args.models} models held by "
          f"{sum(len(h) for h in holders)} nodes in all")  # fmt: skip
    print(f"place everything: median {statistics.median(timings) * 1000:.1f} ms "
          f"(best {min(timings) * 1000:.1f} ms); a re-run moved nothing")  # fmt: skip


if __name__ == "__main__":
    main()
