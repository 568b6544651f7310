"""Who is asking, whether they may, and whether a form really came from our pages.

Mounted by :func:`api.app.create_app`; the rules themselves (users, roles, sessions, throttling)
are :mod:`nebula.auth`'s. Three parts, each checking every request:

- :class:`Gate`, an ASGI middleware, identifies the caller (an ``Authorization: Bearer`` API
  token, else the session cookie) and, when the app has users, turns the anonymous away from
  everything but :data:`PUBLIC` and :data:`UNGUARDED`: a page redirects to the login form, the
  JSON API answers 401. Being a middleware, it also covers what is not a route (the OpenAPI
  document, the docs page, and whatever is mounted later).
- :func:`check_csrf`, an app-wide dependency, refuses a POST, PUT, PATCH or DELETE that signed
  in by cookie without its session's CSRF token (field :data:`CSRF_FIELD` or header
  :data:`CSRF_HEADER`), and any such request a browser marks as cross-site. A Bearer token is no
  ambient credential, so API calls with one need no CSRF token.
- :func:`current_user`, :func:`require` and the aliases :data:`Viewer`, :data:`Approver` and
  :data:`Admin` are what routes ask for; templates print :func:`csrf_field` in their forms.

An app without users (``create_app(users=None)``: the tests, a single-user ``nebula up``) is
open as before: everyone is :data:`nebula.auth.OPEN_ACCESS`, an admin, and only the cross-site
check stands. What it must never do: look at the webhook or the agents' heartbeat (they have
their own authentication), or let anything but a Bearer token skip the CSRF check.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import dataclasses
import datetime
import hmac
import logging
import pathlib
import secrets
import urllib.parse
from collections.abc import Callable
from typing import Annotated, Literal

import anyio.to_thread
import fastapi
import fastapi.requests
import jinja2
import markupsafe
import starlette.responses
import starlette.types

from nebula import errors, settings
from nebula.auth import LIFETIME, OPEN_ACCESS, Role, Session, Sessions, User, Users

__all__ = [
    "COOKIE",
    "CROSS_SITE_REFUSED",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "CSRF_REFUSED",
    "LOGIN_PAGE",
    "PUBLIC",
    "ROLE_TOO_LOW",
    "SIGN_IN_REQUIRED",
    "UNGUARDED",
    "UNKNOWN_TOKEN",
    "Admin",
    "Approver",
    "CurrentUser",
    "Gate",
    "Identity",
    "Viewer",
    "add_users_option",
    "check_csrf",
    "clear_session_cookie",
    "csrf_field",
    "csrf_token",
    "current_session",
    "current_user",
    "install_template_globals",
    "require",
    "set_session_cookie",
]

log = logging.getLogger(__name__)

COOKIE = "nebula_session"
"""The session cookie: a random id, HttpOnly, SameSite=Lax, Secure over https."""
CSRF_FIELD = "csrf_token"
"""The form field that carries the CSRF token (see :func:`csrf_field`)."""
CSRF_HEADER = "X-CSRF-Token"
"""The header a script on our pages may send the CSRF token in instead."""
LOGIN_PAGE = "login_page"
"""The route name of ``GET /login``, where the anonymous are sent."""
PUBLIC = frozenset({"/login"})
"""Paths the anonymous may use on an app with users; the caller is still identified."""
UNGUARDED = frozenset({"/healthz", "/hooks/git", "/api/v1/agents/heartbeat"})
"""Paths with their own authentication (or none needed): the gate does not even look."""
_UNGUARDED_PREFIXES = ("/static/",)

SIGN_IN_REQUIRED = "sign in, or send an API token as Authorization: Bearer"
"""The 401 answer of the JSON API to the anonymous."""
UNKNOWN_TOKEN = "unknown API token"
"""The 401 answer to a Bearer token the users file does not list."""
ROLE_TOO_LOW = "this needs the {needed} role; {user} is {role}"
"""The 403 answer to a user whose role is too low."""
CSRF_REFUSED = "the form's CSRF token is missing or wrong; reload the page and try again"
"""The 403 answer to a state-changing request by cookie without its session's token."""
CROSS_SITE_REFUSED = "cross-site requests may not change anything"
"""The 403 answer to a state-changing request a browser sent from another site."""
_SESSIONS_DOWN = "the session store did not answer; try again shortly"

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_TURN_AWAY_HEADERS = ("location", "www-authenticate")
_IDENTITY = "nebula.identity"
_GATE = "nebula.gate"


