"""The routes' shared dependencies: the collaborators :func:`api.app.create_app` was given.

``create_app`` puts one :class:`Services` on ``app.state``; routes ask for what they need with
the annotated aliases (``store: deps.Store``), never by reading ``app.state`` themselves, so a
route's signature lists everything it touches. Nothing here opens a connection or holds a
module-level object: two apps in one process (tests do this) never share anything.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import fastapi
import starlette.templating

import nebula.auth
import nebula.changes
import nebula.heartbeats
import nebula.secrets
import nebula.store
import nebula.sync
from api import views

if TYPE_CHECKING:
    # The feed lives with its route; importing it here at run time would be circular.
    from api.routes import events

__all__ = [
    "Changes",
    "Runs",
    "Secrets",
    "Services",
    "Store",
    "Summaries",
    "Templates",
    "Trigger",
    "get_changes",
    "get_runs",
    "get_secrets",
    "get_services",
    "get_store",
    "get_summaries",
    "get_templates",
    "get_trigger",
]


@dataclasses.dataclass(frozen=True)
class Services:
    """Everything the routes use from outside the web runtime, held by the app."""

    store: nebula.store.ResourceStore
    runs: nebula.sync.History
    trigger: nebula.sync.SyncTrigger
    secrets: nebula.secrets.Secrets
    templates: starlette.templating.Jinja2Templates
    # Where node agents' heartbeats go; None where this app takes none.
    heartbeats: nebula.heartbeats.HeartbeatStore | None = None
    # The bearer token remote agents present; None: no remote agent may report.
    agent_token: str | None = None
    # Who may sign in, and where their sessions are kept; both None on an open app (no users).
    users: nebula.auth.Users | None = None
    sessions: nebula.auth.Sessions | None = None
    # The change requests of the GitSource this app may propose to; None: no change requests.
    changes: nebula.changes.ChangeService | None = None
    # The LISTEN feeding GET /events; None: no live updates (the pages still work).
    events: events.Feed | None = None
    # What keeps the runtime behind this app from reconciling as it should, for people (the
    # embedded runtime's problems); None: no runtime in this process (nebula serve).
    problems: Callable[[], list[str]] | None = None
    # The objects' summaries as last shown, by version: pages summarise only what changed.
    summaries: views.Summaries = dataclasses.field(default_factory=lambda: views.Summaries())


def get_services(request: fastapi.Request) -> Services:
    """The services of the app serving ``request``."""
    services: Services = request.app.state.services
    return services


def get_store(request: fastapi.Request) -> nebula.store.ResourceStore:
    """The resource store: specs and statuses of every kind."""
    return get_services(request).store


def get_runs(request: fastapi.Request) -> nebula.sync.History:
    """The sync history."""
    return get_services(request).runs


def get_trigger(request: fastapi.Request) -> nebula.sync.SyncTrigger:
    """What asks the runtime for a sync now (the webhook's only effect)."""
    return get_services(request).trigger


def get_secrets(request: fastapi.Request) -> nebula.secrets.Secrets:
    """Where secret values are read by reference (webhook secrets)."""
    return get_services(request).secrets


def get_changes(request: fastapi.Request) -> nebula.changes.ChangeService | None:
    """The change requests: open, approve, reject, rebase; None where this app has none."""
    return get_services(request).changes


def get_summaries(request: fastapi.Request) -> views.Summaries:
    """The summaries of stored objects, as every page and the JSON list show them."""
    return get_services(request).summaries


def get_templates(request: fastapi.Request) -> starlette.templating.Jinja2Templates:
    """The page renderer."""
    return get_services(request).templates


Store = Annotated[nebula.store.ResourceStore, fastapi.Depends(get_store)]
Runs = Annotated[nebula.sync.History, fastapi.Depends(get_runs)]
Trigger = Annotated[nebula.sync.SyncTrigger, fastapi.Depends(get_trigger)]
Secrets = Annotated[nebula.secrets.Secrets, fastapi.Depends(get_secrets)]
Changes = Annotated[nebula.changes.ChangeService | None, fastapi.Depends(get_changes)]
Summaries = Annotated[views.Summaries, fastapi.Depends(get_summaries)]
Templates = Annotated[starlette.templating.Jinja2Templates, fastapi.Depends(get_templates)]
