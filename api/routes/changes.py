"""Change requests on the web: the queue, one change with its diff, and the decisions.

Two routers. :data:`router` serves the pages: ``GET /changes`` (the queue: what waits first,
then what was decided lately), ``GET /changes/{id}`` (who asked from where, the coloured diff,
conflicts, the audit trail, and Approve / Reject / Rebase forms for approvers), and the forms'
``POST /changes/{id}/approve|reject|rebase``, which answer 303 back to the change. :data:`api`
serves the same under ``/api/v1`` as JSON: ``/changes`` (list, open), ``/changes/{id}`` (one,
approve, reject, rebase) and ``/intents`` (what may be proposed, as JSON schemas).

Every decision is :class:`nebula.changes.ChangeService`'s, made as the signed-in user; this
module only turns its answers into HTTP. Whenever a page or the API shows a waiting change, it
asks the service whether the change still merges into the target branch as it is now (one
fetch per request, the merge itself remembered per pair of commits), so a change that no
longer applies says so before anyone clicks Approve.

A change that does not exist is 404; a request the change or the repository cannot take (the
change is not open, the target is not declared, the change is already so, it would make the
manifests invalid) is 409 with the core's message. The calls block on git and PostgreSQL, so the
routes are plain ``def``: FastAPI runs them in threads.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime
from collections.abc import Callable
from typing import Annotated, Any, Literal

import fastapi
import fastapi.responses
import pydantic

from api import auth, deps, views
from nebula import audit, errors
from nebula.auth import Role, User
from nebula.changes import (
    AnyIntent,
    ChangeRequest,
    ChangeService,
    MergeCheck,
    Person,
    intents,
    requests,
)

__all__ = [
    "DECIDED",
    "NO_CHANGES",
    "RECENT",
    "ChangeView",
    "DiffLine",
    "ManifestProblem",
    "Problem",
    "Rejection",
    "api",
    "approve_change",
    "approve_form",
    "change_page",
    "changes_page",
    "diff_lines",
    "get_change",
    "list_changes",
    "list_intents",
    "open_change",
    "person",
    "rebase_change",
    "rebase_form",
    "reject_change",
    "reject_form",
    "router",
    "views_of",
]

router = fastapi.APIRouter()
"""The pages and their forms, mounted at the root."""
api = fastapi.APIRouter()
"""The JSON API, mounted under ``/api/v1``."""

DECIDED: tuple[requests.State, ...] = ("merged", "applied", "rejected")
"""States of a change nobody waits on any more; the queue lists the latest after the rest."""
RECENT = 25
"""How many decided changes the queue lists."""
NO_CHANGES = (
    "this server takes no change requests: `nebula up` does, and `nebula serve` with "
    "--changes-source NAMESPACE/NAME"
)
"""The 404 answer of every change route on a server without a change service."""
MAX_REASON = 2000
"""Longest reason a rejection may give."""

_BADGES = {
    "open": "open",
    "approved": "busy",
    "conflict": "bad",
    "merged": "busy",
    "applied": "ok",
    "rejected": "quiet",
}

Services = Annotated[deps.Services, fastapi.Depends(deps.get_services)]
ChangeId = Annotated[int, fastapi.Path(ge=1, description="The change's number.")]


# --- What the pages and the API show ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DiffLine:
    """One line of a unified diff, and what it is (the page colours it by ``kind``)."""

    kind: Literal["file", "hunk", "add", "remove", "context"]
    text: str
    undoes: bool = False
    """A removed line the target branch had changed since the change was made: approving
    undoes that newer edit (see ``ChangeRequest.overrides``)."""


def diff_lines(diff: str, overrides: collections.abc.Collection[str] = ()) -> list[DiffLine]:
    """The lines of a unified diff, each told apart: file headers, hunks, added, removed, and
    among the removed those in ``overrides`` (newer edits of the target the change undoes)."""
    found = []
    for text in diff.splitlines():
        if text.startswith(("+++ ", "--- ")):
            found.append(DiffLine("file", text))
        elif text.startswith("@@"):
            found.append(DiffLine("hunk", text))
        elif text.startswith("+"):
            found.append(DiffLine("add", text))
        elif text.startswith("-"):
            found.append(DiffLine("remove", text, undoes=text[1:] in overrides))
        else:
            found.append(DiffLine("context", text))
    return found


def person(user: User) -> Person:
    """The git identity of a user of the web UI or an API token: ``abe <abe@nebula.invalid>``."""
    return Person.parse(user.name)


class ChangeView(views.ApiModel):
    """A change request: what it does, who asked from where, and where it stands."""

    id: int
    """The change's number; its branch is ``changes/<id>``."""
    title: str
    """What the change does, e.g. ``Add model llama3-1-8b to node windows-vm``."""
    intent: dict[str, Any]
    """The intent it was opened with, as JSON (see ``GET /api/v1/intents``)."""
    requester: str
    """Who asked, as the commit's author: ``Name <email>``."""
    origin: str
    """Where it was asked: web, cli, discord, twitch or pipeline."""
    source: str
    """The GitSource it changes, as namespace.name."""
    target_branch: str
    """The branch it merges into."""
    branch: str
    """The branch holding its commit."""
    file: str
    """The manifest it edits."""
    base_revision: str
    """The target branch's commit it was made on."""
    head_revision: str
    """Its own commit."""
    merge_revision: str | None
    """The target branch's commit that holds it once merged; null before."""
    diff: str
    """The unified diff of its commit."""
    summary: str
    """The diff in one line: ``models.yaml: +1 -1``."""
    state: requests.State
    """open, approved, merged, applied (the sync applied it), rejected, or conflict."""
    conflict_files: list[str]
    """The files that no longer merge cleanly (state conflict, or an open change that
    ``applies`` no more); rebase it."""
    decided_by: str | None
    """Who approved or rejected it."""
    reason: str | None
    """Why it was rejected, or why it is in conflict."""
    created_at: datetime.datetime
    """When it was opened."""
    updated_at: datetime.datetime
    """When it last moved."""
    overrides: list[str] = pydantic.Field(default_factory=list)
    """Lines of the target branch the change replaces that the branch had changed since the
    change was made (found by a rebase): approving undoes those newer edits."""
    applies: bool | None = None
    """Whether it still merges cleanly into the target branch's newest commit, checked as it
    is shown (open and approved changes); null when not checked, or when the remote did not
    answer. False: rebase it (conflictFiles names the files)."""
    checked_against: str | None = None
    """The target branch's commit ``applies`` was checked against."""
    unchecked: str | None = None
    """Why ``applies`` could not be checked (the remote did not answer), when it could not."""

    @classmethod
    def of(cls, change: ChangeRequest, check: MergeCheck | None = None) -> ChangeView:
        """The view of one change, with whether it still merges when ``check`` says."""
        return cls(
            id=change.id,
            title=change.title,
            intent=change.intent,
            requester=change.requester,
            origin=change.origin,
            source=change.source,
            target_branch=change.target_branch,
            branch=change.branch,
            file=change.file,
            base_revision=change.base_revision,
            head_revision=change.head_revision,
            merge_revision=change.merge_revision,
            diff=change.diff,
            summary=change.summary,
            state=change.state,
            conflict_files=change.conflict_files or list(check.conflict_files if check else ()),
            decided_by=change.decided_by,
            reason=change.reason,
            created_at=change.created_at,
            updated_at=change.updated_at,
            overrides=change.overrides,
            applies=check.applies if check else None,
            checked_against=check.target_revision if check else None,
            unchecked=check.problem if check else None,
        )

    @property
    def badge(self) -> str:
        """The badge colour of its state."""
        return _BADGES.get(self.state, "quiet")

    @property
    def waiting(self) -> bool:
        """Whether someone still has to act on it (open, approved, conflict)."""
        return self.state in requests.LIVE

    @property
    def stale(self) -> bool:
        """Whether it no longer applies: in conflict, or checked and found not to merge."""
        return self.state == "conflict" or self.applies is False


