"""Push webhooks: each provider's payload is read, its signature checked, its repository matched.

The payloads under ``webhook_payloads/`` are shaped like the providers' documented push
events (GitHub, Gitea/Forgejo, GitLab); the signatures are computed here as each provider
computes them, over the raw bytes of the file.
"""

from __future__ import annotations

import hashlib
import hmac
import pathlib
import urllib.parse
from typing import Any

import pytest

from nebula import errors, webhooks
from nebula.resources.git_source import GitSource

PAYLOADS = pathlib.Path(__file__).parent / "webhook_payloads"
SECRET = "s3cret-shared-with-the-provider"


def payload(name: str) -> bytes:
    return (PAYLOADS / name).read_bytes()


def hex_hmac(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github_headers(body: bytes, *, event: str = "push", secret: str = SECRET) -> dict[str, str]:
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "X-Hub-Signature-256": f"sha256={hex_hmac(body, secret)}",
        "Content-Type": "application/json",
    }


def gitea_headers(body: bytes, *, secret: str = SECRET) -> dict[str, str]:
    # Gitea sends GitHub's and Gogs' headers too, for compatibility.
    return {
        "X-GitHub-Event": "push",
        "X-Gogs-Event": "push",
        "X-Gitea-Event": "push",
        "X-Gitea-Delivery": "f6266f16-1bf3-46a5-9ea4-602e06ead473",
        "X-Gitea-Signature": hex_hmac(body, secret),
        "Content-Type": "application/json",
    }


def gitlab_headers(*, token: str = SECRET, event: str = "Push Hook") -> dict[str, str]:
    return {"X-Gitlab-Event": event, "X-Gitlab-Token": token, "Content-Type": "application/json"}


def source(url: str, **ref: str) -> GitSource:
    spec: dict[str, Any] = {"url": url, "ref": ref or {"branch": "main"}}
    return GitSource.model_validate(
        {"metadata": {"name": "homelab", "namespace": "flux"}, "spec": spec}
    )


def push(name: str, headers: dict[str, str]) -> webhooks.Push:
    event = webhooks.parse(headers, payload(name))
    assert isinstance(event, webhooks.Push)
    return event


# --- Reading each provider's push. ---


def test_a_github_push_names_its_branch_commit_and_repository_urls() -> None:
    body = payload("github_push.json")

    event = webhooks.parse(github_headers(body), body)

    assert event == webhooks.Push(
        provider="github",
        ref="refs/heads/main",
        after="0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
        urls=(
            "https://github.com/nebula-lab/homelab.git",
            "git@github.com:nebula-lab/homelab.git",
            "https://github.com/nebula-lab/homelab",
        ),
    )
    assert isinstance(event, webhooks.Push)
    assert event.branch == "main"
    assert event.tag is None


def test_a_gitea_push_is_recognised_as_gitea_although_it_carries_github_headers() -> None:
    body = payload("gitea_push.json")

    event = webhooks.parse(gitea_headers(body), body)

    assert isinstance(event, webhooks.Push)
    assert event.provider == "gitea"
    assert event.after == "bffeb74224043ba2feb48d137756c8a9331c449a"
    assert "ssh://git@git.home.arpa:2222/nebula/homelab.git" in event.urls


def test_a_forgejo_push_is_read_as_gitea() -> None:
    body = payload("gitea_push.json")
    headers = {"X-Forgejo-Event": "push", "X-Forgejo-Signature": hex_hmac(body)}

    event = webhooks.parse(headers, body)

    assert isinstance(event, webhooks.Push)
    assert event.provider == "gitea"
    assert webhooks.verify("gitea", headers, body, SECRET)


def test_a_gitlab_push_reads_the_project_urls() -> None:
    event = push("gitlab_push.json", gitlab_headers())

    assert event.provider == "gitlab"
    assert event.ref == "refs/heads/main"
    assert event.urls == (
        "https://gitlab.com/nebula-lab/infra/homelab.git",
        "git@gitlab.com:nebula-lab/infra/homelab.git",
        "https://gitlab.com/nebula-lab/infra/homelab",
    )


def test_a_gitlab_tag_push_is_a_push_of_a_tag() -> None:
    event = push("gitlab_tag_push.json", gitlab_headers(event="Tag Push Hook"))

    assert event.tag == "v1.4.0"
    assert event.branch is None


def test_header_names_are_matched_whatever_their_case() -> None:
    body = payload("github_push.json")
    headers = {name.lower(): value for name, value in github_headers(body).items()}

    assert isinstance(webhooks.parse(headers, body), webhooks.Push)
    assert webhooks.verify("github", headers, body, SECRET)


def test_a_form_encoded_github_push_is_read_from_its_payload_field() -> None:
    body = urllib.parse.urlencode({"payload": payload("github_push.json").decode()}).encode()
    headers = github_headers(body) | {"Content-Type": "application/x-www-form-urlencoded"}

    event = webhooks.parse(headers, body)

    assert isinstance(event, webhooks.Push)
    assert event.after == "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"
    assert webhooks.verify("github", headers, body, SECRET)


