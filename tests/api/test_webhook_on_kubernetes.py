"""On k3s, the webhook asks the operator for a sync by stamping the GitSource's annotation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator

import fastapi
import httpx
import kubernetes.client
import pytest

from api import serve
from nebula import db
from nebula.resources import ResourceKey
from nebula.store import kubernetes as kubernetes_store
from nebula.sync import REQUESTED_AT
from tests.controllers import emulator

URL = "https://github.com/nebula-lab/homelab.git"
SECRET = "shared-with-github"


@pytest.fixture
def cluster() -> Iterator[emulator.Cluster]:
    with emulator.serve() as served:
        yield served


@pytest.fixture
def app(cluster: emulator.Cluster, database: str) -> Iterator[fastapi.FastAPI]:
    db.migrate(database)
    api = kubernetes_store.connect(cluster.url)
    custom = kubernetes.client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(
        "nebula.dev", "v1alpha1", "default", "gitsources",
        {
            "apiVersion": "nebula.dev/v1alpha1", "kind": "GitSource",
            "metadata": {"name": "homelab", "namespace": "default"},
            "spec": {"url": URL, "path": "manifests",
                     "webhookSecretRef": {"name": "github-webhook", "key": "hmac"}},
        },
    )  # fmt: skip
    secret = {"hmac": base64.b64encode(SECRET.encode()).decode()}
    kubernetes.client.CoreV1Api(api).create_namespaced_secret(
        "default", {"metadata": {"name": "github-webhook"}, "data": secret}
    )
    yield serve.cluster_app(api, database)
    api.close()


async def _post(app: fastapi.FastAPI, body: bytes, headers: dict[str, str]) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://nebula") as client:
        return await client.post("/hooks/git", content=body, headers=headers)


def _push(secret: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"ref": "refs/heads/main", "after": "a" * 40,
                       "repository": {"clone_url": URL}}).encode()  # fmt: skip
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {"X-GitHub-Event": "push", "X-Hub-Signature-256": signature,
               "Content-Type": "application/json"}  # fmt: skip
    return body, headers


def _annotations(cluster: emulator.Cluster) -> dict[str, str]:
    found = cluster.objects("GitSource")[ResourceKey("GitSource", "default", "homelab")]
    return dict(found["metadata"].get("annotations") or {})


async def test_a_signed_push_stamps_requested_at_on_the_gitsource(
    app: fastapi.FastAPI, cluster: emulator.Cluster
) -> None:
    body, headers = _push(SECRET)

    response = await _post(app, body, headers)

    assert response.status_code == 202, response.text
    assert REQUESTED_AT in _annotations(cluster)


async def test_a_push_signed_with_another_secret_stamps_nothing(
    app: fastapi.FastAPI, cluster: emulator.Cluster
) -> None:
    body, headers = _push("guessed")

    response = await _post(app, body, headers)

    assert response.status_code == 401
    assert REQUESTED_AT not in _annotations(cluster)
