"""``GET /api/v1/sync-runs``: the sync history, newest first, of every GitSource or of one.

Read-only; one query. The history itself is written by the GitSource reconciler
(:mod:`nebula.sync.history`); this route never starts, finishes or retries a sync.
"""

from __future__ import annotations

from typing import Annotated

import fastapi

from api import deps, views

__all__ = ["list_runs", "router"]

router = fastapi.APIRouter()


@router.get("", response_model=list[views.SyncRunView])
def list_runs(
    runs: deps.Runs,
    source: Annotated[
        str | None,
        fastapi.Query(
            description="Only this GitSource's runs, as namespace.name", examples=["flux.home"]
        ),
    ] = None,
    limit: Annotated[int, fastapi.Query(ge=1, le=500, description="How many runs at most")] = 20,
) -> list[views.SyncRunView]:
    """The latest sync runs: revision, author, message, counts, result and error."""
    return [views.SyncRunView.of(run) for run in runs.latest(source, limit=limit)]
