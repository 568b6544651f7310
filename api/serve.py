"""``nebula serve``: the web UI and the git webhook on k3s, next to ``nebula operator``.

The same app as ``nebula up`` serves, over the cluster's objects: the Kubernetes store, the
sync history in PostgreSQL, Secrets from the API server, and a webhook that asks the operator
for a sync by stamping the GitSource's ``nebula.dev/requested-at`` annotation. ``--users FILE``
closes it to all but the users of that file; ``--changes-source NAMESPACE/NAME`` takes change
requests for that GitSource (approving merges into its branch, then asks the operator for a
sync). Runs no reconciler itself. SIGINT or SIGTERM ends the live streams, then the server.
Registered as a ``nebula.commands`` entry point; holds no business rules.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import pathlib
import socket

import fastapi
import kubernetes.client
import uvicorn

from api import app as web
from api import auth as web_auth
from api.routes import events as event_routes
from controllers import cluster, local
from nebula import auth, cli, db, errors, secrets, settings
from nebula.changes import ChangeService
from nebula.resources import ResourceKey
from nebula.store import kubernetes as kubernetes_store
from nebula.sync import History

__all__ = ["SERVE", "ServeCommand", "change_service", "cluster_app"]


class ServeCommand:
    """``nebula serve``: the web UI and webhook over the Kubernetes API."""

    name = "serve"
    help = "serve the web UI and the git webhook over a cluster (k3s), beside the operator"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        """Adds where to listen, the database, who may sign in, and (for tests) the API server."""
        parser.epilog = cli.examples(
            "nebula serve --database-url postgresql://nebula@postgres/nebula",
            "nebula serve --users /etc/nebula/users.yaml --changes-source nebula-system/homelab",
        )
        parser.add_argument(
            "--host", default="0.0.0.0", help="address to listen on (default: 0.0.0.0)"
        )
        parser.add_argument(
            "--port", type=int, default=8080, help="port to listen on (default: 8080)"
        )
        parser.add_argument(
            "--database-url", help="the sync history and changes (default: $DATABASE_URL)"
        )
        parser.add_argument(
            "--kube-server", help="API server URL (default: in-cluster, else the kubeconfig)"
        )
        web_auth.add_users_option(parser)
        parser.add_argument(
            "--changes-source",
            metavar="NAMESPACE/NAME",
            help="take change requests for this GitSource (default: none)",
        )

    def run(self, args: argparse.Namespace) -> int:
        """Serves until SIGINT or SIGTERM; returns 0."""
        database_url = args.database_url or settings.Settings().database_url
        if not database_url:
            raise errors.ConfigurationError(
                "no database: pass --database-url or set DATABASE_URL (a postgresql:// URL)"
            )
        url = str(database_url)
        users = auth.load_users(args.users) if args.users else None
        # A taken port stops here, before anything is opened.
        listening = web.bind(args.host, args.port)
        changes_source = cluster.source_key(args.changes_source) if args.changes_source else None
        db.migrate(url)
        with (
            contextlib.closing(listening),
            contextlib.closing(kubernetes_store.connect(args.kube_server)) as api,
            contextlib.ExitStack() as stack,
        ):
            sessions = stack.enter_context(auth.Sessions(url)) if users else None
            feed = event_routes.Feed(url)
            changes = (
                change_service(
                    api, url, key=changes_source, state_dir=settings.Settings().state_dir
                )
                if changes_source
                else None
            )
            app = cluster_app(
                api, url, users=users, sessions=sessions, changes=changes, events=feed
            )
            asyncio.run(_serve(app, feed, listening=listening))
        return cli.EXIT_OK


async def _serve(
    app: fastapi.FastAPI, feed: event_routes.Feed, *, listening: socket.socket
) -> None:
    stop = local.stop_on_signals()
    web.steady_collector()
    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=5)
    server = web.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[listening]), name="nebula-web")
    # Either a signal, or the web server ending on its own (it failed).
    waiting = asyncio.create_task(stop.wait())
    await asyncio.wait({waiting, serving}, return_when=asyncio.FIRST_COMPLETED)
    # The live streams first: uvicorn waits for every open response before it stops.
    await asyncio.to_thread(feed.close)
    server.should_exit = True
    waiting.cancel()
    await asyncio.gather(serving, waiting, return_exceptions=True)
    failure = None if serving.cancelled() else serving.exception()
    if failure is not None:
        raise failure


def change_service(
    api: kubernetes.client.ApiClient,
    database_url: str,
    *,
    key: ResourceKey,
    state_dir: pathlib.Path,
) -> ChangeService:
    """The change requests of the GitSource ``key``, as the cluster declares it now.

    Its mirror lives under ``state_dir``; a merge asks the operator for a sync of the source.
    Raises ResourceNotFound when the cluster has no such GitSource, and ConfigurationError when
    it follows a tag or a commit (nothing to merge into).
    """
    trigger = kubernetes_store.KubernetesTrigger(api)
    return cluster.change_service(
        kubernetes_store.KubernetesStore(api),
        database_url,
        key,
        secrets=secrets.KubernetesSecrets(api),
        state_dir=state_dir,
        merged=lambda merged: trigger.request(merged.key),
    )


def cluster_app(
    api: kubernetes.client.ApiClient,
    database_url: str,
    *,
    # Who may sign in; None (both): open to anyone who can reach it.
    users: auth.Users | None = None,
    sessions: auth.Sessions | None = None,
    # Change requests (None: none here), and the LISTEN of the live updates (None: none).
    changes: ChangeService | None = None,
    events: event_routes.Feed | None = None,
) -> fastapi.FastAPI:
    """The web app over a cluster: its objects, its Secrets, the operator as the trigger."""
    return web.create_app(
        store=kubernetes_store.KubernetesStore(api),
        runs=History(database_url),
        trigger=kubernetes_store.KubernetesTrigger(api),
        secrets=secrets.KubernetesSecrets(api),
        users=users,
        sessions=sessions,
        changes=changes,
        events=events,
    )


SERVE = ServeCommand()
