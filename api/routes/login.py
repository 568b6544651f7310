"""``GET/POST /login`` and ``POST /logout``: signing in to the web UI with a name and a password.

The page (``templates/login.html``) shows the form, or, to someone signed in, who they are and a
sign-out button. Signing in and throttling are :func:`nebula.auth.sign_in`'s business; this
module turns its outcome into a cookie and a redirect, or the form again with 401 (wrong name
or password, never which) or 429 (too many failures lately). It never logs or echoes the
password, and it only ever redirects to a path of this site (``?next=`` comes from anyone).
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import fastapi
import fastapi.responses

from api import auth, deps
from nebula import auth as core

__all__ = [
    "MAX_NAME",
    "MAX_PASSWORD",
    "THROTTLED_MESSAGE",
    "WRONG_MESSAGE",
    "local_target",
    "login",
    "login_page",
    "logout",
    "router",
]

router = fastapi.APIRouter()

WRONG_MESSAGE = "Wrong name or password."
"""What a failed sign-in shows; the same whichever part was wrong."""
THROTTLED_MESSAGE = "Too many failed sign-ins for this name. Try again in {seconds} s."
"""What a throttled sign-in shows."""
MAX_NAME = 200
"""Longest name the form takes (names in the users file are at most 64 characters)."""
MAX_PASSWORD = 1024
"""Longest password the form takes: argon2 hashes all of it, so this bounds its work."""

Services = Annotated[deps.Services, fastapi.Depends(deps.get_services)]


def local_target(next_: str, fallback: str) -> str:
    """``next_`` when it is a path of this site, else ``fallback``: no open redirect.

    Refused: anything with a scheme or a host (``https://evil``, ``//evil``, ``/\\evil``), or
    with control characters.
    """
    if (
        not next_.startswith("/")
        or next_.startswith(("//", "/\\"))
        or any(ord(c) < 0x20 or c == "\x7f" for c in next_)
    ):
        return fallback
    return next_


def _client(request: fastapi.Request) -> str | None:
    return request.client.host if request.client else None


def _page(
    request: fastapi.Request,
    templates: deps.Templates,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> fastapi.responses.HTMLResponse:
    values: dict[str, Any] = {"next": "/", "name": "", "error": None, "open": False, "user": None}
    values.update(context)
    return templates.TemplateResponse(
        request, "login.html", values, status_code=status_code, headers=headers
    )


@router.get(
    "/login",
    name=auth.LOGIN_PAGE,
    response_class=fastapi.responses.HTMLResponse,
    include_in_schema=False,
)
def login_page(
    request: fastapi.Request,
    templates: deps.Templates,
    services: Services,
    user: auth.CurrentUser,
    next: str = "/",
) -> fastapi.responses.Response:
    """The sign-in form; to someone signed in, who they are and a sign-out button."""
    home = request.url_for("overview").path
    target = local_target(next, home)
    if user is not None and auth.current_session(request) is None and services.users is not None:
        # Signed in with a token: a browser page has nothing to offer it.
        return fastapi.responses.RedirectResponse(target, status_code=303)
    return _page(request, templates, next=target, user=user, open=services.users is None, home=home)


@router.post("/login", name="login", include_in_schema=False)
def login(
    request: fastapi.Request,
    templates: deps.Templates,
    services: Services,
    name: Annotated[str, fastapi.Form(max_length=MAX_NAME)] = "",
    password: Annotated[str, fastapi.Form(max_length=MAX_PASSWORD)] = "",
    next: Annotated[str, fastapi.Form()] = "/",
) -> fastapi.responses.Response:
    """Signs in: 303 to ``next`` with a session cookie, or the form again with 401 or 429.

    A plain ``def``: FastAPI runs it in a thread, where the argon2 check and the queries
    block nobody. On an open app there is nobody to sign in as: it just goes on to ``next``.
    """
    home = request.url_for("overview").path
    target = local_target(next, home)
    if services.users is None or services.sessions is None:
        return fastapi.responses.RedirectResponse(target, status_code=303)
    outcome = core.sign_in(
        services.users, services.sessions, name=name, password=password, client=_client(request)
    )
    if isinstance(outcome, core.Throttled):
        seconds = math.ceil(outcome.retry_after)
        return _page(
            request,
            templates,
            status_code=fastapi.status.HTTP_429_TOO_MANY_REQUESTS,
            headers={"Retry-After": str(seconds)},
            next=target,
            name=name,
            error=THROTTLED_MESSAGE.format(seconds=seconds),
            user=None,
            home=home,
        )
    if outcome is None:
        return _page(
            request,
            templates,
            status_code=fastapi.status.HTTP_401_UNAUTHORIZED,
            next=target,
            name=name,
            error=WRONG_MESSAGE,
            user=None,
            home=home,
        )
    # Signing in again from a signed-in browser: the old session ends, it is not left behind.
    if (previous := auth.current_session(request)) is not None:
        services.sessions.end(previous.id, client=_client(request))
    response = fastapi.responses.RedirectResponse(target, status_code=303)
    auth.set_session_cookie(response, outcome, secure=request.url.scheme == "https")
    return response


@router.post("/logout", name="logout", include_in_schema=False)
def logout(request: fastapi.Request, services: Services) -> fastapi.responses.Response:
    """Signs out: the session ends on the server (its cookie opens nothing any more); 303 to
    the sign-in form. Reaching it takes a signed-in session and its CSRF token.
    """
    session = auth.current_session(request)
    if session is not None and services.sessions is not None:
        services.sessions.end(session.id, client=_client(request))
    response = fastapi.responses.RedirectResponse(
        request.url_for(auth.LOGIN_PAGE).path, status_code=303
    )
    auth.clear_session_cookie(response, secure=request.url.scheme == "https")
    return response
