"""The NebulaNode reconciler: a declared machine, compared with what its agent last reported.

Called by both runtimes (the kopf daemons in ``handlers.py`` and the embedded runtime) with the
node, its heartbeat (matched by name or address, see ``nebula.heartbeats.match``) and the time.
It reads top to bottom: no heartbeat → stale heartbeat → the hardware as reported → how it
compares with the declared expectations → the labels a Kubernetes Node gets. It writes nothing:
the runtime writes the returned status and applies the returned labels.

Three conditions: ``Ready`` says the agent reports (within three of its own intervals);
``HardwareMatches`` compares the declared hardware with what was found; ``Degraded`` is what a
person should look at: True when the hardware differs or a probe of the agent failed (a driver
that does not answer), with both in its message.
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
    "AGENT_PROBLEMS",
    "DIFFERS",
    "HARDWARE_DIFFERS",
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
HARDWARE_DIFFERS = "HardwareDiffers"
"""Degraded's reason when the machine lacks what it declares (its problems may come along)."""
AGENT_PROBLEMS = "AgentProblems"
"""Degraded's reason when the hardware is as declared but a probe of the agent failed."""
MISSED_HEARTBEATS = 3
"""A node is Ready while its last heartbeat is younger than this many intervals."""
LABEL_PREFIX = "nebula.dev/"
_Verdict = tuple[conditions.ConditionStatus, str, str]  # a condition's status, reason, message
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
    # The declared interval is what to expect until a heartbeat says what the agent really does.
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
        return NodeOutcome(_verdicts(status, node, now, generation), None, expected)

    # The hardware is what the last heartbeat says, fresh or not: the last known state.
    status = _reported(status, heartbeat)
    # The agent's own interval, shorter or longer than the declared one: it is what the agent
    # does, so a 3 s agent is missed after 9 s, not 45, and a page shows one figure.
    interval = heartbeat.interval_seconds
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
        every = _duration(datetime.timedelta(seconds=interval))
        message = f"agent {heartbeat.agent_version} on {heartbeat.hostname or heartbeat.node}"
        message += f" reports every {every}"
        status = _set(status, now, generation, ready=("True", REPORTING, message))
        # Look again when the heartbeat would turn stale; a new one wakes the loop earlier.
        retry = max(1.0, (deadline - now).total_seconds())

    # Declared expectations against what was found, what the agent could not read, and the
    # labels placement will use.
    status = _verdicts(status, node, now, generation)
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
            "problems": list(heartbeat.problems),
        }
    )


def _verdicts(
    status: NebulaNodeStatus, node: NebulaNode, now: datetime.datetime, generation: int | None
) -> NebulaNodeStatus:
    """HardwareMatches and Degraded, from the last known hardware and problems (a stale node
    keeps both: they are what was last known of the machine)."""
    if status.hardware is None:
        unknown: _Verdict = ("Unknown", NO_HARDWARE, "no hardware reported yet")
        return _set(status, now, generation, matches=unknown, degraded=unknown)
    found = differences(node.spec.hardware, status.hardware)
    failed = [f"the agent could not read {problem}" for problem in status.problems]
    matches: _Verdict = (
        ("False", DIFFERS, "; ".join(found)) if found else ("True", MATCHES, "as declared")
    )
    degraded: _Verdict = ("False", MATCHES, "as declared, and every probe of the agent answered")
    if found or failed:
        reason = HARDWARE_DIFFERS if found else AGENT_PROBLEMS
        degraded = ("True", reason, "; ".join(found + failed))
    return _set(status, now, generation, matches=matches, degraded=degraded)


def differences(expected: HardwareExpectation, found: Hardware) -> list[str]:
    """What the machine lacks compared with its declaration, one sentence each."""
    problems: list[str] = []
    if expected.arch and found.arch and expected.arch != found.arch:
        problems.append(f"declared arch {expected.arch}, found {found.arch}")
    if expected.min_cpus and found.cpu.cores < expected.min_cpus:
        problems.append(f"declared at least {expected.min_cpus} CPUs, found {found.cpu.cores}")
    # Sizes compare with the shortfall real machines and cards report (hardware.meets), and
    # both sides show in the same units, so a message never reads "declared 24Gi, found 24Gi".
    if expected.min_memory and not hardware.meets(found.memory, declared=expected.min_memory):
        wanted, memory = _size(expected.min_memory), _size(found.memory)
        problems.append(f"declared at least {wanted} of memory, found {memory}")
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
        large = [g for g in fitting if hardware.meets(g.vram_total, declared=gpu.min_vram)]
        if len(large) < gpu.count:
            wanted = _size(gpu.min_vram)
            problems.append(f"declared at least {wanted} of VRAM per {named} GPU, found {seen}")
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
    return ", ".join(f"{g.model} with {_size(g.vram_total)}" for g in gpus)


def _size(quantity: str) -> str:
    return hardware.human(quantity, exact=True)


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
    ready: _Verdict | None = None,
    matches: _Verdict | None = None,
    degraded: _Verdict | None = None,
) -> NebulaNodeStatus:
    found = list(status.conditions)
    verdicts = (
        (conditions.READY, ready),
        (HARDWARE_MATCHES, matches),
        (conditions.DEGRADED, degraded),
    )
    for type_, value in verdicts:
        if value is not None:
            found = conditions.set_condition(
                found, type_=type_, status=value[0], reason=value[1], message=value[2],
                now=now, generation=generation,
            )  # fmt: skip
    update: dict[str, object] = {"conditions": found}
    if generation is not None:
        update["observed_generation"] = generation
    return status.model_copy(update=update)
