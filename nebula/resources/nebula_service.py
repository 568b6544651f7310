"""``NebulaService``: a workload (dashboard, bot, database, Ollama, ComfyUI) and where it runs.

Pure data, no I/O. Secrets enter only as :class:`~nebula.resources.base.SecretKeyRef`; an
environment variable whose name says it is a secret must not carry a literal value.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, ClassVar, Literal

import pydantic

from nebula.resources import base, conditions, fields

__all__ = [
    "Domain",
    "EnvVar",
    "HealthCheck",
    "HttpCheck",
    "NebulaService",
    "NebulaServiceSpec",
    "NebulaServiceStatus",
    "Placement",
    "ServicePort",
    "ServiceResources",
    "TcpCheck",
    "Volume",
]

_SECRET_NAME_RE = re.compile(
    r"(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|PRIVATE_?KEY|CREDENTIAL)", re.IGNORECASE
)
PortRef = int | str  # a port number, or the name of a declared port


class ServicePort(base.Model):
    """A port the workload listens on."""

    name: str = pydantic.Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=15)
    """Name of the port (at most 15 characters), e.g. http; checks and domains use it."""
    port: int = pydantic.Field(ge=1, le=65535)
    """Port number the workload listens on (1-65535)."""
    protocol: Literal["TCP", "UDP"] = "TCP"
    """TCP (default) or UDP."""


class EnvVar(base.Model):
    """One environment variable: a literal value, or a key of a Secret."""

    name: str = pydantic.Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Variable name, e.g. DATABASE_URL."""
    value: str | None = None
    """Literal value (quote numbers, e.g. "5000"); never a secret: use secretRef."""
    secret_ref: base.SecretKeyRef | None = None
    """Key of a Secret holding the value; set this or value, not both."""

    def issues(self) -> Iterator[base.Issue]:
        """Neither or both of value and secretRef, and a secret written in clear."""
        if self.value is None and self.secret_ref is None:
            yield base.Issue(("value",), f"env {self.name}: set 'value' or 'secretRef'")
        elif self.value is not None and self.secret_ref is not None:
            yield base.Issue(
                ("secretRef",), f"env {self.name}: set 'value' or 'secretRef', not both"
            )
        elif self.value and _SECRET_NAME_RE.search(self.name):
            yield base.Issue(
                ("value",),
                f"env {self.name} looks like a secret: secrets never go into Git, "
                "use secretRef: {name: <secret>, key: <key>}",
            )


class HttpCheck(base.Model):
    """Healthy when an HTTP GET answers 2xx or 3xx."""

    path: str = pydantic.Field(default="/", pattern=r"^/")
    """Path to request, e.g. /healthz (default /)."""
    port: PortRef
    """Port to probe: a number, or the name of a declared port."""
    scheme: Literal["http", "https"] = "http"
    """http (default) or https."""


class TcpCheck(base.Model):
    """Healthy when a TCP connection opens."""

    port: PortRef
    """Port to connect to: a number, or the name of a declared port."""


class HealthCheck(base.Model):
    """How to tell the workload is healthy: exactly one of ``http`` or ``tcp``."""

    http: HttpCheck | None = None
    """Probe with an HTTP GET; healthy on a 2xx or 3xx answer."""
    tcp: TcpCheck | None = None
    """Probe by opening a TCP connection."""
    interval: fields.Duration = "30s"
    """How often to probe, e.g. 30s (default)."""
    timeout: fields.Duration = "5s"
    """How long one probe may take, e.g. 5s (default)."""
    failure_threshold: int = pydantic.Field(default=3, ge=1, le=100)
    """Failed probes in a row before the workload is unhealthy (default 3)."""

    @pydantic.model_validator(mode="after")
    def _one_probe(self) -> HealthCheck:
        if (self.http is None) == (self.tcp is None):
            raise ValueError("set exactly one of 'http' or 'tcp'")
        return self

    @property
    def port(self) -> PortRef:
        """The port the probe connects to."""
        probe = self.http or self.tcp
        assert probe is not None  # guaranteed by _one_probe
        return probe.port