def test_a_github_ping_is_a_ping_and_needs_no_payload_parsing() -> None:
    body = payload("github_ping.json")

    assert webhooks.parse(github_headers(body, event="ping"), body) == webhooks.Ping("github")


def test_an_event_other_than_a_push_is_ignored_by_name() -> None:
    headers = {"X-GitHub-Event": "issues"}

    assert webhooks.parse(headers, b"{}") == webhooks.Ignored("github", "issues")


# --- Malformed requests: a typed, permanent error that says what was expected. ---


def test_a_request_without_a_provider_header_is_malformed() -> None:
    with pytest.raises(webhooks.MalformedWebhook, match="X-GitHub-Event, X-Gitea-Event"):
        webhooks.parse({"Content-Type": "application/json"}, payload("github_push.json"))


def test_a_malformed_webhook_is_a_permanent_error() -> None:
    assert issubclass(webhooks.MalformedWebhook, errors.PermanentError)


def test_a_push_body_that_is_not_json_is_malformed() -> None:
    with pytest.raises(webhooks.MalformedWebhook, match="not JSON"):
        webhooks.parse({"X-GitHub-Event": "push"}, b"ref=refs/heads/main")


def test_a_push_without_a_repository_names_the_missing_field() -> None:
    body = b'{"ref": "refs/heads/main", "after": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"}'

    with pytest.raises(webhooks.MalformedWebhook, match="github push payload: repository"):
        webhooks.parse({"X-GitHub-Event": "push"}, body)


def test_a_push_whose_commit_is_not_a_full_sha_is_malformed() -> None:
    body = payload("gitlab_push.json").replace(
        b'"after": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"', b'"after": "da15608"'
    )

    with pytest.raises(webhooks.MalformedWebhook, match="after"):
        webhooks.parse(gitlab_headers(), body)


def test_a_json_array_is_not_a_push_payload() -> None:
    with pytest.raises(webhooks.MalformedWebhook, match="gitea push payload"):
        webhooks.parse({"X-Gitea-Event": "push"}, b"[]")


# --- Signatures: right, wrong, missing. ---


@pytest.mark.parametrize(
    ("provider", "name", "headers"),
    [
        ("github", "github_push.json", github_headers),
        ("gitea", "gitea_push.json", gitea_headers),
    ],
)
def test_an_hmac_signature_made_with_the_secret_verifies(
    provider: webhooks.Provider, name: str, headers: Any
) -> None:
    body = payload(name)

    assert webhooks.verify(provider, headers(body), body, SECRET)


@pytest.mark.parametrize(
    ("provider", "name", "headers"),
    [
        ("github", "github_push.json", github_headers),
        ("gitea", "gitea_push.json", gitea_headers),
    ],
)
def test_an_hmac_signature_made_with_another_secret_does_not_verify(
    provider: webhooks.Provider, name: str, headers: Any
) -> None:
    body = payload(name)

    assert not webhooks.verify(provider, headers(body, secret="guessed"), body, SECRET)


def test_a_signature_of_another_body_does_not_verify() -> None:
    body = payload("github_push.json")
    tampered = body.replace(b"refs/heads/main", b"refs/heads/evil")

    assert not webhooks.verify("github", github_headers(body), tampered, SECRET)


@pytest.mark.parametrize("provider", ["github", "gitea", "gitlab"])
def test_a_request_without_a_signature_does_not_verify(provider: webhooks.Provider) -> None:
    body = payload("github_push.json")

    assert not webhooks.verify(provider, {"Content-Type": "application/json"}, body, SECRET)


@pytest.mark.parametrize(
    "signature",
    ["", "sha256=", "sha1=" + "0" * 40, "0" * 64, "sha256=zz", "sha256=ü"],
    ids=["empty", "no-digest", "sha1", "no-scheme", "not-hex", "not-ascii"],
)
def test_a_malformed_github_signature_does_not_verify(signature: str) -> None:
    body = payload("github_push.json")

    assert not webhooks.verify("github", {"X-Hub-Signature-256": signature}, body, SECRET)


def test_an_uppercase_hex_signature_verifies() -> None:
    body = payload("github_push.json")
    headers = {"X-Hub-Signature-256": f"sha256={hex_hmac(body).upper()}"}

    assert webhooks.verify("github", headers, body, SECRET)


def test_a_gitlab_token_verifies_only_when_it_is_the_secret() -> None:
    body = payload("gitlab_push.json")

    assert webhooks.verify("gitlab", gitlab_headers(), body, SECRET)
    assert not webhooks.verify("gitlab", gitlab_headers(token="guessed"), body, SECRET)
    assert not webhooks.verify("gitlab", gitlab_headers(token=SECRET + " "), body, SECRET)


def test_an_empty_secret_verifies_nothing_even_an_empty_signature() -> None:
    body = payload("github_push.json")

    assert not webhooks.verify("github", github_headers(body, secret=""), body, "")
    assert not webhooks.verify("gitlab", gitlab_headers(token=""), body, "")


