"""``GET /kinds/<Kind>`` and its objects' pages: one kind's table, then one object in full.

Server-rendered HTML (``templates/kind.html``, ``templates/object.html``), read-only, plain
CSS, readable on a phone; the overview links each kind and object here. The kind's page is
its table as ``kubectl get -o wide`` prints it (the kind's printer columns), with the Ready or
Stalled badge, the message, the source and when it last changed. An object's page shows its
metadata, the spec and the status as YAML, the conditions as a table and, for a NebulaNode,
the reported hardware. A cluster-scoped object lives at ``/kinds/<Kind>/<name>``, a
namespaced one at ``/kinds/<Kind>/<namespace>/<name>``: the URL is the kind and the object's
path, as the overview prints it.

A kind's page lists :data:`PAGE_SIZE` objects at a time, in the store's order, with
``?page=N`` links and the count of all of them. Each page costs one store read (a list of the
kind, or one get), however many objects there are; an unknown kind or object, or a page past
the last, is a 404 page that says what exists instead. Nothing here writes.
"""

from __future__ import annotations

import dataclasses
import datetime

import fastapi
import fastapi.responses

from api import deps, views
from api.routes import overview
from nebula.resources import KINDS, KindInfo, ResourceKey

__all__ = [
    "PAGE_SIZE",
    "KindPage",
    "ObjectPage",
    "kind_page",
    "namespaced_object_page",
    "object_page",
    "router",
]

router = fastapi.APIRouter()

PAGE_SIZE = 100
"""How many objects a kind's page lists at a time (``?page=N`` for the others)."""
_AROUND = 2  # page links shown on each side of the current one, besides the first and last


@dataclasses.dataclass(frozen=True)
class KindPage:
    """One kind's page: the table (shared with the overview's), and what the kind is."""

    section: overview.KindSection
    info: KindInfo
    now: datetime.datetime
    reconciled: bool = True
    """Whether a controller runs this kind here."""
    number: int = 1
    """Which page of the kind's table this is, from 1."""

    @property
    def pages(self) -> int:
        """How many pages the kind's table has (one, however empty)."""
        return max(1, -(-len(self.section.items) // PAGE_SIZE))

    @property
    def first(self) -> int:
        """The index of the first object this page lists."""
        return (self.number - 1) * PAGE_SIZE

    @property
    def rows(self) -> list[views.ResourceSummary]:
        """The objects this page lists."""
        return self.section.items[self.first : self.first + PAGE_SIZE]

    @property
    def links(self) -> list[int | None]:
        """The pages to link, in order: the first, the last, and those near this one; None
        where pages are left out between them."""
        wanted = {1, self.pages, *range(self.number - _AROUND, self.number + _AROUND + 1)}
        found: list[int | None] = []
        for number in sorted(n for n in wanted if 1 <= n <= self.pages):
            if found and found[-1] is not None and number > found[-1] + 1:
                found.append(None)
            found.append(number)
        return found


@dataclasses.dataclass(frozen=True)
class ObjectPage:
    """One object's page; ``found`` is None when the object does not exist (a 404)."""

    key: ResourceKey
    info: KindInfo
    found: views.ObjectDetail | None
    now: datetime.datetime


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _unknown_kind(
    request: fastapi.Request, templates: deps.Templates, kind: str
) -> fastapi.responses.HTMLResponse:
    """The 404 page of a kind this version does not have, listing the ones it has."""
    return templates.TemplateResponse(
        request,
        "kind.html",
        {"page": None, "wanted": kind, "kinds": list(KINDS), "problem": None},
        status_code=fastapi.status.HTTP_404_NOT_FOUND,
    )


@router.get("/{kind}", response_class=fastapi.responses.HTMLResponse, include_in_schema=False)
def kind_page(
    request: fastapi.Request,
    kind: str,
    store: deps.Store,
    summaries: deps.Summaries,
    templates: deps.Templates,
    page: str = "1",
) -> fastapi.responses.HTMLResponse:
    """One page of the objects of a kind, with the kind's printer columns; 404 for an unknown
    kind or a page past the last, 400 for a page that is no whole number from 1."""
    model = KINDS.get(kind)
    if model is None:
        return _unknown_kind(request, templates, kind)
    items = summaries.of(kind, store.list(kind))
    section = overview.KindSection(kind, model.info.plural, items)
    shown = KindPage(section, model.info, _now(), reconciled=kind in summaries.reconciled_kinds)
    number = int(page) if page.isdigit() else 0
    status = fastapi.status.HTTP_200_OK
    problem = None
    if number < 1:
        status = fastapi.status.HTTP_400_BAD_REQUEST
        problem = f"page={page!r} is no page: give a whole number from 1 to {shown.pages}"
    elif number > shown.pages:
        status = fastapi.status.HTTP_404_NOT_FOUND
        problem = f"there is no page {number}: {kind} has {shown.pages} (of {PAGE_SIZE} each)"
    else:
        shown = dataclasses.replace(shown, number=number)
    return templates.TemplateResponse(
        request,
        "kind.html",
        {"page": shown, "kinds": list(KINDS), "problem": problem},
        status_code=status,
    )


def _object(
    request: fastapi.Request,
    templates: deps.Templates,
    store: deps.Store,
    summaries: views.Summaries,
    key: ResourceKey,
) -> fastapi.responses.HTMLResponse:
    """The page of the object at ``key``, read with one get; 404 when the kind or object is
    unknown, or when the URL's shape does not fit the kind's scope (a namespace given to a
    cluster-scoped kind, or missing for a namespaced one).
    """
    model = KINDS.get(key.kind)
    if model is None:
        return _unknown_kind(request, templates, key.kind)
    namespaced = model.info.scope == "Namespaced"
    fits = namespaced == (key.namespace is not None)
    reconciled = key.kind in summaries.reconciled_kinds
    stored = store.get(key) if fits else None
    found = views.detail(stored, reconciled=reconciled) if stored is not None else None
    page = ObjectPage(key=key, info=model.info, found=found, now=_now())
    return templates.TemplateResponse(
        request,
        "object.html",
        {"page": page},
        status_code=fastapi.status.HTTP_200_OK if found else fastapi.status.HTTP_404_NOT_FOUND,
    )


@router.get(
    "/{kind}/{name}", response_class=fastapi.responses.HTMLResponse, include_in_schema=False
)
def object_page(
    request: fastapi.Request,
    kind: str,
    name: str,
    store: deps.Store,
    summaries: deps.Summaries,
    templates: deps.Templates,
) -> fastapi.responses.HTMLResponse:
    """One cluster-scoped object (a NebulaNode); 404 when absent or the kind is namespaced."""
    return _object(request, templates, store, summaries, ResourceKey(kind, None, name))


@router.get(
    "/{kind}/{namespace}/{name}",
    response_class=fastapi.responses.HTMLResponse,
    include_in_schema=False,
)
def namespaced_object_page(
    request: fastapi.Request,
    kind: str,
    namespace: str,
    name: str,
    store: deps.Store,
    summaries: deps.Summaries,
    templates: deps.Templates,
) -> fastapi.responses.HTMLResponse:
    """One namespaced object; 404 when absent or the kind is cluster-scoped."""
    return _object(request, templates, store, summaries, ResourceKey(kind, namespace, name))
