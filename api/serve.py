"""``nebula serve``: the web UI and the git webhook on k3s, next to ``nebula operator``.

The same app as ``nebula up`` serves, over the cluster's objects: the Kubernetes store, the
sync history in PostgreSQL, Secrets from the API server, and a webhook that asks the operator
for a sync by stamping the GitSource's ``nebula.dev/requested-at`` annotation. Runs no
reconciler itself. Registered as a ``nebula.commands`` entry point; holds no business rules.
"""

from __future__ import annotations

import argparse
import contextlib

import fastapi
import kubernetes.client
import uvicorn

from api import app as web
from nebula import db, errors, secrets, settings
from nebula.store import kubernetes as kubernetes_store
from nebula.sync import History

__all__ = ["SERVE", "ServeCommand", "cluster_app"]


class ServeCommand:
    """``nebula serve``: the web UI and webhook over the Kubernetes API."""

    name = "serve"
    help = "serve the web UI and the git webhook over a cluster (k3s), beside the operator"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        """Adds where to listen, the database, and (for tests) the API server."""
        parser.add_argument("--host", default="0.0.0.0", help="default: 0.0.0.0")
        parser.add_argument("--port", type=int, default=8080, help="default: 8080")
        parser.add_argument("--database-url", help="default: $DATABASE_URL")
        parser.add_argument(
            "--kube-server", help="API server URL (default: in-cluster, else the kubeconfig)"
        )

    def run(self, args: argparse.Namespace) -> int:
        """Serves until SIGINT or SIGTERM (uvicorn's own handling); returns 0."""
        database_url = args.database_url or settings.Settings().database_url
        if not database_url:
            raise errors.ConfigurationError(
                "no database: pass --database-url or set DATABASE_URL (a postgresql:// URL)"
            )
        db.migrate(str(database_url))
        with contextlib.closing(kubernetes_store.connect(args.kube_server)) as api:
            app = cluster_app(api, str(database_url))
            uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
        return 0


def cluster_app(api: kubernetes.client.ApiClient, database_url: str) -> fastapi.FastAPI:
    """The web app over a cluster: its objects, its Secrets, the operator as the trigger."""
    return web.create_app(
        store=kubernetes_store.KubernetesStore(api),
        runs=History(database_url),
        trigger=kubernetes_store.KubernetesTrigger(api),
        secrets=secrets.KubernetesSecrets(api),
    )


SERVE = ServeCommand()
