"""``NebulaNode``: a machine of the homelab, its role, its addresses, the hardware it should have.

Pure data, no I/O. The spec is what the user expects; the status is what the node agent found
(CPU, RAM, disks, GPUs, addresses), what it could not read, and whether the two match.
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
    """Network the address belongs to: tailscale, lan or public."""
    address: fields.HostOrIp
    """IP address or DNS name on that network, e.g. home-ubuntu.tail1234.ts.net."""


class GpuExpectation(base.Model):
    """The GPU the machine should have; the node controller compares it with what is detected."""

    vendor: GpuVendor
    """GPU maker: nvidia, amd or intel."""
    model: str | None = None
    """Part of the detected GPU name, e.g. "RTX 3060"; unset: any model."""
    count: int = pydantic.Field(default=1, ge=1, le=16)
    """How many such GPUs the machine should have (1-16, default 1)."""
    min_vram: fields.Quantity | None = None
    """Minimum VRAM per GPU, as a quantity such as 12Gi; unset: any amount."""


class HardwareExpectation(base.Model):
    """What the machine should at least offer; empty means "whatever it has"."""

    arch: Literal["amd64", "arm64"] | None = None
    """CPU architecture the machine should have: amd64 or arm64; unset: any."""
    min_cpus: int | None = pydantic.Field(default=None, ge=1)
    """Minimum number of logical CPUs; unset: no minimum."""
    min_memory: fields.Quantity | None = None
    """Minimum RAM, as a quantity such as 32Gi; unset: no minimum."""
    gpu: GpuExpectation | None = None
    """The GPU the machine should have; unset: no GPU is expected (one is still allowed)."""


class AgentSettings(base.Model):
    """How the node agent on this machine reports."""

    heartbeat_interval: fields.Duration = "15s"
    """How often the agent reports, as a duration such as 15s (default) or 1m."""
    port: int = pydantic.Field(default=9460, ge=1, le=65535)
    """TCP port of the node agent on this machine (default 9460)."""


class NebulaNodeSpec(base.Spec):
    """A machine: its role, how workloads run there, how to reach it, what hardware it has."""

    role: NodeRole
    """What the machine is for: control, worker, ai (GPU inference) or storage."""
    runtime: Literal["k3s", "docker"]
    """How workloads run: k3s (a cluster node) or docker (the agent drives Docker)."""
    os: Literal["linux", "windows"] = "linux"
    """Operating system: linux (default) or windows (needs runtime docker)."""
    description: str = ""
    """Free text for people, e.g. the machine's make and where it stands."""
    addresses: list[NodeAddress] = pydantic.Field(min_length=1)
    """Ways to reach the machine, one per type; services use these, never literal IPs."""
    kubernetes_node_name: fields.DnsSubdomain | None = None
    """Name of the Kubernetes Node (k3s only); unset: metadata.name."""
    hardware: HardwareExpectation = pydantic.Field(default_factory=HardwareExpectation)
    """What the machine should at least offer; empty means "whatever it has"."""
    labels: dict[fields.LabelKey, fields.LabelValue] = pydantic.Field(default_factory=dict)
    """Labels that placement nodeSelectors match (not copied to the Kubernetes Node)."""
    agent: AgentSettings = pydantic.Field(default_factory=AgentSettings)
    """How the node agent on this machine reports."""
    maintenance: bool = False
    """When true, nothing new is placed here (like kubectl cordon)."""

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
    """CPU model name as the operating system reports it."""
    cores: int = pydantic.Field(ge=0)
    """Number of logical cores (hardware threads)."""
    physical_cores: int | None = pydantic.Field(default=None, ge=0)
    """Number of physical cores; unset when the system does not tell."""


class DiskInfo(base.Model):
    """One mounted file system."""

    mount: str
    """Where the file system is mounted, e.g. / or /mnt/data."""
    total: fields.Quantity
    """Size of the file system, e.g. 931Gi."""
    free: fields.Quantity
    """Space still free on it."""


class GpuInfo(base.Model):
    """One detected GPU."""

    index: int = pydantic.Field(default=0, ge=0)
    """Position of the GPU on the machine, counting from 0."""
    vendor: GpuVendor
    """GPU maker: nvidia, amd or intel."""
    model: str
    """GPU name as the driver reports it, e.g. NVIDIA GeForce RTX 3060."""
    vram_total: fields.Quantity
    """Total VRAM, e.g. 12Gi."""
    vram_used: fields.Quantity | None = None
    """VRAM in use at the last report; unset when the driver does not tell."""
    driver: str | None = None
    """Version of the GPU driver."""
    cuda_version: str | None = None
    """CUDA version the driver supports (NVIDIA only)."""
    utilization: int | None = pydantic.Field(default=None, ge=0, le=100)
    """GPU load in percent (0-100) at the last report."""
    temperature: int | None = None
    """GPU temperature in degrees Celsius at the last report."""


class Hardware(base.Model):
    """What the node agent detected on the machine."""

    cpu: CpuInfo
    """The detected CPU."""
    memory: fields.Quantity
    """Total RAM, e.g. 62Gi."""
    disks: list[DiskInfo] = pydantic.Field(default_factory=list)
    """Mounted file systems with their size and free space."""
    gpus: list[GpuInfo] = pydantic.Field(default_factory=list)
    """Detected GPUs; empty when there is none."""
    os: str = ""
    """Operating system and version, e.g. "Ubuntu 24.04.1 LTS", "Windows 11 Pro 23H2"."""
    kernel: str = ""
    """Kernel version."""
    arch: str = ""
    """CPU architecture as detected."""
    addresses: list[str] = pydantic.Field(default_factory=list)
    """IP addresses found on the machine."""
    endpoints: dict[str, bool] = pydantic.Field(default_factory=dict)
    """Which local endpoints answered, e.g. {docker: true, ollama: true, comfyui: false}."""


class NebulaNodeStatus(conditions.Status):
    """The machine as last reported by its agent, and summary fields for ``kubectl get``."""

    hardware: Hardware | None = None
    """What the agent detected at its last report."""
    last_heartbeat: datetime.datetime | None = None
    """When the agent last reported; an old time means the machine may be down."""
    agent_version: str | None = None
    """Version of the node agent running on the machine."""
    problems: list[str] = pydantic.Field(default_factory=list)
    """Probes that failed at the agent's last report, with why; empty when all answered."""
    vram_tier: VramTier | None = None
    """VRAM class of the machine: cpu (no usable GPU), <4Gi, 4-8Gi or 8Gi+."""
    # One-line summaries for printer columns (JSONPath cannot aggregate lists).
    gpu: str | None = None
    """Detected GPUs in one line, for kubectl get."""
    vram: str | None = None
    """VRAM of the detected GPUs in one line, for kubectl get."""
    cpu: str | None = None
    """Detected CPU in one line, for kubectl get."""
    memory: str | None = None
    """Detected RAM in one line, for kubectl get."""
    address: str | None = None
    """Main address of the machine, for kubectl get."""


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
