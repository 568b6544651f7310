"""Git push webhooks: who sent one, whether a GitSource's secret signed it, which source it moves.

Called by the web runtime's ``POST /hooks/git`` (``api/routes/hooks.py``), which reads the raw
body, parses it here, and asks for a sync of every source that :func:`matches` the push and
whose secret :func:`verify` accepts. Three providers, three ways of proving who sent it:

- GitHub: ``X-GitHub-Event``, ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``;
- Gitea and Forgejo: ``X-Gitea-Event`` (or ``X-Forgejo-Event``), ``X-Gitea-Signature`` (or
  ``X-Forgejo-Signature``): the same HMAC, bare hex. Gitea also sends GitHub's headers, so it is
  recognised first;
- GitLab: ``X-Gitlab-Event: Push Hook`` (or ``Tag Push Hook``), ``X-Gitlab-Token``: the secret
  itself, over TLS.

Core, no web framework and no I/O. It never logs, stores or echoes a secret or a signature, and
never compares either with ``==`` (only :func:`hmac.compare_digest`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import posixpath
import re
import urllib.parse
from collections.abc import Mapping
from typing import Annotated, Literal

import pydantic

from nebula import errors
from nebula.resources.git_source import GitSource

__all__ = [
    "GITHUB_PING",
    "Ignored",
    "MalformedWebhook",
    "Ping",
    "Provider",
    "Push",
    "Webhook",
    "matches",
    "parse",
    "repository_id",
    "same_repository",
    "verify",
]

Provider = Literal["github", "gitea", "gitlab"]

GITHUB_PING = "ping"
"""The event GitHub sends once when a webhook is created: it asks for a 2xx, nothing more."""

# Header names as the providers document them; lookups are case-insensitive.
_EVENT_HEADERS: tuple[tuple[Provider, str], ...] = (
    # Gitea and Forgejo first: they send X-GitHub-Event too, for compatibility.
    ("gitea", "x-forgejo-event"),
    ("gitea", "x-gitea-event"),
    ("gitlab", "x-gitlab-event"),
    ("github", "x-github-event"),
)
_PUSH_EVENTS: dict[Provider, frozenset[str]] = {
    "github": frozenset({"push"}),
    "gitea": frozenset({"push"}),
    "gitlab": frozenset({"Push Hook", "Tag Push Hook"}),
}
_GITHUB_SIGNATURE = "x-hub-signature-256"
_GITEA_SIGNATURES = ("x-forgejo-signature", "x-gitea-signature")
_GITLAB_TOKEN = "x-gitlab-token"
_FORM = "application/x-www-form-urlencoded"

_SCP_LIKE = re.compile(r"^(?:[^@/:]+@)?(?P<host>[^@/:\[\]]+):(?P<path>(?!//).*)$")


class MalformedWebhook(errors.PermanentError):
    """The request is not a webhook we understand: headers missing, body not a push payload.

    The message says what was expected; it quotes no header value (a signature might be one).
    """


@dataclasses.dataclass(frozen=True)
class Push:
    """A push to one ref of one repository, as a provider reported it."""

    provider: Provider
    ref: str  # refs/heads/main, refs/tags/v1.2.0
    after: str  # the commit the ref points at now; all zeros when the ref was deleted
    urls: tuple[str, ...]  # the repository's clone (https), ssh and web URLs, as sent

    @property
    def branch(self) -> str | None:
        """The branch pushed to, or None when the ref is not a branch (a tag)."""
        return self.ref.removeprefix("refs/heads/") if self.ref.startswith("refs/heads/") else None

    @property
    def tag(self) -> str | None:
        """The tag pushed, or None when the ref is not a tag."""
        return self.ref.removeprefix("refs/tags/") if self.ref.startswith("refs/tags/") else None


@dataclasses.dataclass(frozen=True)
class Ping:
    """GitHub checking that the endpoint answers; nothing to sync."""

    provider: Provider


@dataclasses.dataclass(frozen=True)
class Ignored:
    """An event other than a push (issues, releases, ...): answered, never acted upon."""

    provider: Provider
    event: str


Webhook = Push | Ping | Ignored


# --- Parsing: the providers' payloads are JSON we do not own; only what we use is read. ---


class _Payload(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="ignore", frozen=True)


# SHA-1 or SHA-256 object names, in full.
_Commit = Annotated[str, pydantic.Field(pattern=r"^([0-9a-f]{40}|[0-9a-f]{64})$")]


class _GitHubRepository(_Payload):
    clone_url: str
    ssh_url: str | None = None
    html_url: str | None = None


class _GitHubPush(_Payload):
    """GitHub's and Gitea's push payload: they share these fields."""

    ref: str = pydantic.Field(pattern=r"^refs/")
    after: _Commit
    repository: _GitHubRepository


class _GitLabProject(_Payload):
    git_http_url: str
    git_ssh_url: str | None = None
    web_url: str | None = None


class _GitLabPush(_Payload):
    object_kind: Literal["push", "tag_push"]
    ref: str = pydantic.Field(pattern=r"^refs/")
    after: _Commit
    project: _GitLabProject


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def _detect(headers: Mapping[str, str]) -> tuple[Provider, str]:
    for provider, header in _EVENT_HEADERS:
        if event := headers.get(header, "").strip():
            return provider, event
    raise MalformedWebhook(
        "not a git webhook: expected an X-GitHub-Event, X-Gitea-Event, X-Forgejo-Event"
        " or X-Gitlab-Event header"
    )


def _json(headers: Mapping[str, str], body: bytes) -> object:
    # GitHub and Gitea may be set to send a form with the JSON in its "payload" field.
    if headers.get("content-type", "").split(";")[0].strip().lower() == _FORM:
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        if "payload" not in form:
            raise MalformedWebhook("form-encoded webhook without a 'payload' field")
        text: str | bytes = form["payload"][0]
    else:
        text = body
    try:
        return json.loads(text)
    # Not JSON at all, or not UTF-8: a client that is not a git provider.
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MalformedWebhook(f"webhook body is not JSON: {error}") from None


def _describe(error: pydantic.ValidationError, what: str) -> str:
    problems = [f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in error.errors()[:3]]
    return f"malformed {what} payload: " + "; ".join(problems)


def parse(headers: Mapping[str, str], body: bytes) -> Webhook:
    """The event a webhook request carries, read from its headers and raw body.

    Raises :class:`MalformedWebhook` when no provider header is present or a push payload
    lacks what a push must have. Checks no signature: call :func:`verify` for that.
    """
    headers = _lower(headers)
    provider, event = _detect(headers)
    if provider == "github" and event == GITHUB_PING:
        return Ping(provider)
    if event not in _PUSH_EVENTS[provider]:
        return Ignored(provider, event)
    payload = _json(headers, body)
    try:
        if provider == "gitlab":
            gitlab = _GitLabPush.model_validate(payload)
            project = gitlab.project
            urls = (project.git_http_url, project.git_ssh_url, project.web_url)
            return Push(provider, gitlab.ref, gitlab.after, tuple(u for u in urls if u))
        push = _GitHubPush.model_validate(payload)
    # A payload missing the ref, the commit or the repository URLs cannot be matched.
    except pydantic.ValidationError as error:
        raise MalformedWebhook(_describe(error, f"{provider} {event}")) from None
    repository = push.repository
    urls = (repository.clone_url, repository.ssh_url, repository.html_url)
    return Push(provider, push.ref, push.after, tuple(u for u in urls if u))


# --- Verifying: one secret per GitSource; the request proves it knows that secret. ---


def _hmac_hex(secret: str, body: bytes) -> bytes:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest().encode()


def verify(provider: Provider, headers: Mapping[str, str], body: bytes, secret: str) -> bool:
    """Whether the request was signed with ``secret`` (GitLab: carries it as its token).

    ``body`` must be the raw bytes as received: a re-encoded body no longer matches. An empty
    secret verifies nothing, and a missing or malformed signature is simply False. Safe to
    call once per candidate secret; it compares in constant time.
    """
    if not secret:
        return False
    headers = _lower(headers)
    if provider == "gitlab":
        token = headers.get(_GITLAB_TOKEN)
        if token is None:
            return False
        # Digests first, so the comparison does not even reveal the secret's length.
        given = hashlib.sha256(token.encode()).digest()
        return hmac.compare_digest(given, hashlib.sha256(secret.encode()).digest())
    if provider == "github":
        signature = headers.get(_GITHUB_SIGNATURE, "")
        scheme, _, digest = signature.partition("=")
        if scheme.strip().lower() != "sha256":
            return False
    else:
        digest = next((headers[h] for h in _GITEA_SIGNATURES if h in headers), "")
    given = digest.strip().lower().encode()
    return hmac.compare_digest(given, _hmac_hex(secret, body))


# --- Matching: which GitSources a push concerns. ---


def repository_id(url: str) -> str | None:
    """What identifies a repository in a URL: ``host/path``, lower case, without ``.git``.

    Scheme, user, port, a trailing slash and a trailing ``.git`` do not matter, and the
    scp-like ``git@host:path`` is the same as ``ssh://git@host/path``: a provider sends its
    https, ssh and web URLs of one repository, and any of them may be in the GitSource.
    Case is folded because GitHub, GitLab and Gitea look owner and repository names up
    without it. A ``file://`` URL (a repository on this machine, as ``nebula up`` makes) is
    ``file:`` and its exact path: a local hook may name it. None for a URL with neither.

    >>> repository_id("git@GitHub.com:Me/homelab.git")
    'github.com/me/homelab'
    >>> repository_id("https://github.com/me/homelab/")
    'github.com/me/homelab'
    """
    url = url.strip()
    scp = None if "://" in url else _SCP_LIKE.match(url)
    if scp:
        host, path = scp["host"], scp["path"]
    else:
        parts = urllib.parse.urlsplit(url)
        host, path = parts.hostname or "", parts.path
        if parts.scheme == "file" and path.startswith("/"):
            return "file:" + posixpath.normpath(path).removesuffix("/.git")
    path = path.strip("/").removesuffix(".git").strip("/")
    if not host or not path:
        return None
    return f"{host.lower()}/{path.casefold()}"


def same_repository(push: Push, source: GitSource) -> bool:
    """Whether any URL of the pushed repository names the repository the source follows."""
    wanted = repository_id(source.spec.url)
    return wanted is not None and any(repository_id(url) == wanted for url in push.urls)


def matches(push: Push, source: GitSource) -> bool:
    """Whether the push moved what the source follows: same repository, and its branch or tag.

    A source pinned to a commit never matches: there is nothing new for it to fetch.
    """
    ref = source.spec.ref
    if ref.branch is not None:
        followed = push.branch == ref.branch
    elif ref.tag is not None:
        followed = push.tag == ref.tag
    else:
        followed = False
    return followed and same_repository(push, source)
