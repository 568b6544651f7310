"""``GET /healthz``: whether this process can read its store and its sync history, and whether
the runtime in it (``nebula up``) reconciles as it should.

For liveness and readiness probes (k3s, systemd, a reverse proxy) and monitors. Answers 200
"ok" when the store and the history answer within :data:`TIMEOUT` and the runtime names no
problem; 503 "unavailable" when either does not answer, 503 "degraded" while the runtime says
what keeps it from reconciling (not listening for changes, the store down for its loops). It
says which part failed but never why (no connection string, host or error text on an
unauthenticated endpoint). It writes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Literal

import anyio
import anyio.to_thread
import fastapi
import pydantic

from api import deps, views

__all__ = ["TIMEOUT", "Health", "healthz", "router"]

log = logging.getLogger(__name__)
router = fastapi.APIRouter()

TIMEOUT = 3.0
"""Seconds each check may take; a store slower than that is as good as down to a probe."""


class Health(views.ApiModel):
    """The probe's answer."""

    status: Literal["ok", "degraded", "unavailable"]
    """ok when every check answered and the runtime names no problem."""
    store: bool
    """Whether the resource store answered."""
    history: bool
    """Whether the sync history answered."""
    problems: list[str] = pydantic.Field(default_factory=list)
    """What keeps the runtime from reconciling as it should, in words; empty when nothing."""


async def _answers(name: str, check: Callable[[], object]) -> bool:
    with anyio.move_on_after(TIMEOUT):
        try:
            # Abandoned, not killed, on timeout: a blocked driver call cannot be interrupted.
            await anyio.to_thread.run_sync(check, abandon_on_cancel=True)
        # Any failure of any driver (refused, dropped, pool closed) means "does not answer",
        # which is all a probe reports; the type goes to the log, the details stay there.
        except Exception as error:
            log.warning("health: the %s did not answer: %s", name, type(error).__name__)
            return False
        return True
    log.warning("health: the %s did not answer within %ss", name, TIMEOUT)
    return False


@router.get(
    "/healthz",
    response_model=Health,
    responses={503: {"model": Health, "description": "The store or the history is down"}},
)
async def healthz(
    response: fastapi.Response,
    store: deps.Store,
    runs: deps.Runs,
    services: Annotated[deps.Services, fastapi.Depends(deps.get_services)],
) -> Health:
    """200 when the store and the sync history answer and the runtime has no problem, 503
    otherwise (``unavailable`` or ``degraded``, with the runtime's problems)."""
    store_ok = await _answers("store", lambda: store.list("GitSource"))
    history_ok = await _answers("history", lambda: runs.latest(limit=1))
    problems = services.problems() if services.problems else []
    status: Literal["ok", "degraded", "unavailable"] = "ok"
    if not (store_ok and history_ok):
        status = "unavailable"
    elif problems:
        status = "degraded"
    if status != "ok":
        response.status_code = fastapi.status.HTTP_503_SERVICE_UNAVAILABLE
    return Health(status=status, store=store_ok, history=history_ok, problems=problems)
