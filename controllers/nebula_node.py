"""The NebulaNode reconciler: a declared machine, compared with what its agent last reported.

Run by both runtimes through :class:`NebulaNodeKind` (listed in ``kinds.py``; woken by every
heartbeat) with the node, its heartbeat (matched by name or address, see
``nebula.heartbeats.match``) and the time. :func:`reconcile` reads top to bottom: no heartbeat →
stale heartbeat → the hardware as reported → how it compares with the declared expectations →
the labels a Kubernetes Node gets; it writes nothing. On k3s the kind then makes the node's
``Node`` carry those labels (:meth:`NebulaNodeKind.reconcile`); the runtime writes the status.

Three conditions: ``Ready`` says the agent reports (within three of its own intervals);
``HardwareMatches`` compares the declared hardware with what was found; ``Degraded`` is what a
person should look at: True when the hardware differs or a probe of the agent failed (a driver
that does not answer), with both in its message.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import logging
from collections.abc import Mapping

from controllers import outcomes, reconciling
from nebula import errors, hardware, heartbeats
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
    "DECLARED_LABELS",
    "DIFFERS",
    "HARDWARE_DIFFERS",
    "HARDWARE_MATCHES",
    "HEARTBEAT_STALE",
    "LABEL_PREFIX",
    "MATCHES",
    "MISSED_HEARTBEATS",
    "NODE_LABELLED",
    "NODE_NOT_FOUND",
    "NO_HARDWARE",
    "NO_HEARTBEAT",
    "REPORTING",
    "NebulaNodeKind",
    "NodeOutcome",
    "differences",
    "label_patch",
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
NODE_NOT_FOUND = "NodeNotFound"
"""Event reason: a k3s NebulaNode has no Kubernetes Node of its name to label."""
NODE_LABELLED = "NodeLabelled"
"""Event reason: the labels of a NebulaNode's Kubernetes Node were changed."""
DECLARED_LABELS = "nebula.dev/declared-labels"
"""Node annotation: the keys of the labels set from ``spec.labels`` (comma-separated), so that
one removed from the spec is removed from the Node, and no other."""
log = logging.getLogger("nebula.nebula_node")
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


class NebulaNodeKind(reconciling.Kind[NebulaNode, NebulaNodeStatus, Heartbeat]):
    """NebulaNodes as the runtimes run them: compared with the heartbeat that matches them,
    their k3s Node labelled where there is a cluster."""

    model = NebulaNode
    status_model = NebulaNodeStatus
    wakes_on = (heartbeats.CHANNEL,)

    def __init__(self, services: reconciling.Services) -> None:
        super().__init__(services)
        self._nodes = services.node_labels
        self._missing: dict[str, str] = {}  # NebulaNode → the Node found missing (told once)

    def observe(self, resource: NebulaNode) -> Heartbeat | None:
        """The latest heartbeat that counts for the node (by name, else by address)."""
        return heartbeats.match(resource, self.services.heartbeats.all())

    def reconcile(
        self,
        resource: NebulaNode,
        observed: Heartbeat | None,
        *,
        previous: NebulaNodeStatus | None,
        now: datetime.datetime,
        attempt: int,
        progress: reconciling.Progress,
    ) -> reconciling.Result[NebulaNodeStatus]:
        """The node's status from its heartbeat; then, on k3s, its Node's labels."""
        outcome = reconcile(resource, heartbeat=observed, now=now, previous=previous)
        events: tuple[outcomes.Event, ...] = ()
        # Only a k3s node whose hardware is known has labels; None leaves the Node alone.
        if self._nodes is not None and outcome.labels is not None:
            name = resource.spec.kubernetes_node_name or resource.metadata.name
            events = self._label(resource.metadata.name, name, outcome)
        return reconciling.Result(outcome.status, outcome.retry_after, events)

    def _label(self, node: str, name: str, outcome: NodeOutcome) -> tuple[outcomes.Event, ...]:
        """Makes the Node ``name`` carry exactly the outcome's labels among Nebula's; the
        annotation :data:`DECLARED_LABELS` remembers which came from ``spec.labels``."""
        assert self._nodes is not None and outcome.labels is not None
        patch: dict[str, str | None] = {}
        try:
            found = self._nodes.read(name)
            if found is not None:
                before = frozenset(filter(None, found[1].get(DECLARED_LABELS, "").split(",")))
                patch = label_patch(found[0], outcome.labels, declared_before=before)
                noted = ",".join(sorted(outcome.declared)) or None
                note = {DECLARED_LABELS: noted} if before != outcome.declared else {}
                if patch or note:
                    self._nodes.write(name, patch, annotations=note)
        # Deleted between the read and the patch: the same as never there.
        except errors.ResourceNotFound:
            found = None
        # RBAC forbids it, or the API server did not answer: the next look tries again.
        except errors.NebulaError as failure:
            log.warning("the labels of Node %s were not set: %s", name, failure)
            return ()
        if found is None:
            # Told once per absence, not at every heartbeat; the machine itself is fine.
            if self._missing.get(node) == name:
                return ()
            self._missing[node] = name
            # A machine not joined to k3s yet, or a typo in kubernetesNodeName.
            message = (
                f"no Kubernetes Node {name!r} to label: join the machine to k3s, or set "
                "spec.kubernetesNodeName to its Node's name (kubectl get nodes)"
            )
            return (outcomes.Event("Warning", NODE_NOT_FOUND, message),)
        self._missing.pop(node, None)
        if not patch:
            return ()
        changes = ", ".join(
            f"{key}={value}" if value is not None else f"-{key}"
            for key, value in sorted(patch.items())
        )
        return (outcomes.Event("Normal", NODE_LABELLED, f"Node {name} labelled: {changes}"),)


def label_patch(
    current: Mapping[str, str],
    wanted: Mapping[str, str],
    *,
    declared_before: frozenset[str] = frozenset(),
) -> dict[str, str | None]:
    """The labels to change so that, among Nebula's own (``nebula.dev/gpu.*``,
    ``nebula.dev/vram-tier``, and those ``spec.labels`` declared last time), a Node carries
    exactly ``wanted``; None removes a label.

    Empty when the Node is already right. Every other label is someone else's and left alone.
    """
    patch: dict[str, str | None] = {
        key: value for key, value in wanted.items() if current.get(key) != value
    }
    for key in current:
        ours = key.startswith(f"{LABEL_PREFIX}gpu.") or key == f"{LABEL_PREFIX}vram-tier"
        if (ours or key in declared_before) and key not in wanted:
            patch[key] = None
    return patch