def views_of(service: ChangeService, changes: list[ChangeRequest]) -> list[ChangeView]:
    """The views of ``changes``, those still waiting checked against the target branch now."""
    checks = service.checks(changes)
    return [ChangeView.of(change, checks.get(change.id)) for change in changes]


class ManifestProblem(views.ApiModel):
    """One error the change would bring into the manifests."""

    file: str
    line: int
    column: int
    field: str
    """The dotted path inside the document; empty when the whole document is meant."""
    message: str


class Problem(views.ApiModel):
    """Why a request about a change could not be done."""

    detail: str
    """What is wrong, in a sentence."""
    errors: list[ManifestProblem] = pydantic.Field(default_factory=list)
    """Every manifest error the change would bring in (409 of an invalid change)."""


class Rejection(views.ApiModel):
    """Why a change is rejected."""

    reason: str = ""
    """Shown on the change and kept in the audit log; may be empty."""


_EXAMPLE_INTENTS: dict[str, Any] = {
    "scale": {
        "summary": "Scale a service",
        "value": {"intent": "scale-service", "service": "dashboard", "replicas": 2},
    },
    "model": {
        "summary": "Place a model on one more node",
        "value": {"intent": "add-model-to-node", "model": "llama3-1-8b", "node": "windows-vm"},
    },
}