@dataclasses.dataclass(frozen=True)
class Identity:
    """Who made a request, and how they proved it; the gate puts one on every guarded request."""

    user: User | None
    """None: anonymous."""
    via: Literal["open", "session", "token", "nobody"]
    """``open``: the app has no users; ``nobody``: no (valid) credential was sent."""
    session: Session | None = None
    """The session signed in by cookie; None for any other ``via``."""


def _app_path(scope: starlette.types.Scope) -> str:
    """The path inside the app, without the prefix a reverse proxy mounts it under."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _unguarded(path: str) -> bool:
    return path in UNGUARDED or path.startswith(_UNGUARDED_PREFIXES)


class _BadToken(Exception):
    """A Bearer token was sent that no entry of the users file matches."""


class Gate:
    """The ASGI middleware that identifies every request and turns the anonymous away.

    ``users`` None runs the app open (everyone :data:`~nebula.auth.OPEN_ACCESS`); then
    ``sessions`` is not used. Paths under ``api_prefix`` answer 401 in JSON; pages redirect.
    """

    def __init__(
        self,
        app: starlette.types.ASGIApp,
        *,
        users: Users | None,
        sessions: Sessions | None,
        api_prefix: str,
    ) -> None:
        self.app = app
        self.users = users
        self.sessions = sessions
        self.api_prefix = api_prefix

    async def __call__(
        self,
        scope: starlette.types.Scope,
        receive: starlette.types.Receive,
        send: starlette.types.Send,
    ) -> None:
        path = _app_path(scope) if scope["type"] in ("http", "websocket") else ""
        if not path or _unguarded(path):
            await self.app(scope, receive, send)
            return
        connection = fastapi.requests.HTTPConnection(scope)
        try:
            identity = await self._identify(connection)
        # A Bearer token is a claim of a script, never an anonymous visit: refuse it outright.
        except _BadToken:
            await self._refuse(scope, receive, send, self._unauthorised(UNKNOWN_TOKEN))
            return
        # PostgreSQL is down: whether the session is live cannot be known, so nothing is served.
        except errors.StoreUnavailable as error:
            log.warning("%s: cannot look the session up: %s", path, error)
            unavailable = starlette.responses.JSONResponse(
                {"detail": _SESSIONS_DOWN}, status_code=503, headers={"Retry-After": "10"}
            )
            await self._refuse(scope, receive, send, unavailable)
            return
        state = scope.setdefault("state", {})
        state[_IDENTITY], state[_GATE] = identity, self
        if identity.user is None and path not in PUBLIC:
            await self._refuse(scope, receive, send, self.turn_away(connection))
            return
        await self.app(scope, receive, send)

    async def _identify(self, connection: fastapi.requests.HTTPConnection) -> Identity:
        if self.users is None:
            return Identity(user=OPEN_ACCESS, via="open")
        scheme, _, token = connection.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            user = self.users.bearer(token.strip())
            if user is None:
                raise _BadToken
            return Identity(user=user, via="token")
        session_id = connection.cookies.get(COOKIE)
        if session_id and self.sessions is not None:
            session = await anyio.to_thread.run_sync(self.sessions.find, session_id)
            # A user removed from the users file is signed out by the next restart.
            user = self.users.get(session.name) if session else None
            if user is not None:
                return Identity(user=user, via="session", session=session)
        return Identity(user=None, via="nobody")

    def _is_api(self, connection: fastapi.requests.HTTPConnection) -> bool:
        path = _app_path(connection.scope)
        return path == self.api_prefix or path.startswith(f"{self.api_prefix}/")

    def _unauthorised(self, detail: str) -> starlette.responses.Response:
        return starlette.responses.JSONResponse(
            {"detail": detail}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
        )

    def turn_away(
        self, connection: fastapi.requests.HTTPConnection
    ) -> starlette.responses.Response:
        """The answer to the anonymous: 401 from the JSON API, a redirect to /login from pages.

        A page asked for with GET comes back after signing in (``?next=``).
        """
        if self._is_api(connection):
            return self._unauthorised(SIGN_IN_REQUIRED)
        login = connection.url_for(LOGIN_PAGE).path
        if connection.scope.get("method") in ("GET", "HEAD"):
            here = connection.url.path + (
                f"?{connection.url.query}" if connection.url.query else ""
            )
            login += "?" + urllib.parse.urlencode({"next": here})
        return starlette.responses.RedirectResponse(login, status_code=303)

    async def _refuse(
        self,
        scope: starlette.types.Scope,
        receive: starlette.types.Receive,
        send: starlette.types.Send,
        response: starlette.responses.Response,
    ) -> None:
        if scope["type"] == "websocket":
            # Closing before accepting refuses the handshake (the server answers 403).
            await send({"type": "websocket.close", "code": 1008})
            return
        await response(scope, receive, send)


def _identity(connection: fastapi.requests.HTTPConnection) -> Identity | None:
    found: Identity | None = connection.scope.get("state", {}).get(_IDENTITY)
    return found


def current_user(request: fastapi.requests.HTTPConnection) -> User | None:
    """The user making the request: None when anonymous (on a public or unguarded path).

    Never None on an open app (no users): everyone is :data:`~nebula.auth.OPEN_ACCESS` there.
    """
    identity = _identity(request)
    return identity.user if identity else None


def current_session(request: fastapi.requests.HTTPConnection) -> Session | None:
    """The session the request signed in with by cookie; None for a token, or nobody."""
    identity = _identity(request)
    return identity.session if identity else None


def require(role: Role | str) -> Callable[[fastapi.requests.HTTPConnection], User]:
    """A dependency that returns the user when they hold ``role`` or above.

    Anonymous: 401 in JSON from the API, a redirect to /login from pages; a role too low: 403.
    Use it as ``user: Annotated[User, Depends(require("approver"))]``, or the aliases
    :data:`Viewer`, :data:`Approver`, :data:`Admin`.
    """
    needed = role if isinstance(role, Role) else Role.parse(role)

    def dependency(request: fastapi.requests.HTTPConnection) -> User:
        user = current_user(request)
        if user is None:
            gate: Gate | None = request.scope.get("state", {}).get(_GATE)
            if gate is None:  # an unguarded path: nobody was even looked for
                raise fastapi.HTTPException(401, SIGN_IN_REQUIRED)
            response = gate.turn_away(request)
            kept = {k: v for k, v in response.headers.items() if k in _TURN_AWAY_HEADERS}
            raise fastapi.HTTPException(response.status_code, SIGN_IN_REQUIRED, headers=kept)
        if not user.can(needed):
            detail = ROLE_TOO_LOW.format(needed=needed, user=user.name, role=user.role)
            raise fastapi.HTTPException(fastapi.status.HTTP_403_FORBIDDEN, detail)
        return user

    dependency.__name__ = f"require_{needed}"
    return dependency


CurrentUser = Annotated[User | None, fastapi.Depends(current_user)]
"""The user making the request, or None (see :func:`current_user`)."""
Viewer = Annotated[User, fastapi.Depends(require(Role.VIEWER))]
"""A user who may read."""
Approver = Annotated[User, fastapi.Depends(require(Role.APPROVER))]
"""A user who may approve and reject change requests."""
Admin = Annotated[User, fastapi.Depends(require(Role.ADMIN))]
"""A user who may do anything."""


def _masked(token: str) -> str:
    """The token XOR a fresh random pad, pad first: a new text on every page, same secret.

    Pages are gzipped; a secret repeated verbatim in compressed responses that also reflect
    input can be guessed byte by byte from their sizes (BREACH). A masked one cannot.
    """
    raw = token.encode()
    pad = secrets.token_bytes(len(raw))
    masked = bytes(a ^ b for a, b in zip(pad, raw, strict=True))
    return base64.urlsafe_b64encode(pad + masked).decode()


def _unmasked(sent: str) -> bytes | None:
    try:
        data = base64.urlsafe_b64decode(sent.encode("ascii"))
    # Not base64 (or not even ASCII): not a token we rendered.
    except (binascii.Error, UnicodeEncodeError):
        return None
    half, odd = divmod(len(data), 2)
    if odd or not half:
        return None
    return bytes(a ^ b for a, b in zip(data[:half], data[half:], strict=True))


def _token_matches(sent: str | None, session: Session) -> bool:
    raw = _unmasked(sent) if sent else None
    return raw is not None and hmac.compare_digest(raw, session.csrf_token.encode())


async def _sent_token(request: fastapi.Request) -> str | None:
    if header := request.headers.get(CSRF_HEADER):
        return header
    if not request.headers.get("content-type", "").startswith(_FORM_TYPES):
        return None
    # Read the body whole first, so that the route can still read it after us. When the route
    # takes form fields, FastAPI parsed the form before any dependency: the stream is spent
    # (RuntimeError) and request.form() returns that parse.
    with contextlib.suppress(RuntimeError):
        await request.body()
    value = (await request.form()).get(CSRF_FIELD)
    return value if isinstance(value, str) else None


async def check_csrf(request: fastapi.Request) -> None:
    """Refuses (403) a state-changing request that might have been forged by another site.

    Refused: one a browser marks as sent from another site (``Sec-Fetch-Site``), and one that
    signed in by cookie without its session's CSRF token. Left alone: safe methods, Bearer
    tokens (no ambient credential), the unguarded paths (webhook, heartbeat), and the login
    form (nothing to protect yet; the cross-site check covers it).
    """
    identity = _identity(request)
    if request.method in _SAFE_METHODS or identity is None or identity.via == "token":
        return
    if request.headers.get("sec-fetch-site") in ("cross-site", "same-site"):
        raise fastapi.HTTPException(fastapi.status.HTTP_403_FORBIDDEN, CROSS_SITE_REFUSED)
    if identity.session is None or _app_path(request.scope) in PUBLIC:
        return
    if not _token_matches(await _sent_token(request), identity.session):
        log.warning(
            "%s %s by %s: no valid CSRF token", request.method, request.url.path, identity.user
        )
        raise fastapi.HTTPException(fastapi.status.HTTP_403_FORBIDDEN, CSRF_REFUSED)


def set_session_cookie(
    response: starlette.responses.Response,
    session: Session,
    *,
    secure: bool,
    max_age: datetime.timedelta = LIFETIME,
) -> None:
    """Puts the session cookie on ``response``: HttpOnly, SameSite=Lax, Path=/, Secure if asked.

    Lax, not Strict: a link to a page from a chat or a mail still arrives signed in, while
    forms posted from other sites do not carry the cookie. ``max_age`` only tells the browser
    when to drop it; the server ends the session on its own terms (idle, lifetime, sign-out).
    """
    response.set_cookie(
        COOKIE,
        session.id,
        max_age=int(max_age.total_seconds()),
        path="/",
        secure=secure,
        httponly=True,
        samesite="lax",
    )


def clear_session_cookie(response: starlette.responses.Response, *, secure: bool) -> None:
    """Tells the browser to forget the session cookie."""
    response.delete_cookie(COOKIE, path="/", secure=secure, httponly=True, samesite="lax")


def csrf_token(request: fastapi.requests.HTTPConnection) -> str:
    """The CSRF token to send back with a form or an ``X-CSRF-Token`` header; masked anew each
    call. Empty when the request has no session (an open app, or a token): nothing is checked.
    """
    session = current_session(request)
    return _masked(session.csrf_token) if session else ""


@jinja2.pass_context
def csrf_field(context: jinja2.runtime.Context) -> markupsafe.Markup:
    """``<input type="hidden" name="csrf_token" ...>`` for the page's request; put it in every
    form that POSTs. Empty when there is nothing to check (an open app).
    """
    token = csrf_token(context["request"])
    if not token:
        return markupsafe.Markup("")
    return markupsafe.Markup('<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, token)


@jinja2.pass_context
def _template_csrf_token(context: jinja2.runtime.Context) -> str:
    return csrf_token(context["request"])


@jinja2.pass_context
def _template_user(context: jinja2.runtime.Context) -> User | None:
    return current_user(context["request"])


def install_template_globals(environment: jinja2.Environment) -> None:
    """Gives every template ``csrf_field()``, ``csrf_token()`` and ``current_user()``.

    Each reads the ``request`` of the template's context (``TemplateResponse`` puts it there).
    """
    environment.globals["csrf_field"] = csrf_field
    environment.globals["csrf_token"] = _template_csrf_token
    environment.globals["current_user"] = _template_user


def add_users_option(parser: argparse.ArgumentParser) -> None:
    """``--users FILE``: who may sign in to a command's web UI (``nebula up``, ``nebula serve``)."""
    parser.add_argument(
        "--users",
        type=pathlib.Path,
        default=settings.Settings().users_file,
        metavar="FILE",
        help="who may sign in: a users file (default: $NEBULA_USERS_FILE); without one, "
        "the web UI is open to anyone who can reach it",
    )
