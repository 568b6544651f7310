"""Placement: which declared machines a service may run on, and which one it runs on.

Pure functions, no I/O: the NebulaService reconciler (and ``bench/placement.py``) hands in the
declared NebulaNodes with their last status; nothing here talks to a machine. A node fits a
service when it is Ready (its agent reports), not in maintenance, matches the service's
``placement`` (a named node, labels, a GPU with enough VRAM) and runs workloads the way the
service can be run (``docker`` or ``k3s``). When nothing fits, :class:`Decision` says why for
each of the closest candidates, in one sentence a person can act on. Placement is stable: a
service that runs on a node that still fits stays there, whatever else appeared meanwhile.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

from nebula.hardware import quantities
from nebula.resources import conditions
from nebula.resources.nebula_model import ModelPlacement
from nebula.resources.nebula_node import NebulaNode
from nebula.resources.nebula_service import Placement

__all__ = ["MAX_REASONS", "Candidate", "Decision", "Holders", "candidates", "holders", "place"]

MAX_REASONS = 3
"""How many refused nodes a Decision names (the closest first)."""


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A declared machine as placement sees it: its spec, and what its agent last reported."""

    name: str
    role: str  # control | worker | ai | storage
    runtime: str  # docker | k3s
    labels: Mapping[str, str]
    maintenance: bool
    # Why the node is not Ready, in words ("no agent reports as home-ubuntu"); None: Ready.
    not_ready: str | None
    # The reported VRAM of each GPU in bytes, largest first.
    vram: tuple[int, ...]

    @property
    def ready(self) -> bool:
        """Whether its agent reports (Ready=True)."""
        return self.not_ready is None


def candidates(nodes: Iterable[NebulaNode]) -> list[Candidate]:
    """Every declared node as a candidate, in name order."""
    found = []
    for node in nodes:
        status = node.status
        ready = conditions.find(status.conditions, conditions.READY) if status else None
        if ready is not None and ready.status == "True":
            why = None
        else:
            why = "not Ready" + (f" ({ready.message})" if ready and ready.message else "")
        gpus = status.hardware.gpus if status and status.hardware else []
        vram = sorted((quantities.to_bytes(gpu.vram_total) for gpu in gpus), reverse=True)
        found.append(
            Candidate(
                name=node.metadata.name,
                role=node.spec.role,
                runtime=node.spec.runtime,
                labels=dict(node.spec.labels),
                maintenance=node.spec.maintenance,
                not_ready=why,
                vram=tuple(vram),
            )
        )
    return sorted(found, key=lambda candidate: candidate.name)


@dataclasses.dataclass(frozen=True)
class Decision:
    """Where a service runs, or why it runs nowhere."""

    node: str | None  # None: no node fits
    refused: tuple[tuple[str, str], ...] = ()  # (node, why), the closest candidates first
    asked: str = "a node"  # what the service needs, in words ("a GPU with 8Gi of VRAM")

    @property
    def message(self) -> str:
        """One line for the Stalled condition: what was asked, and why each node was refused."""
        if self.node is not None:
            return f"runs on {self.node}"
        if not self.refused:
            return "no NebulaNode is declared"
        shown = ", ".join(f"{node} {why}" for node, why in self.refused[:MAX_REASONS])
        more = len(self.refused) - MAX_REASONS
        return f"needs {self.asked}: {shown}" + (f" (and {more} more)" if more > 0 else "")


def place(
    placement: Placement,
    nodes: Sequence[Candidate],
    *,
    current: str | None = None,
    runtimes: frozenset[str] = frozenset({"docker", "k3s"}),
    load: Mapping[str, int] | None = None,
) -> Decision:
    """The node a service with ``placement`` runs on.

    ``current`` is where it runs now: kept while it still fits. Otherwise the fitting node with
    the least ``load`` (services already placed there), then by name, so placing many services
    spreads them and is the same every time. ``runtimes``: how the service can be run.
    """
    # Most services fit somewhere: a cheap yes/no per node first, the reasons only when none.
    least = quantities.least(placement.min_vram) if placement.min_vram else None
    if current is not None:
        here = next((node for node in nodes if node.name == current), None)
        if here is not None and _fits(placement, here, runtimes, least):
            return Decision(current)
    fitting = [node for node in nodes if _fits(placement, node, runtimes, least)]
    if fitting:
        counts = load or {}
        return Decision(min(fitting, key=lambda node: (counts.get(node.name, 0), node.name)).name)
    refused = sorted(
        (len(problems), node.name, "; ".join(problems))
        for node in nodes
        if (problems := _problems(placement, node, runtimes))
    )
    return Decision(None, tuple((node, why) for _, node, why in refused), _asked(placement))


