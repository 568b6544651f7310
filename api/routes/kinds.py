"""``GET /kinds/<Kind>`` and its objects' pages: one kind's table, then one object in full.

Server-rendered HTML (``templates/kind.html``, ``templates/object.html``), read-only, plain
CSS, readable on a phone; the overview links each kind and object here. The kind's page is
its table as ``kubectl get -o wide`` prints it (the kind's printer columns), with the Ready or
Stalled badge, the message, the source and when it last changed. An object's page shows its
metadata, the spec and the status as YAML, the conditions as a table and, for a NebulaNode,
the reported hardware. A cluster-scoped object lives at ``/kinds/<Kind>/<name>``, a
namespaced one at ``/kinds/<Kind>/<namespace>/<name>``: the URL is the kind and the object's
path, as the overview prints it.

Each page costs one store read (a list of the kind, or one get), however many objects there
are; an unknown kind or object is a 404 page that says what exists instead. Nothing here
writes.
"""

from __future__ import annotations

import dataclasses
import datetime

import fastapi
import fastapi.responses

from api import deps, views
from api.routes import overview
from nebula.resources import KINDS, KindInfo, ResourceKey

__all__ = ["KindPage", "ObjectPage", "kind_page", "namespaced_object_page", "object_page", "router"]

router = fastapi.APIRouter()


@dataclasses.dataclass(frozen=True)
class KindPage:
    """One kind's page: the table (shared with the overview's), and what the kind is."""

    section: overview.KindSection
    info: KindInfo
    now: datetime.datetime
    reconciled: bool = True
    """Whether a controller runs this kind here."""


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
        {"page": None, "wanted": kind, "kinds": list(KINDS)},
        status_code=fastapi.status.HTTP_404_NOT_FOUND,
    )


@router.get("/{kind}", response_class=fastapi.responses.HTMLResponse, include_in_schema=False)
def kind_page(
    request: fastapi.Request,
    kind: str,
    store: deps.Store,
    summaries: deps.Summaries,
    templates: deps.Templates,
) -> fastapi.responses.HTMLResponse:
    """Every object of one kind with the kind's printer columns; 404 for an unknown kind."""
    model = KINDS.get(kind)
    if model is None:
        return _unknown_kind(request, templates, kind)
    items = summaries.of(kind, store.list(kind))
    section = overview.KindSection(kind, model.info.plural, items)
    page = KindPage(section, model.info, _now(), reconciled=kind in summaries.reconciled_kinds)
    return templates.TemplateResponse(request, "kind.html", {"page": page, "kinds": list(KINDS)})


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
