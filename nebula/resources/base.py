"""What every kind shares: the model base, object metadata, the resource envelope, and issues.

Pure data, no I/O. A kind module defines ``<Kind>Spec`` and ``<Kind>Status`` and a ``<Kind>``
resource class with its CRD facts (:class:`KindInfo`); the registry in ``__init__`` lists them.
Checks that need more than one field (a graph's links, a pipeline's ``needs``) are ``issues()``
methods that return every problem with its field path, so a loader can point at the line.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterator
from typing import Any, ClassVar, Literal, NamedTuple

import pydantic
import pydantic.alias_generators

from nebula.resources import fields

__all__ = [
    "API_VERSION",
    "GROUP",
    "VERSION",
    "Issue",
    "KindInfo",
    "Model",
    "ObjectMeta",
    "PrinterColumn",
    "Resource",
    "ResourceKey",
    "SecretKeyRef",
    "Spec",
    "dotted",
    "find_cycle",
    "issues_of",
    "unique",
]

GROUP = "nebula.dev"
VERSION = "v1alpha1"
API_VERSION: Literal["nebula.dev/v1alpha1"] = "nebula.dev/v1alpha1"

FieldPath = tuple[str | int, ...]


def dotted(path: FieldPath) -> str:
    """A field path as users write it: ``spec.placement.nodes[0]``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


class Model(pydantic.BaseModel):
    """Base of every spec and status part: camelCase on the wire, unknown fields refused."""

    model_config = pydantic.ConfigDict(
        alias_generator=pydantic.alias_generators.to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
    )


class Spec(Model):
    """Base of every kind's spec."""

    def issues(self) -> Iterator[Issue]:
        """Problems that span fields, paths relative to the spec; none unless a kind adds some."""
        return iter(())


@dataclasses.dataclass(frozen=True)
class Issue:
    """A problem found by a check that spans fields; ``path`` is relative to the checked object."""

    path: FieldPath
    message: str

    def under(self, *prefix: str | int) -> Issue:
        """The same issue seen from an enclosing object."""
        return Issue((*prefix, *self.path), self.message)


def issues_of(items: list[Any], prefix: str) -> Iterator[Issue]:
    """The issues of every item of a list field that has an ``issues()`` method."""
    for index, item in enumerate(items):
        for issue in item.issues():
            yield issue.under(prefix, index)


def unique(values: list[Any], path: str, what: str) -> Iterator[Issue]:
    """One issue per repeated value in a list field, pointing at the repetition."""
    seen: set[Any] = set()
    for index, value in enumerate(values):
        if value in seen:
            yield Issue((path, index), f"duplicate {what} {value!r}")
        seen.add(value)


def find_cycle(edges: dict[str, list[str]]) -> list[str] | None:
    """A cycle of a directed graph given as node -> successors, first node repeated; or None."""
    # Iterative depth-first search: graphs from users may be deep, recursion is not safe.
    done: set[str] = set()
    for start in edges:
        if start in done:
            continue
        path, on_path, stack = [start], {start}, [iter(edges[start])]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                done.add(path[-1])
                on_path.discard(path.pop())
            elif nxt in on_path:
                return [*path[path.index(nxt) :], nxt]
            elif nxt not in done:
                path.append(nxt)
                on_path.add(nxt)
                stack.append(iter(edges[nxt]))
    return None


class SecretKeyRef(Model):
    """One key of a Kubernetes Secret; the value never appears in Git.

    In the embedded runtime the same reference reads the environment variable
    ``NEBULA_SECRET_<NAME>_<KEY>`` (upper case, other characters as ``_``).
    """

    name: fields.DnsSubdomain
    """Name of the Secret, in the same namespace as the object referring to it."""
    key: str = pydantic.Field(pattern=r"^[-._a-zA-Z0-9]+$", max_length=253)
    """Key inside the Secret whose value is used, e.g. token."""


class ObjectMeta(Model):
    """The metadata a user writes, plus what the API server or the store adds."""

    name: fields.DnsSubdomain
    """Name of the object, unique per kind and namespace; other objects refer to it."""
    namespace: fields.DnsLabel | None = None
    """Namespace of the object; unset for cluster-scoped kinds such as NebulaNode."""
    labels: dict[fields.LabelKey, fields.LabelValue] = pydantic.Field(default_factory=dict)
    """Key-value labels to select and group objects, e.g. nebula.dev/site: home."""
    annotations: dict[str, str] = pydantic.Field(default_factory=dict)
    """Free-form key-value notes for tools and people; never used to select."""
    # Written by the API server or the PostgreSQL store, never in Git.
    uid: str | None = None
    """Unique id given to the object when it is created."""
    resource_version: str | None = None
    """Opaque version that changes on every write (optimistic concurrency)."""
    generation: int | None = None
    """Counter that goes up on every change to spec."""
    creation_timestamp: datetime.datetime | None = None
    """When the object was created."""
    deletion_timestamp: datetime.datetime | None = None
    """When deletion was requested; the object waits for its finalizers."""
    finalizers: list[str] = pydantic.Field(default_factory=list)
    """Cleanups that must finish before the object is deleted."""
    managed_fields: list[dict[str, Any]] | None = None
    """Which manager owns which fields under server-side apply."""


class ResourceKey(NamedTuple):
    """Identifies one object: kind, namespace (None when cluster-scoped) and name."""

    kind: str
    namespace: str | None
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind}/{where}{self.name}"


@dataclasses.dataclass(frozen=True)
class PrinterColumn:
    """An ``additionalPrinterColumns`` entry of the CRD (what ``kubectl get`` shows)."""

    name: str
    json_path: str
    type: Literal["string", "integer", "number", "boolean", "date"] = "string"
    priority: int = 0  # 1: only with `kubectl get -o wide`
    description: str = ""


READY_COLUMN = PrinterColumn(
    "Ready", '.status.conditions[?(@.type=="Ready")].status', description="Ready condition"
)
STATUS_COLUMN = PrinterColumn(
    "Status",
    '.status.conditions[?(@.type=="Ready")].message',
    priority=1,
    description="Why the object is or is not Ready",
)
AGE_COLUMN = PrinterColumn("Age", ".metadata.creationTimestamp", "date")


@dataclasses.dataclass(frozen=True)
class KindInfo:
    """The facts the CRD and ``kubectl`` need about a kind."""

    plural: str
    scope: Literal["Namespaced", "Cluster"]
    short_names: tuple[str, ...]
    columns: tuple[PrinterColumn, ...]  # between NAME and READY/STATUS/AGE
    description: str

    @property
    def printer_columns(self) -> tuple[PrinterColumn, ...]:
        """Every column kubectl prints after NAME, READY and AGE included."""
        return (*self.columns, READY_COLUMN, STATUS_COLUMN, AGE_COLUMN)


class Resource(Model):
    """The envelope of every kind; subclasses narrow ``kind``, ``spec`` and ``status``."""

    info: ClassVar[KindInfo]

    api_version: Literal["nebula.dev/v1alpha1"] = API_VERSION
    kind: str
    metadata: ObjectMeta
    spec: Any
    status: Any = None

    @property
    def key(self) -> ResourceKey:
        """The kind, namespace and name identifying this object."""
        return ResourceKey(self.kind, self.metadata.namespace, self.metadata.name)

    def issues(self) -> Iterator[Issue]:
        """Every problem that spans fields, with paths from the document root."""
        for issue in self.spec.issues():
            yield issue.under("spec")
