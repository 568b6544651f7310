"""``POST /api/v1/agents/heartbeat``: node agents on other machines report here.

A remote agent (the Windows VM, a machine that is not a k3s node) sends its inventory with the
bearer token the server was started with (``NEBULA_AGENT_TOKEN``), compared in constant time;
the heartbeat is kept for the NebulaNode controller. The route holds no rules of its own.
"""

from __future__ import annotations

import hmac
from typing import Annotated

import fastapi

from api import deps
from nebula.heartbeats import Heartbeat

__all__ = ["heartbeat", "router"]

router = fastapi.APIRouter()


@router.post(
    "/heartbeat",
    status_code=fastapi.status.HTTP_204_NO_CONTENT,
    summary="Report a node agent's inventory",
    responses={401: {"description": "missing or wrong token"}, 404: {"description": "no agents"}},
)
def heartbeat(
    beat: Heartbeat,
    services: Annotated[deps.Services, fastapi.Depends(deps.get_services)],
    authorization: Annotated[str, fastapi.Header()] = "",
) -> None:
    """Keeps the heartbeat as the agent's latest (the server's clock dates it)."""
    if services.heartbeats is None or not services.agent_token:
        raise fastapi.HTTPException(404, "this server takes no agent heartbeats")
    scheme, _, given = authorization.partition(" ")
    expected = services.agent_token.encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), expected):
        raise fastapi.HTTPException(401, "missing or wrong agent token")
    services.heartbeats.record(beat.model_copy(update={"received_at": None}))
