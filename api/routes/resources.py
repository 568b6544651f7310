"""``GET /api/v1/resources`` and ``GET /api/v1/resources/<Kind>``: the objects of every kind.

Read-only. The list answers summaries (Ready, Stalled, message) of every kind at once; each
kind's route answers that kind's full objects (metadata, spec, status) as its model, so the
OpenAPI document describes every field. One query per kind, whatever the number of objects.
"""

from __future__ import annotations

import types
from collections.abc import Callable

import fastapi
import pydantic

import nebula.store
from api import deps, views
from nebula.resources import KINDS, Resource

__all__ = ["list_kind", "list_resources", "router"]

router = fastapi.APIRouter()


@router.get("", response_model=list[views.ResourceSummary])
def list_resources(store: deps.Store, summaries: deps.Summaries) -> list[views.ResourceSummary]:
    """Every object of every kind, in sync order (nodes first), each by namespace and name."""
    return [summary for kind in KINDS for summary in summaries.of(kind, store.list(kind))]


def list_kind(kind: str) -> Callable[[nebula.store.ResourceStore], list[Resource]]:
    """The endpoint listing the objects of ``kind`` as that kind's model."""

    def endpoint(store: deps.Store) -> list[Resource]:
        try:
            return [views.resource(stored) for stored in store.list(kind)]
        # A document stored by hand that its kind refuses: the store holds bad data.
        except pydantic.ValidationError as error:
            raise fastapi.HTTPException(
                fastapi.status.HTTP_500_INTERNAL_SERVER_ERROR,
                f"a stored {kind} does not match its schema: {error.errors()[0]['msg']}",
            ) from None

    endpoint.__name__ = f"list_{kind}"
    return endpoint


for _kind, _model in KINDS.items():
    router.add_api_route(
        f"/{_kind}",
        list_kind(_kind),
        methods=["GET"],
        # A runtime-built list[Model]: mypy cannot take a loop variable as a type.
        response_model=types.GenericAlias(list, (_model,)),
        response_model_exclude_none=True,
        summary=f"List {_model.info.plural}",
        description=f"Every {_kind}: {_model.info.description}",
    )
