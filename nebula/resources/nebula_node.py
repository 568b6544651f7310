"""``NebulaNode``: a machine of the homelab, its role, its addresses, the hardware it should have.

Pure data, no I/O. The spec is what the user expects; the status is what the node agent found
(CPU, RAM, disks, GPUs, addresses) and whether the two match.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import ClassVar, Literal

import pydantic

from nebula.resources import base, conditions, fields

__all__ = [
    "VRAM_TIERS",
    "AgentSettings",
    "CpuInfo",
    "DiskInfo",
    "GpuExpectation",
    "GpuInfo",
    "Hardware",
    "HardwareExpectation",
    "NebulaNode",
    "NebulaNodeSpec",
    "NebulaNodeStatus",
    "NodeAddress",
    "NodeRole",
    "VramTier",
]

NodeRole = Literal["control", "worker", "ai", "storage"]
"""control: runs Nebula's own control plane and public edge (dashboard, bots, Caddy);
worker: general services; ai: GPU inference (Ollama, ComfyUI); storage: databases and files."""

VramTier = Literal["cpu", "<4Gi", "4-8Gi", "8Gi+"]
VRAM_TIERS: tuple[VramTier, ...] = ("cpu", "<4Gi", "4-8Gi", "8Gi+")
GpuVendor = Literal["nvidia", "amd", "intel"]


class NodeAddress(base.Model):
    """One way to reach the machine; services find each other through these, never literal IPs."""

    type: Literal["tailscale", "lan", "public"]
    address: fields.HostOrIp


class GpuExpectation(base.Model):
    """The GPU the machine should have; the node controller compares it with what is detected."""

    vendor: GpuVendor
    model: str | None = None  # a part of the detected name, e.g. "RTX 3060"
    count: int = pydantic.Field(default=1, ge=1, le=16)
    min_vram: fields.Quantity | None = None  # per GPU


class HardwareExpectation(base.Model):
    """What the machine should at least offer; empty means "whatever it has"."""

    arch: Literal["amd64", "arm64"] | None = None
    min_cpus: int | None = pydantic.Field(default=None, ge=1)
    min_memory: fields.Quantity | None = None
    gpu: GpuExpectation | None = None  # None: no GPU is expected (not: no GPU allowed)


class AgentSettings(base.Model):
    """How the node agent on this machine reports."""

    heartbeat_interval: fields.Duration = "15s"
    port: int = pydantic.Field(default=9460, ge=1, le=65535)


class NebulaNodeSpec(base.Spec):
    """A machine: its role, how workloads run there, how to reach it, what hardware it has."""

    role: NodeRole
    runtime: Literal["k3s", "docker"]  # k3s: a cluster node; docker: the agent drives Docker
    os: Literal["linux", "windows"] = "linux"
    description: str = ""
    addresses: list[NodeAddress] = pydantic.Field(min_length=1)
    kubernetes_node_name: fields.DnsSubdomain | None = None  # k3s only; default: metadata.name
    hardware: HardwareExpectation = pydantic.Field(default_factory=HardwareExpectation)
    labels: dict[fields.LabelKey, fields.LabelValue] = pydantic.Field(
        default_factory=dict
    )  # for placement, and on the k8s Node
    agent: AgentSettings = pydantic.Field(default_factory=AgentSettings)
    maintenance: bool = False  # true: nothing new is placed here (like kubectl cordon)

    def issues(self) -> Iterator[base.Issue]:
        """Contradictions between runtime, OS and addresses."""
        if self.kubernetes_node_name and self.runtime != "k3s":
            yield base.Issue(
                ("kubernetesNodeName",), "only a node with runtime 'k3s' has a Kubernetes Node"
            )
        if self.os == "windows" and self.runtime == "k3s":
            yield base.Issue(
                ("runtime",), "k3s does not run Windows nodes: use runtime 'docker' for Windows"
            )
        yield from base.unique([a.type for a in self.addresses], "addresses", "address type")


class CpuInfo(base.Model):
    """The detected CPU."""

    model: str = ""
    cores: int = pydantic.Field(ge=0)  # logical
    physical_cores: int | None = pydantic.Field(default=None, ge=0)


class DiskInfo(base.Model):
    """One mounted file system."""

    mount: str
    total: fields.Quantity
    free: fields.Quantity


class GpuInfo(base.Model):
    """One detected GPU."""

    index: int = pydantic.Field(default=0, ge=0)
    vendor: GpuVendor
    model: str
    vram_total: fields.Quantity
    vram_used: fields.Quantity | None = None
    driver: str | None = None
    cuda_version: str | None = None
    utilization: int | None = pydantic.Field(default=None, ge=0, le=100)  # percent
    temperature: int | None = None  # degrees Celsius


class Hardware(base.Model):
    """What the node agent detected on the machine."""

    cpu: CpuInfo
    memory: fields.Quantity
    disks: list[DiskInfo] = pydantic.Field(default_factory=list)
    gpus: list[GpuInfo] = pydantic.Field(default_factory=list)
    os: str = ""  # e.g. "Ubuntu 24.04.1 LTS", "Windows 11 Pro 23H2"
    kernel: str = ""
    arch: str = ""
    addresses: list[str] = pydantic.Field(default_factory=list)
    # Which local endpoints answered: docker, ollama, comfyui.
    endpoints: dict[str, bool] = pydantic.Field(default_factory=dict)


class NebulaNodeStatus(conditions.Status):
    """The machine as last reported by its agent, and summary fields for ``kubectl get``."""

    hardware: Hardware | None = None
    last_heartbeat: datetime.datetime | None = None
    agent_version: str | None = None
    vram_tier: VramTier | None = None
    # One-line summaries for printer columns (JSONPath cannot aggregate lists).
    gpu: str | None = None
    vram: str | None = None
    cpu: str | None = None
    memory: str | None = None
    address: str | None = None


class NebulaNode(base.Resource):
    """A machine of the homelab (cluster-scoped)."""

    info: ClassVar[base.KindInfo] = base.KindInfo(
        plural="nebulanodes",
        scope="Cluster",
        short_names=("nn",),
        description="A machine of the homelab: role, addresses, expected hardware.",
        columns=(
            base.PrinterColumn("Role", ".spec.role"),
            base.PrinterColumn("GPU", ".status.gpu"),
            base.PrinterColumn("VRAM", ".status.vram"),
            base.PrinterColumn("CPU", ".status.cpu", priority=1),
            base.PrinterColumn("RAM", ".status.memory", priority=1),
            base.PrinterColumn("Address", ".status.address", priority=1),
            base.PrinterColumn("Agent", ".status.agentVersion", priority=1),
        ),
    )

    kind: Literal["NebulaNode"] = "NebulaNode"
    spec: NebulaNodeSpec
    status: NebulaNodeStatus | None = None