def test_a_signature_for_one_provider_is_not_accepted_as_another() -> None:
    body = payload("github_push.json")

    # A GitHub signature header proves nothing to the GitLab check, and the other way round.
    assert not webhooks.verify("gitlab", github_headers(body), body, SECRET)
    assert not webhooks.verify("github", gitlab_headers(), body, SECRET)


# --- URL normalisation. ---


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("https://github.com/me/homelab", "https://github.com/me/homelab.git"),
        ("https://github.com/me/homelab/", "https://github.com/me/homelab"),
        ("https://github.com/me/homelab.git/", "https://github.com/me/homelab"),
        ("HTTPS://GitHub.COM/me/homelab", "https://github.com/me/homelab"),
        ("https://github.com/Me/HomeLab", "https://github.com/me/homelab"),
        ("git@github.com:me/homelab.git", "ssh://git@github.com/me/homelab.git"),
        ("git@github.com:me/homelab.git", "https://github.com/me/homelab"),
        ("ssh://git@git.home.arpa:2222/me/homelab.git", "https://git.home.arpa/me/homelab"),
        ("http://git.home.arpa:3000/me/homelab", "https://git.home.arpa/me/homelab.git"),
        ("git@gitlab.com:group/sub/homelab.git", "https://gitlab.com/group/sub/homelab"),
        ("git@git.home.arpa:/srv/git/homelab.git", "ssh://git@git.home.arpa/srv/git/homelab"),
    ],
)
def test_urls_of_one_repository_normalise_to_the_same_id(one: str, other: str) -> None:
    assert webhooks.repository_id(one) is not None
    assert webhooks.repository_id(one) == webhooks.repository_id(other)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("https://github.com/me/homelab", "https://github.com/me/homelab-old"),
        ("https://github.com/me/homelab", "https://github.com/you/homelab"),
        ("https://github.com/me/homelab", "https://gitlab.com/me/homelab"),
        ("https://github.com/me/homelab", "https://github.com/me/homelab/sub"),
        ("git@github.com:me/homelab.git", "git@github.com:me/homelab.github.git"),
    ],
)
def test_urls_of_different_repositories_stay_different(one: str, other: str) -> None:
    assert webhooks.repository_id(one) != webhooks.repository_id(other)


@pytest.mark.parametrize("url", ["https://github.com/", ""])
def test_a_url_without_host_or_path_names_no_repository(url: str) -> None:
    assert webhooks.repository_id(url) is None


def test_a_local_repository_is_named_by_its_exact_path() -> None:
    # nebula up syncs from a file:// repository; a hook on this machine may name it.
    assert webhooks.repository_id("file:///srv/git/homelab.git") == "file:/srv/git/homelab.git"
    assert webhooks.repository_id("file:///srv/git/homelab/.git") == "file:/srv/git/homelab"
    assert webhooks.repository_id("file:///srv/git/Homelab.git") != (
        webhooks.repository_id("file:///srv/git/homelab.git")
    )


# --- Matching a push to the GitSources it concerns. ---


def test_a_push_matches_a_source_following_its_branch_by_any_of_its_urls() -> None:
    event = push("github_push.json", github_headers(payload("github_push.json")))

    assert webhooks.matches(event, source("https://github.com/nebula-lab/homelab"))
    assert webhooks.matches(event, source("git@github.com:nebula-lab/homelab.git"))
    assert webhooks.matches(event, source("ssh://git@github.com/nebula-lab/homelab.git"))


def test_a_push_to_another_branch_matches_nothing_but_names_the_same_repository() -> None:
    event = push("github_push.json", github_headers(payload("github_push.json")))
    staging = source("https://github.com/nebula-lab/homelab.git", branch="staging")

    assert webhooks.same_repository(event, staging)
    assert not webhooks.matches(event, staging)


def test_a_branch_is_compared_whole_not_as_a_prefix() -> None:
    event = push("github_push.json", github_headers(payload("github_push.json")))

    assert not webhooks.matches(event, source("https://github.com/nebula-lab/homelab", branch="ma"))
    assert not webhooks.matches(
        event, source("https://github.com/nebula-lab/homelab", branch="main-2")
    )


def test_a_push_to_another_repository_matches_no_source() -> None:
    event = push("gitea_push.json", gitea_headers(payload("gitea_push.json")))

    assert not webhooks.matches(event, source("https://github.com/nebula-lab/homelab"))
    assert not webhooks.same_repository(event, source("file:///srv/git/homelab.git"))


def test_a_tag_push_matches_a_source_following_that_tag_only() -> None:
    event = push("gitlab_tag_push.json", gitlab_headers(event="Tag Push Hook"))
    url = "https://gitlab.com/nebula-lab/infra/homelab.git"

    assert webhooks.matches(event, source(url, tag="v1.4.0"))
    assert not webhooks.matches(event, source(url, tag="v1.3.0"))
    # A branch named like the tag is another ref.
    assert not webhooks.matches(event, source(url, branch="v1.4.0"))


def test_a_source_pinned_to_a_commit_is_never_moved_by_a_push() -> None:
    event = push("gitlab_push.json", gitlab_headers())
    pinned = source("https://gitlab.com/nebula-lab/infra/homelab", commit=event.after)

    assert not webhooks.matches(event, pinned)