# --- Errors ------------------------------------------------------------------------------------


def _service(services: deps.Services) -> ChangeService:
    if services.changes is None:
        raise fastapi.HTTPException(fastapi.status.HTTP_404_NOT_FOUND, NO_CHANGES)
    return services.changes


def _problem(status: int, error: errors.PermanentError) -> fastapi.responses.JSONResponse:
    found = error.errors if isinstance(error, errors.InvalidChange) else []
    body = Problem(
        detail=str(error),
        errors=[ManifestProblem.model_validate(e.to_dict()) for e in found],
    )
    return fastapi.responses.JSONResponse(body.model_dump(mode="json"), status_code=status)


def _decide(
    service: ChangeService, change: int, action: Callable[[], ChangeRequest]
) -> ChangeRequest | fastapi.responses.JSONResponse:
    """Runs a decision on an existing change; its refusal as a 404 or 409 problem."""
    try:
        service.store.get(change)
    # No change has that number.
    except errors.ResourceNotFound as error:
        return _problem(fastapi.status.HTTP_404_NOT_FOUND, error)
    try:
        return action()
    # The change is not in a state the action applies to, its target is gone, a rebase would
    # change nothing or be invalid, or the remote refused the push.
    except errors.PermanentError as error:
        return _problem(fastapi.status.HTTP_409_CONFLICT, error)


# --- Pages -------------------------------------------------------------------------------------


def _page(
    request: fastapi.Request,
    templates: deps.Templates,
    name: str,
    *,
    status_code: int = 200,
    **context: Any,
) -> fastapi.responses.HTMLResponse:
    return templates.TemplateResponse(
        request,
        name,
        {"now": datetime.datetime.now(datetime.UTC), **context},
        status_code=status_code,
    )


