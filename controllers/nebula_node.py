"""The NebulaNode reconciler: a declared machine, compared with what its agent last reported.

Called by both runtimes (the kopf daemons in ``handlers.py`` and the embedded runtime) with the
node, its heartbeat (matched by name or address, see ``nebula.heartbeats.match``) and the time.
It reads top to bottom: no heartbeat → stale heartbeat → the hardware as reported → how it
compares with the declared expectations → the labels a Kubernetes Node gets. It writes nothing:
the runtime writes the returned status and applies the returned labels.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal

from nebula import hardware
from nebula.heartbeats import Heartbeat
from nebula.resources import conditions, fields
from nebula.resources.nebula_node import (
    GpuInfo,
    Hardware,
    HardwareExpectation,
    NebulaNode,
    NebulaNodeStatus,
)

__all__ = [
    "DIFFERS",
    "HARDWARE_MATCHES",
    "HEARTBEAT_STALE",
    "LABEL_PREFIX",
    "MATCHES",
    "MISSED_HEARTBEATS",
    "NO_HARDWARE",
    "NO_HEARTBEAT",
    "REPORTING",
    "NodeOutcome",
    "differences",
    "node_labels",
    "reconcile",
]

# Condition types and reasons, shared by status, events, logs and tests.
HARDWARE_MATCHES = "HardwareMatches"
REPORTING = "Reporting"
NO_HEARTBEAT = "NoHeartbeat"
HEARTBEAT_STALE = "HeartbeatStale"
MATCHES = "AsDeclared"
DIFFERS = "Differs"
NO_HARDWARE = "NoHardwareReported"
MISSED_HEARTBEATS = 3
"""A node is Ready while its last heartbeat is younger than this many intervals."""
LABEL_PREFIX = "nebula.dev/"
_TIER_LABELS = {"cpu": "cpu", "<4Gi": "under-4Gi", "4-8Gi": "4-8Gi", "8Gi+": "8Gi-or-more"}


@dataclasses.dataclass(frozen=True)
class NodeOutcome:
    """What a reconcile decided: the status, the Kubernetes Node labels, when to look again."""

    status: NebulaNodeStatus
    labels: dict[str, str] | None  # None: leave the Node's labels alone (no k3s, or unknown)
    retry_after: float
    declared: frozenset[str] = frozenset()  # which of ``labels`` come from spec.labels


def reconcile(
    node: NebulaNode,
    *,
    heartbeat: Heartbeat | None,
    now: datetime.datetime,
    previous: NebulaNodeStatus | None,
) -> NodeOutcome:
    """The node's status from its latest heartbeat; see the module docstring."""
    status = previous or NebulaNodeStatus()
    generation = node.metadata.generation
    expected = fields.parse_duration(node.spec.agent.heartbeat_interval).total_seconds()

    # No agent has ever reported as this node: nothing is known of the machine.
    if heartbeat is None or heartbeat.received_at is None:
        addresses = ", ".join(a.address for a in node.spec.addresses)
        message = (
            f"no agent reports as {node.metadata.name!r} or from {addresses}: "
            f"`nebula join {node.metadata.name}` where Nebula runs prints the command to run "
            "on that machine"
        )
        status = _set(status, now, generation, ready=("False", NO_HEARTBEAT, message))
        return NodeOutcome(_hardware_condition(status, node, now, generation), None, expected)

    # The hardware is what the last heartbeat says, fresh or not: the last known state.
    status = _reported(status, heartbeat)
    interval = max(expected, heartbeat.interval_seconds)
    deadline = heartbeat.received_at + datetime.timedelta(seconds=MISSED_HEARTBEATS * interval)
    if now >= deadline:
        # A message that does not change with every look, so a stale node is not rewritten.
        last = heartbeat.received_at.astimezone(datetime.UTC).isoformat(timespec="seconds")
        message = f"no heartbeat since {last.replace('+00:00', 'Z')} from "
        message += f"{heartbeat.hostname or heartbeat.node}; "
        message += f"expected every {_duration(datetime.timedelta(seconds=interval))}"
        status = _set(status, now, generation, ready=("False", HEARTBEAT_STALE, message))
        retry = interval
    else:
        every = _duration(datetime.timedelta(seconds=heartbeat.interval_seconds))
        message = f"agent {heartbeat.agent_version} on {heartbeat.hostname or heartbeat.node}"
        message += f" reports every {every}"
        status = _set(status, now, generation, ready=("True", REPORTING, message))
        # Look again when the heartbeat would turn stale; a new one wakes the loop earlier.
        retry = max(1.0, (deadline - now).total_seconds())

    # Declared expectations against what was found, and the labels placement will use.
    status = _hardware_condition(status, node, now, generation)
    if node.spec.runtime != "k3s":
        return NodeOutcome(status, None, retry)
    # The hardware's labels, then the declared ones (spec.labels) beside them: a declared
    # label never overrides what the hardware says under nebula.dev/.
    labels = node_labels(heartbeat.hardware)
    declared = {k: v for k, v in node.spec.labels.items() if not k.startswith(LABEL_PREFIX)}
    return NodeOutcome(status, {**declared, **labels}, retry, frozenset(declared))


