"""The app factory: one FastAPI app over the collaborators a runtime hands it.

Called by the runtimes (``nebula up`` in the embedded runtime, the web Deployment on k3s) and
by the tests, each with its own store, history, trigger and secrets. It mounts the routers
with their prefixes and tags, the stylesheet, and the authentication of :mod:`api.auth`; it
opens nothing, reads no environment variable and keeps nothing at module level, so two apps
never share state.

With ``users`` the app is closed: everything but ``/login``, ``/healthz``, ``/hooks/git``,
``/api/v1/agents/heartbeat`` and ``/static`` needs a signed-in user or an API token (viewer at
least), and forms need their CSRF token. Without (``users=None``: the tests, a single-user
``nebula up`` without a users file) it is open: everyone is an admin named ``anonymous``, and
only cross-site form posts are refused. Bind an open app to localhost only.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import logging
import socket
from collections.abc import Callable, Collection, Iterator

import fastapi
import fastapi.middleware.gzip
import fastapi.responses
import fastapi.staticfiles
import uvicorn

from api import auth, deps, templating, views
from api.routes import agents, docs, health, hooks, kinds, login, overview, resources, sync
from api.routes import changes as change_routes
from api.routes import events as event_routes
from nebula import errors
from nebula.auth import Sessions, Users
from nebula.changes import ChangeService
from nebula.heartbeats import HeartbeatStore
from nebula.secrets import Secrets
from nebula.store import ResourceStore
from nebula.sync import History, SyncTrigger

__all__ = ["API_PREFIX", "UNAVAILABLE", "Server", "bind", "create_app", "steady_collector"]

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
"""Where the JSON API lives; pages sit at the root, webhooks under /hooks."""
UNAVAILABLE = "the store or the sync history did not answer; try again shortly"
"""The whole answer to a request that met a transient error: no host, database or driver text."""


async def _transient(request: fastapi.Request, error: Exception) -> fastapi.responses.JSONResponse:
    """A transient error of the core (the database did not answer) as 503 with Retry-After."""
    delay = error.delay if isinstance(error, errors.TransientError) else 10.0
    log.warning("%s %s: %s", request.method, request.url.path, error)
    return fastapi.responses.JSONResponse(
        {"detail": UNAVAILABLE},
        status_code=fastapi.status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(max(1, round(delay)))},
    )


class Server(uvicorn.Server):
    """uvicorn without its own signal handling, for the commands that serve the app (``nebula
    up``, ``nebula serve``): they stop in order themselves, the live streams before the server
    (uvicorn waits for every open response before it stops)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        """Serves until ``should_exit``; a start-up failure raises instead of ``sys.exit``.

        uvicorn ends the process from inside its task when it cannot start, which asyncio lets
        through the whole loop and leaves every other thread of the command running.
        """
        try:
            await super().serve(sockets)
        except SystemExit:
            raise errors.ConfigurationError("the web server could not start") from None


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` for :meth:`Server.serve`, before anything else starts.

    Raises :class:`~nebula.errors.AddressInUse` when another program holds the port, and
    ConfigurationError when the address is not this machine's (a typo in ``--host``).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # As uvicorn does: a port left in TIME_WAIT by the last run is free to take again.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    # Taken by another program: the one thing a newcomer meets on a busy homelab machine.
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise errors.AddressInUse(
                f"{host}:{port} is in use by another program; stop it, or pass --port "
                f"to listen elsewhere (e.g. --port {port + 1})"
            ) from None
        raise errors.ConfigurationError(
            f"cannot listen on {host}:{port}: {error.strerror}; check --host and --port"
        ) from None
    return sock


def steady_collector() -> None:
    """Makes the garbage collector's full passes rare in a long-running web process.

    The pages keep what they read (the store's lists, the summaries) between requests, a few
    hundred thousand objects; with CPython's default thresholds a request every few dozen
    pays for a full pass over all of them (90 ms with 1,000 resources, twice a page's whole
    time). Young objects are still collected as usual, only less often (every 5,000
    allocations instead of 700), and full passes come 10x more rarely. ``nebula up`` and
    ``nebula serve`` call it once, before serving; ``bench/web.py`` does the same.
    """
    gc.set_threshold(5000, 20, 100)


def create_app(
    *,
    # Collaborators: the runtime owns them, opens them before and closes them after.
    store: ResourceStore,
    runs: History,
    trigger: SyncTrigger,
    secrets: Secrets,
    heartbeats: HeartbeatStore | None = None,
    agent_token: str | None = None,
    # Who may use the app; None (both): open to everyone, as an admin. Sessions are opened and
    # closed by the runtime, like the store.
    users: Users | None = None,
    sessions: Sessions | None = None,
    # The change requests this app lists and decides (None: none here), and the LISTEN that
    # feeds GET /events (None: no live updates). The runtime closes the feed before it stops
    # the web server, or the open streams keep the server waiting.
    changes: ChangeService | None = None,
    events: event_routes.Feed | None = None,
    # What keeps the runtime in this process from reconciling (the embedded runtime's
    # problems), shown on every page and by /healthz; None: no runtime here.
    problems: Callable[[], list[str]] | None = None,
    # The kinds a controller runs beside this app; the pages say the others are only stored.
    reconciled_kinds: Collection[str] = views.RECONCILED_KINDS,
    # Presentation.
    title: str = "Nebula Command",
) -> fastapi.FastAPI:
    """A new app serving the status page, change requests, the JSON API, live events (SSE),
    the git webhook and the probe.

    Raises :class:`~nebula.errors.ConfigurationError` for ``users`` without ``sessions``.
    """
    if users is not None and sessions is None:
        raise errors.ConfigurationError("an app with users needs a session store (sessions=)")
    app = fastapi.FastAPI(
        title=title,
        summary="GitOps for a homelab: read views of every kind and of the sync history.",
        version="v1",
        openapi_url=f"{API_PREFIX}/openapi.json",
        # Our own docs page (routes/docs.py): FastAPI's loads Swagger UI from a CDN.
        docs_url=None,
        redoc_url=None,
        # Every route, present and future, checks CSRF; the gate below identifies the caller.
        dependencies=[fastapi.Depends(auth.check_csrf)],
    )
    templates = templating.templates()
    auth.install_template_globals(templates.env)
    app.state.services = deps.Services(
        store=store,
        runs=runs,
        trigger=trigger,
        secrets=secrets,
        templates=templates,
        heartbeats=heartbeats,
        agent_token=agent_token,
        users=users,
        sessions=sessions,
        changes=changes,
        events=events,
        problems=problems,
        summaries=views.Summaries(reconciled_kinds),
    )
    templates.env.globals["runtime_problems"] = problems or list
    app.add_exception_handler(errors.TransientError, _transient)
    app.include_router(overview.router, tags=["pages"])
    app.include_router(kinds.router, prefix="/kinds", tags=["pages"])
    app.include_router(login.router, tags=["pages"])
    app.include_router(change_routes.router, tags=["pages"])
    app.include_router(change_routes.api, prefix=API_PREFIX, tags=["changes"])
    app.include_router(event_routes.router)
    app.include_router(resources.router, prefix=f"{API_PREFIX}/resources", tags=["resources"])
    app.include_router(sync.router, prefix=f"{API_PREFIX}/sync-runs", tags=["sync"])
    app.include_router(hooks.router, prefix="/hooks", tags=["webhooks"])
    app.include_router(agents.router, prefix=f"{API_PREFIX}/agents", tags=["agents"])
    app.include_router(health.router, tags=["health"])
    app.include_router(docs.router)
    # A middleware, not a router dependency: it also guards the docs, the OpenAPI document
    # and anything mounted later; new routes are closed unless listed in auth.PUBLIC.
    app.add_middleware(auth.Gate, users=users, sessions=sessions, api_prefix=API_PREFIX)
    # The overview of a large homelab is hundreds of KiB of repetitive HTML; gzip makes it tens.
    app.add_middleware(fastapi.middleware.gzip.GZipMiddleware, minimum_size=1024, compresslevel=6)
    # Before /static, which would take /static/docs/... for its own.
    app.mount(
        docs.ASSETS_PATH,
        fastapi.staticfiles.StaticFiles(directory=docs.ASSETS),
        name=docs.ASSETS_NAME,
    )
    app.mount(
        "/static", fastapi.staticfiles.StaticFiles(directory=templating.STATIC), name="static"
    )
    return app