def _queue(
    request: fastapi.Request,
    templates: deps.Templates,
    service: ChangeService | None,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> fastapi.responses.HTMLResponse:
    waiting: list[ChangeView] = []
    decided: list[ChangeView] = []
    if service is not None:
        waiting = views_of(service, service.store.list(states=requests.LIVE, limit=500))
        recent = service.store.list(states=DECIDED, limit=RECENT)
        decided = [ChangeView.of(c) for c in recent]
    return _page(
        request,
        templates,
        "changes.html",
        status_code=status_code,
        enabled=service is not None,
        waiting=waiting,
        decided=decided,
        error=error,
        no_changes=NO_CHANGES,
    )


def _change(
    request: fastapi.Request,
    templates: deps.Templates,
    service: ChangeService,
    change: ChangeRequest,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> fastapi.responses.HTMLResponse:
    user = auth.current_user(request)
    trail = audit.entries(service.store.conninfo, subject=f"change/{change.id}")
    [shown] = views_of(service, [change])
    return _page(
        request,
        templates,
        "change.html",
        status_code=status_code,
        change=shown,
        lines=diff_lines(change.diff, change.overrides),
        trail=list(reversed(trail)),
        may_decide=user is not None and user.can(Role.APPROVER),
        error=error,
    )


@router.get(
    "/changes",
    name="changes_page",
    response_class=fastapi.responses.HTMLResponse,
    include_in_schema=False,
)
def changes_page(
    request: fastapi.Request, templates: deps.Templates, services: Services
) -> fastapi.responses.HTMLResponse:
    """The queue: changes waiting for someone, then the latest decided; newest first."""
    return _queue(request, templates, services.changes)


@router.get(
    "/changes/{change}",
    name="change_page",
    response_class=fastapi.responses.HTMLResponse,
    include_in_schema=False,
)
def change_page(
    request: fastapi.Request, change: ChangeId, templates: deps.Templates, services: Services
) -> fastapi.responses.HTMLResponse:
    """One change: who asked from where, its diff, conflicts, audit trail, and the decisions."""
    service = services.changes
    if service is None:
        return _queue(request, templates, None, status_code=404)
    try:
        found = service.store.get(change)
    # No change has that number: the queue, saying so.
    except errors.ResourceNotFound as error:
        return _queue(request, templates, service, error=str(error), status_code=404)
    return _change(request, templates, service, found)


def _form_decision(
    request: fastapi.Request,
    templates: deps.Templates,
    services: deps.Services,
    change: int,
    decide: Callable[[ChangeService], ChangeRequest],
) -> fastapi.responses.Response:
    """Runs a form's decision: 303 back to the change, or its page with the refusal."""
    service = services.changes
    if service is None:
        return _queue(request, templates, None, status_code=404)
    try:
        current = service.store.get(change)
    # No change has that number.
    except errors.ResourceNotFound as error:
        return _queue(request, templates, service, error=str(error), status_code=404)
    try:
        decide(service)
    # The change is not in a state the action applies to, its target is gone, a rebase would
    # change nothing or be invalid, or the remote refused the push: say so on its page.
    except errors.PermanentError as error:
        current = service.store.get(change)
        return _change(request, templates, service, current, error=str(error), status_code=409)
    target = request.url_for("change_page", change=current.id).path
    return fastapi.responses.RedirectResponse(target, status_code=303)


@router.post("/changes/{change}/approve", name="approve_form", include_in_schema=False)
def approve_form(
    request: fastapi.Request,
    change: ChangeId,
    user: auth.Approver,
    templates: deps.Templates,
    services: Services,
) -> fastapi.responses.Response:
    """Approves from the change's page: merges and pushes, then 303 back to the change."""
    return _form_decision(
        request,
        templates,
        services,
        change,
        lambda service: service.approve(change, approver=person(user)),
    )


@router.post("/changes/{change}/reject", name="reject_form", include_in_schema=False)
def reject_form(
    request: fastapi.Request,
    change: ChangeId,
    user: auth.Approver,
    templates: deps.Templates,
    services: Services,
    reason: Annotated[str, fastapi.Form(max_length=MAX_REASON)] = "",
) -> fastapi.responses.Response:
    """Rejects from the change's page, with the reason typed there; 303 back to the change."""
    return _form_decision(
        request,
        templates,
        services,
        change,
        lambda service: service.reject(change, actor=person(user), reason=reason.strip()),
    )


@router.post("/changes/{change}/rebase", name="rebase_form", include_in_schema=False)
def rebase_form(
    request: fastapi.Request,
    change: ChangeId,
    user: auth.Approver,
    templates: deps.Templates,
    services: Services,
) -> fastapi.responses.Response:
    """Makes the change again on the target's newest commit; 303 back to the change."""
    return _form_decision(
        request,
        templates,
        services,
        change,
        lambda service: service.rebase(change, actor=person(user)),
    )


# --- JSON API ----------------------------------------------------------------------------------

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No change has that number, or no change requests here."}
}
_REFUSED: dict[int | str, dict[str, Any]] = {
    409: {"model": Problem, "description": "The change is not in a state this applies to."}
}


@api.get("/changes", response_model=list[ChangeView], responses=_NOT_FOUND)
def list_changes(
    services: Services,
    state: Annotated[
        list[requests.State] | None, fastapi.Query(description="Only these states (repeatable).")
    ] = None,
    limit: Annotated[int, fastapi.Query(ge=1, le=500)] = 100,
) -> list[ChangeView]:
    """Changes, newest first; ``?state=open&state=conflict`` for those states only.

    Each open or approved change says whether it still merges into the target branch now.
    """
    service = _service(services)
    return views_of(service, service.store.list(states=state, limit=limit))


@api.get("/changes/{change}", response_model=ChangeView, responses=_NOT_FOUND)
def get_change(change: ChangeId, services: Services) -> ChangeView | fastapi.responses.Response:
    """One change, with its diff and, while it waits, whether it still merges into the target
    branch now."""
    service = _service(services)
    try:
        return views_of(service, [service.store.get(change)])[0]
    # No change has that number.
    except errors.ResourceNotFound as error:
        return _problem(fastapi.status.HTTP_404_NOT_FOUND, error)


@api.post(
    "/changes",
    response_model=ChangeView,
    status_code=fastapi.status.HTTP_201_CREATED,
    responses={
        **_NOT_FOUND,
        409: {
            "model": Problem,
            "description": "The intent cannot be made: its target is not declared, it is so "
            "already (NothingToChange), or it would make the manifests invalid (with errors).",
        },
    },
)
def open_change(
    intent: Annotated[AnyIntent, fastapi.Body(openapi_examples=_EXAMPLE_INTENTS)],
    user: auth.Approver,
    services: Services,
) -> ChangeView | fastapi.responses.Response:
    """Opens a change for an intent, as the caller, from the web; it waits for an approval.

    The same intent asked again by the same caller while it waits answers the same change.
    422 when the body is no intent (see ``GET /api/v1/intents``).
    """
    service = _service(services)
    try:
        opened = service.open(intent, requester=person(user), origin="web")
    # Not declared, already so, invalid, or the remote refused the branch.
    except errors.PermanentError as error:
        return _problem(fastapi.status.HTTP_409_CONFLICT, error)
    return ChangeView.of(opened)


def _answer(
    found: ChangeRequest | fastapi.responses.JSONResponse,
) -> ChangeView | fastapi.responses.Response:
    return ChangeView.of(found) if isinstance(found, ChangeRequest) else found


@api.post(
    "/changes/{change}/approve", response_model=ChangeView, responses={**_NOT_FOUND, **_REFUSED}
)
def approve_change(
    change: ChangeId, user: auth.Approver, services: Services
) -> ChangeView | fastapi.responses.Response:
    """Approves: merges into the target branch and pushes; the sync then applies it.

    Safe to repeat: a merged change is merged once. A change that no longer merges cleanly
    answers 200 in state ``conflict`` with its files; rebase it.
    """
    service = _service(services)
    return _answer(_decide(service, change, lambda: service.approve(change, approver=person(user))))


@api.post(
    "/changes/{change}/reject", response_model=ChangeView, responses={**_NOT_FOUND, **_REFUSED}
)
def reject_change(
    change: ChangeId,
    user: auth.Approver,
    services: Services,
    rejection: Annotated[Rejection | None, fastapi.Body()] = None,
) -> ChangeView | fastapi.responses.Response:
    """Rejects an open change (or one in conflict) with an optional reason; nothing merges."""
    service = _service(services)
    reason = rejection.reason.strip() if rejection else ""
    return _answer(
        _decide(service, change, lambda: service.reject(change, actor=person(user), reason=reason))
    )


@api.post(
    "/changes/{change}/rebase", response_model=ChangeView, responses={**_NOT_FOUND, **_REFUSED}
)
def rebase_change(
    change: ChangeId, user: auth.Approver, services: Services
) -> ChangeView | fastapi.responses.Response:
    """Makes the change again on the target branch's newest commit (after a conflict, or when
    the target moved); it must be approved again, and ``overrides`` names the newer edits of
    the target it would undo."""
    service = _service(services)
    return _answer(_decide(service, change, lambda: service.rebase(change, actor=person(user))))


@api.get("/intents", response_model=dict[str, dict[str, Any]])
def list_intents() -> dict[str, dict[str, Any]]:
    """Every intent that may be proposed, by name, with its JSON schema."""
    return intents.schemas()
