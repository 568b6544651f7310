"""POST /hooks/git: a signed push syncs exactly the sources that follow it, and nothing else does.

Requests carry the provider payloads of ``tests/nebula/webhook_payloads/``, signed here as
GitHub, Gitea and GitLab sign them. The trigger records what was asked.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import pathlib
from typing import Any

import httpx
import pytest

from nebula.resources import ResourceKey

PAYLOADS = pathlib.Path(__file__).parent.parent / "nebula" / "webhook_payloads"
GITHUB_URL = "https://github.com/nebula-lab/homelab.git"
GITLAB_URL = "git@gitlab.com:nebula-lab/infra/homelab.git"


def body(name: str) -> bytes:
    return (PAYLOADS / name).read_bytes()


def sign(payload: bytes, secret: str) -> str:
    """The hex HMAC-SHA256 of the raw body, as GitHub and Gitea compute it."""
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def github(payload: bytes, secret: str, *, event: str = "push") -> dict[str, str]:
    digest = sign(payload, secret)
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "X-Hub-Signature-256": f"sha256={digest}",
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/044aadd",
    }


@pytest.fixture
def sources(homelab: Any) -> None:
    """Five sources of the GitHub repository, and one of a GitLab project."""
    homelab.put(homelab.git_source("homelab", GITHUB_URL))
    homelab.put(homelab.git_source("staging", GITHUB_URL, branch="staging"))
    homelab.put(
        homelab.git_source("signed-otherwise", GITHUB_URL, webhook=("other-webhook", "hmac"))
    )
    homelab.put(homelab.git_source("unsigned", GITHUB_URL, webhook=None))
    homelab.put(homelab.git_source("paused", "git@github.com:nebula-lab/homelab", suspend=True))
    homelab.put(
        homelab.git_source(
            "gitlab", GITLAB_URL, namespace="lab", webhook=("gitlab-webhook", "token")
        )
    )


@pytest.mark.usefixtures("sources")
async def test_a_signed_github_push_triggers_exactly_the_source_that_follows_the_branch(
    client: httpx.AsyncClient, trigger: Any, webhook_secret: str
) -> None:
    payload = body("github_push.json")

    response = await client.post(
        "/hooks/git", content=payload, headers=github(payload, webhook_secret)
    )

    assert response.status_code == 202
    assert response.json() == {
        "event": "push",
        "provider": "github",
        "ref": "refs/heads/main",
        "revision": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
        "triggered": ["flux.homelab"],
        "suspended": ["flux.paused"],
    }
    assert trigger.requested == [ResourceKey("GitSource", "flux", "homelab")]


@pytest.mark.usefixtures("sources")
async def test_a_push_signed_with_a_wrong_secret_is_refused_and_triggers_nothing(
    client: httpx.AsyncClient, trigger: Any
) -> None:
    payload = body("github_push.json")

    response = await client.post("/hooks/git", content=payload, headers=github(payload, "guessed"))

    assert response.status_code == 401
    assert response.json() == {"detail": "signature does not match"}
    assert trigger.requested == []


@pytest.mark.usefixtures("sources")
async def test_a_push_without_a_signature_is_refused_with_the_same_words(
    client: httpx.AsyncClient, trigger: Any
) -> None:
    headers = {"X-GitHub-Event": "push", "Content-Type": "application/json"}

    response = await client.post("/hooks/git", content=body("github_push.json"), headers=headers)

    assert response.status_code == 401
    assert response.json() == {"detail": "signature does not match"}
    assert trigger.requested == []


@pytest.mark.usefixtures("sources")
async def test_a_tampered_body_no_longer_matches_its_signature(
    client: httpx.AsyncClient, trigger: Any, webhook_secret: str
) -> None:
    payload = body("github_push.json")
    tampered = payload.replace(b"0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c", b"f" * 40, 1)

    response = await client.post(
        "/hooks/git", content=tampered, headers=github(payload, webhook_secret)
    )

    assert response.status_code == 401
    assert trigger.requested == []


@pytest.mark.usefixtures("sources")
async def test_a_verified_push_to_another_branch_triggers_nothing(
    client: httpx.AsyncClient, trigger: Any, webhook_secret: str
) -> None:
    payload = body("github_push.json").replace(b'"refs/heads/main"', b'"refs/heads/feature/gpu"')

    response = await client.post(
        "/hooks/git", content=payload, headers=github(payload, webhook_secret)
    )

    assert response.status_code == 200
    assert response.json()["triggered"] == []
    assert trigger.requested == []


@pytest.mark.usefixtures("sources")
async def test_a_signed_push_of_a_repository_no_source_follows_is_refused(
    client: httpx.AsyncClient, trigger: Any, webhook_secret: str
) -> None:
    payload = body("gitea_push.json")
    headers = {
        "X-Gitea-Event": "push",
        "X-Gitea-Signature": sign(payload, webhook_secret),
    }

    response = await client.post("/hooks/git", content=payload, headers=headers)

    # No source of that repository could verify it: the same answer as a wrong secret.
    assert response.status_code == 401
    assert trigger.requested == []


async def test_a_signed_gitea_push_triggers_the_source_that_follows_it_over_ssh(
    client: httpx.AsyncClient, trigger: Any, homelab: Any, webhook_secret: str
) -> None:
    homelab.put(homelab.git_source("home", "ssh://git@git.home.arpa:2222/nebula/homelab.git"))
    payload = body("gitea_push.json")
    headers = {
        "X-GitHub-Event": "push",
        "X-Gitea-Event": "push",
        "X-Gitea-Signature": sign(payload, webhook_secret),
    }

    response = await client.post("/hooks/git", content=payload, headers=headers)

    assert response.status_code == 202
    assert response.json()["provider"] == "gitea"
    assert trigger.requested == [ResourceKey("GitSource", "flux", "home")]


@pytest.mark.usefixtures("sources")
async def test_a_gitlab_push_with_the_right_token_triggers_its_source(
    client: httpx.AsyncClient, trigger: Any, gitlab_token: str
) -> None:
    headers = {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": gitlab_token}

    response = await client.post("/hooks/git", content=body("gitlab_push.json"), headers=headers)

    assert response.status_code == 202
    assert response.json()["triggered"] == ["lab.gitlab"]
    assert trigger.requested == [ResourceKey("GitSource", "lab", "gitlab")]


@pytest.mark.usefixtures("sources")
async def test_a_gitlab_push_with_a_wrong_token_is_refused(
    client: httpx.AsyncClient, trigger: Any, gitlab_token: str
) -> None:
    headers = {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": gitlab_token[:-1]}

    response = await client.post("/hooks/git", content=body("gitlab_push.json"), headers=headers)

    assert response.status_code == 401
    assert trigger.requested == []


@pytest.mark.usefixtures("sources")
async def test_a_github_ping_answers_ok_and_triggers_nothing(
    client: httpx.AsyncClient, trigger: Any, webhook_secret: str
) -> None:
    payload = body("github_ping.json")

    response = await client.post(
        "/hooks/git", content=payload, headers=github(payload, webhook_secret, event="ping")
    )

    assert response.status_code == 200
    assert response.json() == {
        "event": "ping",
        "provider": "github",
        "ref": None,
        "revision": None,
        "triggered": [],
        "suspended": [],
    }
    assert trigger.requested == []


async def test_an_event_other_than_a_push_is_answered_and_ignored(
    client: httpx.AsyncClient, trigger: Any
) -> None:
    response = await client.post(
        "/hooks/git", json={"action": "opened"}, headers={"X-GitHub-Event": "issues"}
    )

    assert response.status_code == 200
    assert response.json()["event"] == "issues"
    assert trigger.requested == []


async def test_a_request_from_no_known_provider_is_a_bad_request(
    client: httpx.AsyncClient, trigger: Any
) -> None:
    response = await client.post("/hooks/git", content=body("github_push.json"))

    assert response.status_code == 400
    assert "X-GitHub-Event" in response.json()["detail"]
    assert trigger.requested == []


async def test_a_push_whose_payload_is_not_json_is_a_bad_request(
    client: httpx.AsyncClient, trigger: Any
) -> None:
    response = await client.post(
        "/hooks/git", content=b"\x00\xff", headers={"X-GitHub-Event": "push"}
    )

    assert response.status_code == 400
    assert "not JSON" in response.json()["detail"]
    assert trigger.requested == []


async def test_a_push_payload_without_a_repository_is_a_bad_request_that_names_it(
    client: httpx.AsyncClient,
) -> None:
    payload = {"ref": "refs/heads/main", "after": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"}

    response = await client.post("/hooks/git", json=payload, headers={"X-GitHub-Event": "push"})

    assert response.status_code == 400
    assert "repository" in response.json()["detail"]


@pytest.mark.usefixtures("sources")
async def test_neither_the_secret_nor_the_signature_is_ever_logged(
    client: httpx.AsyncClient, webhook_secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    payload = body("github_push.json")
    good = github(payload, webhook_secret)
    bad = github(payload, "guessed")
    caplog.set_level(logging.DEBUG)

    accepted = await client.post("/hooks/git", content=payload, headers=good)
    refused = await client.post("/hooks/git", content=payload, headers=bad)

    assert (accepted.status_code, refused.status_code) == (202, 401)
    assert caplog.records, "the webhook logs what it did"
    for secret in (webhook_secret, good["X-Hub-Signature-256"], bad["X-Hub-Signature-256"]):
        assert secret not in caplog.text
        assert secret.removeprefix("sha256=") not in caplog.text


async def test_the_webhook_is_documented_with_its_answers(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/openapi.json")

    operation = response.json()["paths"]["/hooks/git"]["post"]
    assert set(operation["responses"]) >= {"200", "202", "400", "401"}