class Placement(base.Model):
    """Where the workload may run: a named node, nodes with labels, and GPU needs."""

    node: fields.DnsSubdomain | None = None
    """Run only on this NebulaNode, by name."""
    node_selector: dict[fields.LabelKey, fields.LabelValue] = pydantic.Field(default_factory=dict)
    """Run only on NebulaNodes whose spec.labels include all of these."""
    gpu: bool = False
    """When true, run only on nodes with a GPU."""
    min_vram: fields.Quantity | None = None
    """Run only on nodes with at least this much VRAM, e.g. 8Gi; needs gpu: true."""

    @pydantic.model_validator(mode="after")
    def _node_or_selector(self) -> Placement:
        if self.node and self.node_selector:
            raise ValueError("set 'node' or 'nodeSelector', not both")
        if self.min_vram and not self.gpu:
            raise ValueError("'minVram' needs 'gpu: true'")
        return self


class Domain(base.Model):
    """A public name the service is published under (through Caddy)."""

    host: fields.Hostname
    """Public DNS name, e.g. dash.example.com; *.example.com is allowed."""
    port: PortRef | None = None
    """Port to send traffic to, by number or name; unset: the first declared port."""
    path: str = pydantic.Field(default="/", pattern=r"^/")
    """Path prefix routed to the service, e.g. /api (default /)."""
    tls: bool = True
    """When true (default), serve it over HTTPS."""


def _check_mount_path(value: str) -> str:
    if not (value.startswith("/") or re.match(r"^[A-Za-z]:[\\/]", value)):
        raise ValueError(f"mount path {value!r} is not absolute: start it with / (C:\\ on Windows)")
    return value


class Volume(base.Model):
    """Persistent data kept on the node the workload runs on."""

    name: fields.DnsLabel
    """Name of the volume, unique within the service."""
    mount_path: Annotated[
        str,
        pydantic.AfterValidator(_check_mount_path),
        pydantic.WithJsonSchema({"type": "string", "pattern": r"^(/|[A-Za-z]:[\\/])"}),
    ]
    """Absolute path inside the container, e.g. /var/lib/postgresql/data."""
    size: fields.Quantity
    """Space the data needs, e.g. 50Gi."""


class ServiceResources(base.Model):
    """What the workload asks for."""

    cpu: fields.Quantity | None = None
    """CPUs the workload asks for, e.g. 500m or "2"; unset: no request."""
    memory: fields.Quantity | None = None
    """Memory the workload asks for, e.g. 512Mi; unset: no request."""
    gpus: int = pydantic.Field(default=0, ge=0, le=16)
    """Whole GPUs the workload asks for (default 0)."""