def _fits(
    placement: Placement, node: Candidate, runtimes: frozenset[str], least: int | None
) -> bool:
    """Whether ``node`` can take the service (``least``: the VRAM it needs, in bytes as
    reported); the same verdict as :func:`_problems` finding nothing, only cheaper."""
    if placement.node is not None and node.name != placement.node:
        return False
    if node.not_ready is not None or node.maintenance or node.runtime not in runtimes:
        return False
    if any(node.labels.get(key) != value for key, value in placement.node_selector.items()):
        return False
    if least is not None:
        return bool(node.vram) and node.vram[0] >= least
    return bool(node.vram) or not placement.gpu


def _asked(placement: Placement) -> str:
    """What ``placement`` asks for, in words."""
    if placement.node is not None:
        return f"the node {placement.node}"
    parts = []
    if placement.min_vram:
        parts.append(f"a GPU with {placement.min_vram} of VRAM")
    elif placement.gpu:
        parts.append("a GPU")
    if placement.node_selector:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(placement.node_selector.items()))
        parts.append(f"the labels {labels}")
    return " and ".join(parts) or "a Ready node"


@dataclasses.dataclass(frozen=True)
class Holders:
    """The nodes that should hold a model, and why the others do not."""

    nodes: tuple[str, ...]
    # (node, why), the closest candidates first; only when no node holds it.
    refused: tuple[tuple[str, str], ...] = ()

    @property
    def message(self) -> str:
        """One line naming the holders, or why there are none."""
        if self.nodes:
            return "held by " + ", ".join(self.nodes)
        return Decision(None, self.refused, "a node to hold it").message


def holders(placement: ModelPlacement, nodes: Sequence[Candidate]) -> Holders:
    """Every node that should hold a model with ``placement``: the named ones, those with the
    selected labels, or (neither given) every ``ai`` node; each with enough VRAM if asked.

    A named node that is not Ready still holds it (it gets the model once it reports), unlike
    a service, which must run somewhere now.
    """
    named = set(placement.nodes)
    least = quantities.least(placement.min_vram) if placement.min_vram else None
    chosen = tuple(node.name for node in nodes if _holds(placement, node, named, least))
    if chosen:
        return Holders(chosen)
    refused = sorted(
        (len(problems), node.name, "; ".join(problems))
        for node in nodes
        if (problems := _model_problems(placement, node, named))
    )
    return Holders((), tuple((node, why) for _, node, why in refused))


def _holds(placement: ModelPlacement, node: Candidate, named: set[str], least: int | None) -> bool:
    """Whether ``node`` should hold the model: :func:`_model_problems` finding nothing."""
    if named:
        return node.name in named
    if any(node.labels.get(key) != value for key, value in placement.node_selector.items()):
        return False
    if not placement.node_selector and node.role != "ai":
        return False
    return least is None or (bool(node.vram) and node.vram[0] >= least)


def _model_problems(placement: ModelPlacement, node: Candidate, named: set[str]) -> list[str]:
    if named:
        return [] if node.name in named else [f"is not one of {', '.join(sorted(named))}"]
    problems = _selector_problems(placement.node_selector, node)
    if not placement.node_selector and node.role != "ai":
        problems.append(f"has the role {node.role}, not ai")
    if placement.min_vram:
        problems += _vram_problems(placement.min_vram, node)
    return problems


def _selector_problems(selector: Mapping[str, str], node: Candidate) -> list[str]:
    missing = {k: v for k, v in selector.items() if node.labels.get(k) != v}
    if not missing:
        return []
    wanted = ", ".join(f"{key}={value}" for key, value in sorted(missing.items()))
    return [f"lacks the labels {wanted}"]


def _vram_problems(minimum: str, node: Candidate) -> list[str]:
    if not node.vram:
        return ["has no GPU"]
    if quantities.meets(node.vram[0], declared=minimum):
        return []
    return [f"has {quantities.human(node.vram[0], exact=True)} of VRAM, needs {minimum}"]


def _problems(placement: Placement, node: Candidate, runtimes: frozenset[str]) -> list[str]:
    """Why ``node`` cannot take the service, each a short clause; empty when it can."""
    # A node other than the one named is refused for that alone: nothing else would help.
    if placement.node is not None and node.name != placement.node:
        return [f"is not {placement.node}"]
    problems = _selector_problems(placement.node_selector, node)
    if node.runtime not in runtimes:
        problems.append(f"runs {node.runtime}")
    if placement.min_vram:
        problems += _vram_problems(placement.min_vram, node)
    elif placement.gpu and not node.vram:
        problems.append("has no GPU")
    if node.maintenance:
        problems.append("is in maintenance")
    if node.not_ready is not None:
        problems.append(f"is {node.not_ready}")
    return problems
