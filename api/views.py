"""What the web runtime shows of the store: response models, and how stored objects become them.

Shared by the HTML pages (``routes/overview.py``, ``routes/kinds.py``) and the JSON API
(``routes/resources.py``, ``routes/sync.py``), so a page and its JSON never disagree. Stored
documents are parsed here, at the boundary, into the core's models; the routes pass those
models along and never dig through a document's dicts. Nothing here writes, and nothing here
decides what to apply.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import io
import logging
from collections.abc import Collection, Iterable, Mapping
from typing import Any, Literal, get_args

import pydantic
import pydantic.alias_generators
import ruamel.yaml
import ruamel.yaml.representer

from controllers import declared, kinds
from nebula.resources import KINDS, Resource, ResourceKey, columns, conditions
from nebula.resources.git_source import GitSource
from nebula.resources.nebula_node import NebulaNode, NebulaNodeStatus
from nebula.store import StoredObject
from nebula.sync import SyncRun

__all__ = [
    "RECONCILED_KINDS",
    "STANDINGS",
    "TROUBLE",
    "WAITING",
    "ApiModel",
    "ObjectDetail",
    "ResourceSummary",
    "SourceView",
    "Standing",
    "Summaries",
    "SyncRunView",
    "Tally",
    "as_yaml",
    "detail",
    "git_sources",
    "not_reconciled",
    "resource",
    "source_view",
    "summarise",
    "tally",
]

log = logging.getLogger(__name__)

UNREADABLE_STATUS = "StatusUnreadable"
"""The reason shown for an object whose stored status does not parse (set by hand, or older)."""
WAITING = "its controller has not reported on it yet"
"""The message of an object whose kind a controller runs, before it first reports."""

RECONCILED_KINDS: frozenset[str] = kinds.RUN
"""The kinds a controller runs today, in both runtimes (``controllers/kinds.py``): what
:func:`api.app.create_app` assumes unless told. The others are checked and stored; their
status says nothing runs them yet."""

Standing = Literal["ready", "attention", "stalled", "waiting", "unreconciled"]
"""Where an object stands, as the pages count it; every object is in exactly one:

- ``stalled``: its controller gave up until someone changes the manifests (Stalled=True);
- ``attention``: otherwise explicitly not Ready (Ready=False), or working but not as declared
  (Degraded=True): a person should look;
- ``ready``: Ready=True and nothing of the above;
- ``waiting``: its controller works on it, has not reported on it yet, or holds it back
  (suspended): no Ready yet, or Ready=Unknown;