class NebulaServiceSpec(base.Spec):
    """A workload: image, ports, environment, placement, health and public names."""

    image: fields.ImageRef
    """Container image, e.g. ghcr.io/acme/dashboard:1.4.2 or redis:7."""
    description: str = ""
    """Free text for people about what the service is for."""
    command: list[str] = pydantic.Field(default_factory=list)
    """Replaces the image's entrypoint; empty keeps it."""
    args: list[str] = pydantic.Field(default_factory=list)
    """Arguments to the command; empty keeps the image's own."""
    replicas: int = pydantic.Field(default=1, ge=0, le=50)
    """How many copies to run (0-50, default 1)."""
    ports: list[ServicePort] = pydantic.Field(default_factory=list)
    """Ports the workload listens on."""
    env: list[EnvVar] = pydantic.Field(default_factory=list)
    """Environment variables, each a literal value or a key of a Secret."""
    uses: list[fields.DnsLabel] = pydantic.Field(default_factory=list)
    """NebulaServices this one calls; their URLs are injected."""
    placement: Placement = pydantic.Field(default_factory=Placement)
    """Where it may run: a named node, nodes with labels, GPU needs; default anywhere."""
    resources: ServiceResources = pydantic.Field(default_factory=ServiceResources)
    """CPU, memory and GPUs the workload asks for."""
    health_check: HealthCheck | None = None
    """How to tell it is healthy: exactly one of http or tcp; unset: no check."""
    domains: list[Domain] = pydantic.Field(default_factory=list)
    """Public names the service is published under (through Caddy)."""
    volumes: list[Volume] = pydantic.Field(default_factory=list)
    """Persistent data kept on the node the workload runs on."""

    def issues(self) -> Iterator[base.Issue]:
        """Repeated names, and ports referred to but not declared."""
        yield from base.unique([p.name for p in self.ports], "ports", "port name")
        yield from base.unique([(p.port, p.protocol) for p in self.ports], "ports", "port")
        yield from base.unique([e.name for e in self.env], "env", "variable")
        yield from base.issues_of(self.env, "env")
        yield from base.unique([v.name for v in self.volumes], "volumes", "volume")
        yield from base.unique([v.mount_path for v in self.volumes], "volumes", "mount path")
        yield from base.unique(self.uses, "uses", "service")
        yield from base.unique([d.host for d in self.domains], "domains", "host")
        if self.health_check:
            # The port sits under the probe (healthCheck.http.port), which is where to point.
            probe = "http" if self.health_check.http else "tcp"
            path = ("healthCheck", probe, "port")
            yield from self._port_declared(self.health_check.port, path)
        for index, domain in enumerate(self.domains):
            if domain.port is not None:
                yield from self._port_declared(domain.port, ("domains", index, "port"))
            elif not self.ports:
                yield base.Issue(("domains", index), "a domain needs a declared port")

    def _port_declared(self, ref: PortRef, path: base.FieldPath) -> Iterator[base.Issue]:
        known: set[PortRef] = {p.name for p in self.ports} | {p.port for p in self.ports}
        if ref not in known:
            declared = ", ".join(f"{p.name} ({p.port})" for p in self.ports) or "none"
            yield base.Issue(path, f"port {ref!r} is not declared in ports (declared: {declared})")


class NebulaServiceStatus(conditions.Status):
    """Where the workload runs and whether it answers its health check."""

    nodes: list[conditions.PlacementStatus] = pydantic.Field(default_factory=list)
    """Per node: whether the workload runs there."""
    ready_replicas: int = 0
    """How many copies are running and healthy."""
    image: str | None = None
    """The image actually running."""
    url: str | None = None
    """How other services reach it."""


class NebulaService(base.Resource):
    """A workload of the homelab."""

    info: ClassVar[base.KindInfo] = base.KindInfo(
        plural="nebulaservices",
        scope="Namespaced",
        short_names=("nsvc",),
        description="A workload: image, ports, placement, health check, domains.",
        columns=(
            base.PrinterColumn("Image", ".spec.image"),
            base.PrinterColumn("Replicas", ".spec.replicas", "integer"),
            base.PrinterColumn("Ready Replicas", ".status.readyReplicas", "integer", priority=1),
            base.PrinterColumn("Domain", ".spec.domains[0].host"),
            base.PrinterColumn("URL", ".status.url", priority=1),
        ),
    )

    kind: Literal["NebulaService"] = "NebulaService"
    spec: NebulaServiceSpec
    status: NebulaServiceStatus | None = None

    def issues(self) -> Iterator[base.Issue]:
        """The spec's issues, and a name that must also be a DNS label (it becomes a hostname)."""
        try:
            fields.check_dns_label(self.metadata.name)
        except ValueError as error:
            yield base.Issue(("metadata", "name"), f"{error} (a service name is a hostname)")
        if self.metadata.name in self.spec.uses:
            yield base.Issue(("spec", "uses"), "a service cannot use itself")
        yield from super().issues()