def _reported(status: NebulaNodeStatus, heartbeat: Heartbeat) -> NebulaNodeStatus:
    found = heartbeat.hardware
    largest = max(found.gpus, key=_vram, default=None)
    return status.model_copy(
        update={
            "hardware": found,
            "last_heartbeat": heartbeat.received_at,
            "agent_version": heartbeat.agent_version,
            "vram_tier": hardware.vram_tier(found.gpus),
            "gpu": hardware.gpu_summary(found.gpus) or None,
            "vram": hardware.human(int(_vram(largest))) if largest else None,
            "cpu": f"{found.cpu.cores} cores",
            "memory": hardware.human(found.memory),
            "address": _address(found),
        }
    )


def _hardware_condition(
    status: NebulaNodeStatus, node: NebulaNode, now: datetime.datetime, generation: int | None
) -> NebulaNodeStatus:
    if status.hardware is None:
        return _set(
            status, now, generation, matches=("Unknown", NO_HARDWARE, "no hardware reported yet")
        )
    found = differences(node.spec.hardware, status.hardware)
    if found:
        return _set(status, now, generation, matches=("False", DIFFERS, "; ".join(found)))
    return _set(status, now, generation, matches=("True", MATCHES, "as declared"))


def differences(expected: HardwareExpectation, found: Hardware) -> list[str]:
    """What the machine lacks compared with its declaration, one sentence each."""
    problems: list[str] = []
    if expected.arch and found.arch and expected.arch != found.arch:
        problems.append(f"declared arch {expected.arch}, found {found.arch}")
    if expected.min_cpus and found.cpu.cores < expected.min_cpus:
        problems.append(f"declared at least {expected.min_cpus} CPUs, found {found.cpu.cores}")
    if expected.min_memory:
        wanted, has = (
            fields.parse_quantity(expected.min_memory),
            fields.parse_quantity(found.memory),
        )
        if has < wanted:
            memory = hardware.human(found.memory)
            problems.append(f"declared at least {expected.min_memory} of memory, found {memory}")
    gpu = expected.gpu
    if gpu is None:
        return problems
    named = f"{gpu.vendor}{' ' + gpu.model if gpu.model else ''}"
    fitting = [
        g
        for g in found.gpus
        if g.vendor == gpu.vendor and (gpu.model is None or gpu.model.lower() in g.model.lower())
    ]
    seen = _describe(found.gpus)
    if len(fitting) < gpu.count:
        plural = "s" if gpu.count != 1 else ""
        problems.append(f"declared {gpu.count} {named} GPU{plural}, found {seen}")
    elif gpu.min_vram:
        wanted = fields.parse_quantity(gpu.min_vram)
        if sum(1 for g in fitting if _vram(g) >= wanted) < gpu.count:
            problems.append(f"declared {gpu.min_vram} VRAM per {named} GPU, found {seen}")
    return problems


def node_labels(found: Hardware) -> dict[str, str]:
    """Labels for the Kubernetes Node, in the spirit of NVIDIA GPU Feature Discovery.

    ``gpu.product`` (the largest GPU, label-safe), ``gpu.memory`` (its VRAM in MiB, as GFD),
    ``gpu.count`` and ``vram-tier``; a machine without a GPU gets the tier only.
    """
    labels = {f"{LABEL_PREFIX}vram-tier": _TIER_LABELS[hardware.vram_tier(found.gpus)]}
    largest = max(found.gpus, key=_vram, default=None)
    if largest is not None:
        labels[f"{LABEL_PREFIX}gpu.product"] = _label_value(largest.model)
        labels[f"{LABEL_PREFIX}gpu.memory"] = str(int(_vram(largest) // 2**20))
        labels[f"{LABEL_PREFIX}gpu.count"] = str(len(found.gpus))
    return labels


def _label_value(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_." else "-" for c in text.strip())
    return cleaned.strip("-_.")[:63].strip("-_.") or "unknown"


def _vram(gpu: GpuInfo | None) -> decimal.Decimal:
    return fields.parse_quantity(gpu.vram_total) if gpu else decimal.Decimal(0)


def _describe(gpus: list[GpuInfo]) -> str:
    if not gpus:
        return "no GPU"
    return ", ".join(f"{g.model} with {hardware.human(g.vram_total)}" for g in gpus)


def _address(found: Hardware) -> str | None:
    tailscale = hardware.tailscale_address(found.addresses)
    return tailscale or (found.addresses[0] if found.addresses else None)


def _duration(delta: datetime.timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


def _set(
    status: NebulaNodeStatus,
    now: datetime.datetime,
    generation: int | None,
    *,
    ready: tuple[conditions.ConditionStatus, str, str] | None = None,
    matches: tuple[conditions.ConditionStatus, str, str] | None = None,
) -> NebulaNodeStatus:
    found = list(status.conditions)
    for type_, value in ((conditions.READY, ready), (HARDWARE_MATCHES, matches)):
        if value is not None:
            found = conditions.set_condition(
                found, type_=type_, status=value[0], reason=value[1], message=value[2],
                now=now, generation=generation,
            )  # fmt: skip
    update: dict[str, object] = {"conditions": found}
    if generation is not None:
        update["observed_generation"] = generation
    return status.model_copy(update=update)