- ``unreconciled``: stored, but no controller runs its kind yet, and none ever reported on it.
"""
STANDINGS: dict[Standing, str] = {
    "ready": "ready",
    "attention": "need attention",
    "stalled": "stalled",
    "waiting": "waiting",
    "unreconciled": "not acted on yet",
}
"""Each standing as the pages name it, in the order they list them."""
TROUBLE: frozenset[Standing] = frozenset({"attention", "stalled"})
"""The standings a person should look at (the overview's "Needs attention" list)."""


class ApiModel(pydantic.BaseModel):
    """Base of every response model: camelCase on the wire, like the resources themselves."""

    model_config = pydantic.ConfigDict(
        alias_generator=pydantic.alias_generators.to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        frozen=True,
        use_attribute_docstrings=True,
    )


class _StatusHead(conditions.Status):
    """The part of any kind's status every kind shares; the rest is the kind's own business."""

    model_config = pydantic.ConfigDict(extra="ignore")


class ResourceSummary(ApiModel):
    """One object as a list shows it: who it is, whether it is Ready, and if not, why."""

    kind: str
    """The kind, e.g. NebulaNode."""
    namespace: str | None
    """The namespace; null for cluster-scoped kinds."""
    name: str
    """The object's name."""
    ready: conditions.ConditionStatus
    """The Ready condition's status; Unknown until a controller has set it."""
    reason: str | None
    """The Ready condition's reason, e.g. ValidationFailed; null until set."""
    message: str
    """Why the object is or is not Ready (file:line for a manifest error); may be empty."""
    stalled: bool
    """Whether the controller gave up until the user changes something (Stalled=True)."""
    reconciling: bool
    """Whether the controller is working on the object right now (Reconciling=True)."""
    generation: int | None
    """The spec's generation; null where the store does not count generations."""
    observed_generation: int | None
    """The generation the controller last finished with."""
    source: str | None
    """The GitSource that applied the object (namespace.name); null when made by hand."""
    updated: datetime.datetime | None
    """When the object or its status last changed."""
    conditions: list[conditions.Condition]
    """Every condition, as the controller wrote it."""
    columns: list[tuple[str, str]] = []
    """The kind's own columns, as `kubectl get -o wide` shows them (e.g. Role, GPU, VRAM)."""
    reconciled: bool = True
    """Whether a controller runs this kind here; false: stored and shown, nothing acts on it."""

    @pydantic.computed_field  # type: ignore[prop-decorator]
    @property
    def standing(self) -> Standing:
        """Where it stands: ready, attention, stalled, waiting or unreconciled (stored; no
        controller runs its kind yet). Every object is in exactly one; see ``STANDINGS``."""
        if self.stalled:
            return "stalled"
        degraded = conditions.find(self.conditions, conditions.DEGRADED)
        if self.ready == "False" or (degraded is not None and degraded.status == "True"):
            return "attention"
        if self.ready == "True":
            return "ready"
        if self.reason == declared.NOT_RUN_YET:
            return "unreconciled"
        if self.reconciled or conditions.find(self.conditions, conditions.READY) is not None:
            return "waiting"
        return "unreconciled"

    @property
    def needs_attention(self) -> bool:
        """Whether a person should look: stalled, explicitly not Ready, or Degraded (it works,
        but not as declared: a node with less VRAM than it should have, a failed probe)."""
        degraded = conditions.find(self.conditions, conditions.DEGRADED)
        return (
            self.stalled
            or self.ready == "False"
            or (degraded is not None and degraded.status == "True")
        )

    @property
    def path(self) -> str:
        """``namespace/name``, or the name alone for a cluster-scoped object."""
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


def not_reconciled(kind: str) -> str:
    """What a page says of an object of a kind no controller runs (and none reported on)."""
    return f"stored; no controller runs {kind} yet"


def summarise(stored: StoredObject, *, reconciled: bool = True) -> ResourceSummary:
    """The summary of a stored object; a status that does not parse shows as Unknown, unread.

    ``reconciled``: whether a controller runs the object's kind here; an object of a kind none
    runs, with no Ready condition, says so in its message.
    """
    found: list[conditions.Condition] = []
    observed: int | None = None
    unreadable: str | None = None
    try:
        head = _StatusHead.model_validate(stored.status or {})
        found, observed = head.conditions, head.observed_generation
    # Only a controller writes status; one that does not parse is shown, not fatal.
    except pydantic.ValidationError as error:
        unreadable = f"status does not parse: {error.errors()[0]['msg']}"
    ready = conditions.find(found, conditions.READY)
    stalled = conditions.find(found, conditions.STALLED)
    reconciling = conditions.find(found, conditions.RECONCILING)
    is_stalled = stalled is not None and stalled.status == "True"
    # Stalled names what the user must change (file:line); Ready says how things stand.
    message = stalled.message if stalled and is_stalled and stalled.message else None
    # No Ready yet: say why in words, rather than leave an empty Unknown.
    if ready is None and not unreadable and not message:
        message = WAITING if reconciled else not_reconciled(stored.key.kind)
    return ResourceSummary(
        kind=stored.key.kind,
        namespace=stored.key.namespace,
        name=stored.key.name,
        ready=ready.status if ready else "Unknown",
        reason=UNREADABLE_STATUS if unreadable else ready.reason if ready else None,
        message=unreadable or message or (ready.message if ready else ""),
        stalled=is_stalled,
        reconciling=reconciling is not None and reconciling.status == "True",
        generation=stored.generation,
        observed_generation=observed,
        source=stored.source,
        updated=stored.updated,
        conditions=found,
        columns=columns.columns(KINDS[stored.key.kind].info, stored.document, stored.status),
        reconciled=reconciled,
    )


@dataclasses.dataclass(frozen=True)
class Tally:
    """How many objects stand where; each object counted once, so the parts add up."""

    counts: Mapping[Standing, int]

    @property
    def total(self) -> int:
        """How many objects were counted."""
        return sum(self.counts.values())

    def __getitem__(self, standing: Standing) -> int:
        return self.counts.get(standing, 0)

    @property
    def troubled(self) -> int:
        """How many a person should look at (stalled, or needing attention)."""
        return sum(self[standing] for standing in TROUBLE)

    def parts(self) -> list[tuple[Standing, str, int]]:
        """Every standing with its name and count, in the order of ``STANDINGS``, zeros too."""
        return [(standing, label, self[standing]) for standing, label in STANDINGS.items()]

    def present(self) -> list[tuple[Standing, str, int]]:
        """The standings that count at least one object, as :meth:`parts` lists them."""
        return [part for part in self.parts() if part[2]]


def tally(items: Iterable[ResourceSummary]) -> Tally:
    """How many of ``items`` stand where (one pass)."""
    counts = collections.Counter(item.standing for item in items)
    return Tally({standing: counts[standing] for standing in get_args(Standing)})


class Summaries:
    """Summaries of stored objects, memoised by their version, per kind.

    ``reconciled_kinds``: the kinds a controller runs here (the others say nothing acts on them).

    A page lists a thousand objects on every view; only those written since the last one are
    summarised again (their printer columns evaluated, their status parsed). An object the
    store gives no version is summarised every time. Safe to share between request threads:
    each call replaces its kind's memo whole, so the memo never holds deleted objects for long.
    """

    def __init__(self, reconciled_kinds: Collection[str] = RECONCILED_KINDS) -> None:
        self._known: dict[str, dict[ResourceKey, tuple[str, ResourceSummary]]] = {}
        self.reconciled_kinds = frozenset(reconciled_kinds)

    def of(self, kind: str, stored: Iterable[StoredObject]) -> list[ResourceSummary]:
        """The summaries of ``stored``, every object of ``kind`` as the store listed them."""
        known = self._known.get(kind, {})
        found = []
        keys = []
        fresh: dict[ResourceKey, tuple[str, ResourceSummary]] = {}
        for item in stored:
            keys.append(item.key)
            hit = known.get(item.key)
            if item.version is not None and hit is not None and hit[0] == item.version:
                found.append(hit[1])
                continue
            summary = summarise(item, reconciled=kind in self.reconciled_kinds)
            if item.version is not None:
                fresh[item.key] = (item.version, summary)
            found.append(summary)
        # Unchanged, the memo stays as it is: rebuilding it on every view would hand the
        # garbage collector thousands of new long-lived objects per page.
        if fresh or len(keys) != len(known):
            merged = {**known, **fresh}
            self._known[kind] = {key: merged[key] for key in keys if key in merged}
        return found


def resource(stored: StoredObject) -> Resource:
    """The stored object as its kind's model, generation and status included.

    Raises :class:`pydantic.ValidationError` when the stored document does not fit its kind
    (written by hand, or by an older version), and KeyError for a kind this version lacks.
    """
    document = dict(stored.document)
    metadata = dict(document.get("metadata") or {})
    if stored.generation is not None:
        metadata["generation"] = stored.generation
    document["metadata"] = metadata
    return KINDS[stored.key.kind].model_validate({**document, "status": stored.status or None})


def git_sources(stored: list[StoredObject]) -> list[tuple[StoredObject, GitSource]]:
    """The GitSources among ``stored`` that parse, each with its stored object.

    One that does not parse is left out with a warning: it cannot be fetched either, and its
    row in the resource list still shows it.
    """
    found: list[tuple[StoredObject, GitSource]] = []
    for item in stored:
        try:
            parsed = resource(item)
        # A GitSource stored by hand with a spec this version refuses.
        except pydantic.ValidationError as error:
            log.warning("%s as stored does not parse, left out: %s", item.key, error)
            continue
        if isinstance(parsed, GitSource):
            found.append((item, parsed))
    return found


class SourceView(ApiModel):
    """A GitSource as the overview shows it: what it follows, and what it last applied."""

    summary: ResourceSummary
    url: str
    follows: str  # "branch main", "tag v1.2.0", "commit 0a1b2c3"
    path: str
    suspended: bool
    last_applied_revision: str | None
    last_attempted_revision: str | None
    last_sync_time: datetime.datetime | None
    last_sync_result: Literal["Applied", "Failed", "Unchanged"] | None
    resources: int | None


def source_view(stored: StoredObject, source: GitSource, *, reconciled: bool = True) -> SourceView:
    """The overview's card for one GitSource (``reconciled``: whether a controller runs them)."""
    ref = source.spec.ref
    follows = (
        f"branch {ref.branch}"
        if ref.branch
        else f"tag {ref.tag}"
        if ref.tag
        else f"commit {(ref.commit or '')[:7]}"
    )
    status = source.status
    return SourceView(
        summary=summarise(stored, reconciled=reconciled),
        url=source.spec.url,
        follows=follows,
        path=source.spec.path,
        suspended=source.spec.suspend,
        last_applied_revision=status.last_applied_revision if status else None,
        last_attempted_revision=status.last_attempted_revision if status else None,
        last_sync_time=status.last_sync_time if status else None,
        last_sync_result=status.last_sync_result if status else None,
        resources=status.resources if status else None,
    )


class SyncRunView(ApiModel):
    """One sync of a GitSource, from the history: which revision, what changed, how it ended."""

    model_config = pydantic.ConfigDict(from_attributes=True)

    id: int
    """The run's number, growing with time."""
    source: str
    """The GitSource synced, as namespace.name."""
    revision: str | None
    """The commit synced; null when the fetch failed before one was known."""
    author: str | None
    """Who made the commit."""
    message: str | None
    """The commit message."""
    started_at: datetime.datetime
    """When the sync began."""
    finished_at: datetime.datetime | None
    """When it ended; null while it runs."""
    created: int
    """Objects created."""
    updated: int
    """Objects updated."""
    pruned: int
    """Objects deleted because Git no longer declares them."""
    unchanged: int
    """Objects already as Git declares them."""
    result: str
    """How it ended: applied or failed."""
    error: str | None
    """Why it failed: every manifest error with its file and line, or the fetch error."""

    @classmethod
    def of(cls, run: SyncRun) -> SyncRunView:
        """The view of one history row."""
        return cls.model_validate(run)

    @property
    def subject(self) -> str:
        """The first line of the commit message."""
        return (self.message or "").strip().split("\n", 1)[0]


# --- One object's page ------------------------------------------------------------------------


class _BlockRepresenter(ruamel.yaml.representer.SafeRepresenter):
    """The safe representer, with multi-line strings as ``|`` blocks (prompts, scripts, graphs).

    A subclass, so registering the string representer never changes ruamel.yaml's own.
    """

    def represent_str(self, data: str) -> Any:
        """A string scalar: a literal block when it spans lines, else as ruamel.yaml picks."""
        style = "|" if "\n" in data else None
        return self.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_BlockRepresenter.add_representer(str, _BlockRepresenter.represent_str)


def as_yaml(value: Any) -> str:
    """``value`` (plain JSON data, as stored) as block YAML for people; empty for nothing.

    A safe dump: only mappings, lists and scalars, keys sorted (the store keeps no order), so
    the same object always reads the same. A fresh dumper per call: pages render in threads.
    """
    if value is None or value == {} or value == []:
        return ""
    yaml = ruamel.yaml.YAML(typ="safe")
    yaml.Representer = _BlockRepresenter
    yaml.default_flow_style = False
    yaml.width = 100
    stream = io.StringIO()
    yaml.dump(value, stream)
    return stream.getvalue()


@dataclasses.dataclass(frozen=True)
class ObjectDetail:
    """One object as its own page shows it: summary, metadata, and spec and status for people."""

    summary: ResourceSummary
    labels: dict[str, str]
    annotations: dict[str, str]
    # metadata.creationTimestamp; None in the PostgreSQL store, which keeps none in documents.
    created: datetime.datetime | None
    spec: str
    """The stored spec as YAML."""
    status: str
    """The stored status as YAML, without the conditions (a table shows those); may be empty."""
    # The reported machine of a NebulaNode; None for other kinds, before the first heartbeat,
    # or when the stored status does not parse (its YAML still shows).
    node: NebulaNodeStatus | None = None


def detail(stored: StoredObject, *, reconciled: bool = True) -> ObjectDetail:
    """The page of one stored object; a document or status that does not parse still shows.

    ``reconciled``: whether a controller runs the object's kind here.
    """
    summary = summarise(stored, reconciled=reconciled)
    metadata = stored.document.get("metadata") or {}
    status = dict(stored.status or {})
    # Conditions that parsed are in the table; ones that did not stay in the YAML, to be read.
    if summary.reason != UNREADABLE_STATUS:
        status.pop("conditions", None)
    return ObjectDetail(
        summary=summary,
        labels=_text_map(metadata.get("labels")),
        annotations=_text_map(metadata.get("annotations")),
        created=_timestamp(metadata.get("creationTimestamp")),
        spec=as_yaml(stored.document.get("spec")),
        status=as_yaml(status),
        node=_node_status(stored) if stored.key.kind == NebulaNode.__name__ else None,
    )


def _text_map(value: Any) -> dict[str, str]:
    """Labels or annotations as text, whatever a hand-made document put there."""
    if not isinstance(value, Mapping):
        return {}
    return {str(key): str(item) for key, item in sorted(value.items())}


def _timestamp(value: Any) -> datetime.datetime | None:
    """An RFC 3339 time from a document, or None when absent or not a time."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.datetime.fromisoformat(value)
    # Written by hand: shown as absent rather than failing the page.
    except ValueError:
        return None


def _node_status(stored: StoredObject) -> NebulaNodeStatus | None:
    """A NebulaNode's status as its model, for the hardware; None when empty or unreadable."""
    if not stored.status:
        return None
    try:
        return NebulaNodeStatus.model_validate(stored.status)
    # Written by an older agent or by hand: the page falls back to the status YAML.
    except pydantic.ValidationError as error:
        log.debug("%s: status does not parse as NebulaNodeStatus: %s", stored.key, error)
        return None
