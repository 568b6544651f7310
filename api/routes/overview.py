"""``GET /``: the status page: GitSources, the latest syncs, and every object by kind.

Server-rendered HTML (``templates/overview.html``), read-only, plain CSS, readable on a phone.
Totals first: every object counted in exactly one standing (:data:`api.views.STANDINGS`), so
they add up. The GitSources come next (a stalled one in red, with the file:line to fix), then
what else needs a person (Stalled, Ready=False or Degraded), the latest syncs, and one table per
kind. The page
costs one query per kind plus one for the history, however many objects there are: it never
asks the store about a single object, and it writes nothing.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
from typing import Annotated

import fastapi
import fastapi.responses

from api import deps, views
from nebula import heartbeats
from nebula.resources import KINDS
from nebula.resources.nebula_node import NebulaNode
from nebula.store import StoredObject

__all__ = [
    "ATTENTION_SHOWN",
    "OPEN_UP_TO",
    "RECENT_RUNS",
    "KindSection",
    "Machine",
    "Overview",
    "overview",
    "read",
    "router",
]

router = fastapi.APIRouter()

RECENT_RUNS = 15
"""How many sync runs the page lists."""
OPEN_UP_TO = 30
"""A kind's table starts unfolded when it has at most this many objects, or any in trouble;
it never lists more than this many (those in trouble first): its own page has them all."""
ATTENTION_SHOWN = 10
"""How many objects in trouble the top of the page lists; the tables below show them all."""


# Totals are cached properties: the template reads each several times, and each is a pass
# over up to thousands of items. (cached_property writes __dict__, which frozen allows.)
@dataclasses.dataclass(frozen=True)
class KindSection:
    """One kind's table on the page."""

    kind: str
    plural: str
    items: list[views.ResourceSummary]

    @property
    def columns(self) -> list[str]:
        """The names of the kind's own columns (Role, GPU, VRAM, ... for nodes)."""
        return [
            column.name
            for column in KINDS[self.kind].info.printer_columns
            if column.name not in ("Ready", "Status", "Age")
        ]

    @functools.cached_property
    def tally(self) -> views.Tally:
        """How many of its objects stand where (each in exactly one standing)."""
        return views.tally(self.items)

    @property
    def ready(self) -> int:
        """How many of its objects are Ready."""
        return self.tally["ready"]

    @property
    def troubled(self) -> int:
        """How many of its objects need attention (stalled ones included)."""
        return self.tally.troubled

    @functools.cached_property
    def shown(self) -> list[views.ResourceSummary]:
        """What the overview lists: every object of a small kind; of a large one, those in
        trouble first, up to :data:`OPEN_UP_TO`, so the page costs the same at any size."""
        if len(self.items) <= OPEN_UP_TO:
            return self.items
        troubled = [item for item in self.items if item.standing in views.TROUBLE]
        others = [item for item in self.items if item.standing not in views.TROUBLE]
        return (troubled + others)[:OPEN_UP_TO]

    @property
    def hidden(self) -> int:
        """How many of its objects only the kind's page lists."""
        return len(self.items) - len(self.shown)

    @property
    def open(self) -> bool:
        """Whether the table starts unfolded."""
        return bool(self.items) and (len(self.items) <= OPEN_UP_TO or self.troubled > 0)


@dataclasses.dataclass(frozen=True)
class Machine:
    """A machine whose agent reports, and the NebulaNode it counts as (None: undeclared)."""

    beat: heartbeats.Heartbeat
    node: str | None


@dataclasses.dataclass(frozen=True)
class Overview:
    """Everything the page shows, read once per request."""

    now: datetime.datetime
    sources: list[views.SourceView]
    runs: list[views.SyncRunView]
    kinds: list[KindSection]
    machines: list[Machine] = dataclasses.field(default_factory=list)

    @functools.cached_property
    def attention(self) -> list[views.ResourceSummary]:
        """The objects a person should look at, in sync order."""
        return [
            item
            for section in self.kinds
            for item in section.items
            if item.standing in views.TROUBLE
        ]

    @functools.cached_property
    def attention_shown(self) -> list[views.ResourceSummary]:
        """The first objects in trouble, GitSources left out: their cards are right above."""
        others = [item for item in self.attention if item.kind != "GitSource"]
        return others[:ATTENTION_SHOWN]

    @functools.cached_property
    def attention_more(self) -> int:
        """How many objects in trouble (GitSources aside) the top of the page does not list."""
        return sum(item.kind != "GitSource" for item in self.attention) - len(self.attention_shown)

    @functools.cached_property
    def tally(self) -> views.Tally:
        """How many objects stand where, over every kind: the totals at the top add up."""
        counts = {
            standing: sum(section.tally[standing] for section in self.kinds)
            for standing in views.STANDINGS
        }
        return views.Tally(counts)

    @property
    def total(self) -> int:
        """How many objects there are."""
        return self.tally.total

    @functools.cached_property
    def unreconciled_kinds(self) -> list[str]:
        """The kinds with objects that no controller runs, for the words under the totals."""
        return [section.kind for section in self.kinds if section.tally["unreconciled"]]


def read(
    store: deps.Store,
    runs: deps.Runs,
    beats: heartbeats.HeartbeatStore | None = None,
    summaries: views.Summaries | None = None,
) -> Overview:
    """Reads the page's data: one list per kind, one history query, the heartbeats."""
    summaries = summaries or views.Summaries()
    listed = {kind: store.list(kind) for kind in KINDS}
    reconciled = "GitSource" in summaries.reconciled_kinds
    sources = [
        views.source_view(*found, reconciled=reconciled)
        for found in views.git_sources(listed["GitSource"])
    ]
    return Overview(
        machines=_machines(listed["NebulaNode"], beats.all() if beats else []),
        now=datetime.datetime.now(datetime.UTC),
        sources=sources,
        runs=[views.SyncRunView.of(run) for run in runs.latest(limit=RECENT_RUNS)],
        kinds=[
            KindSection(kind, KINDS[kind].info.plural, summaries.of(kind, stored))
            for kind, stored in listed.items()
        ],
    )


def _machines(nodes: list[StoredObject], beats: list[heartbeats.Heartbeat]) -> list[Machine]:
    """Every reporting machine with the node it matches, so an undeclared one stands out."""
    declared = [views.resource(node) for node in nodes]
    owner = {}
    for node in declared:
        assert isinstance(node, NebulaNode)  # listed as NebulaNode, read as its model
        found = heartbeats.match(node, beats)
        if found is not None:
            owner[found.node] = node.metadata.name
    return [Machine(beat, owner.get(beat.node)) for beat in beats]


@router.get("/", response_class=fastapi.responses.HTMLResponse, include_in_schema=False)
def overview(
    request: fastapi.Request,
    store: deps.Store,
    runs: deps.Runs,
    templates: deps.Templates,
    services: Annotated[deps.Services, fastapi.Depends(deps.get_services)],
) -> fastapi.responses.HTMLResponse:
    """The status page."""
    page = read(store, runs, services.heartbeats, services.summaries)
    return templates.TemplateResponse(request, "overview.html", {"page": page})
