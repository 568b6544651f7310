"""The web runtime over real services: an app on a migrated PostgreSQL store and its history.

Only the sync trigger is substituted, at its seam (the ``SyncTrigger`` protocol): the recording
trigger notes which GitSources were asked to sync, which is all a webhook may do. ``app`` is
open (no users, as the tests and a single-user ``nebula up`` run it); ``guarded_app`` has the
users of :data:`PASSWORDS` and the API tokens of :data:`TOKENS`, with sessions in the database.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime
from typing import Any

import fastapi
import httpx
import pytest

import api
from nebula import auth, db, heartbeats
from nebula.resources import ResourceKey, conditions
from nebula.secrets import EnvironmentSecrets, environment_variable
from nebula.store import PostgresStore
from nebula.sync import History

WEBHOOK_SECRET = "s3cret-shared-with-the-provider"
"""What the GitHub and Gitea webhooks of the test sources are signed with."""
GITLAB_TOKEN = "gitlab-token-of-the-test-source"
"""The token GitLab sends for the test sources."""
OTHER_SECRET = "a-secret-of-another-source"
NOW = datetime.datetime(2026, 5, 15, 12, 0, tzinfo=datetime.UTC)
PASSWORDS = {
    "ada": "ada administers the whole lab",
    "abe": "abe approves what is proposed",
    "vera": "vera only views the pages",
}
"""The password of each user of ``guarded_app``: Ada is admin, Abe approver, Vera viewer."""
ROLES = {"ada": auth.Role.ADMIN, "abe": auth.Role.APPROVER, "vera": auth.Role.VIEWER}
TOKENS = {
    "ci": ("ci-token-0123456789abcdef0123456789abcdef", auth.Role.APPROVER),
    "dashboard": ("dashboard-token-fedcba9876543210fedcba98", auth.Role.VIEWER),
}
"""The API tokens of ``guarded_app``: name -> (token, role)."""


@dataclasses.dataclass
class RecordingTrigger:
    """A :class:`nebula.sync.SyncTrigger` that remembers what it was asked, in order."""

    requested: list[ResourceKey] = dataclasses.field(default_factory=list)

    def request(self, source: ResourceKey) -> None:
        self.requested.append(source)


@pytest.fixture
def store(database: str) -> collections.abc.Iterator[PostgresStore]:
    """A resource store on a new, migrated database."""
    db.migrate(database)
    with PostgresStore(database) as opened:
        yield opened


@pytest.fixture
def runs(database: str, store: PostgresStore) -> History:
    """The sync history in the same database as ``store`` (migrated by it)."""
    return History(database)


@pytest.fixture
def trigger() -> RecordingTrigger:
    """A trigger that records the sync requests."""
    return RecordingTrigger()


@pytest.fixture
def webhook_secret() -> str:
    """The HMAC secret in Secret ``github-webhook``, key ``hmac``: GitHub and Gitea sign with it."""
    return WEBHOOK_SECRET


@pytest.fixture
def gitlab_token() -> str:
    """The token in Secret ``gitlab-webhook``, key ``token`` (GitLab sends it as is)."""
    return GITLAB_TOKEN


@pytest.fixture
def secrets(webhook_secret: str, gitlab_token: str) -> EnvironmentSecrets:
    """The webhook secrets of the test sources, as the embedded runtime reads them.

    ``other-webhook``/``hmac`` holds a secret no test request is signed with.
    """
    return EnvironmentSecrets(
        {
            environment_variable("github-webhook", "hmac"): webhook_secret,
            environment_variable("other-webhook", "hmac"): OTHER_SECRET,
            environment_variable("gitlab-webhook", "token"): gitlab_token,
        }
    )


@pytest.fixture
def beats(database: str, store: PostgresStore) -> heartbeats.HeartbeatStore:
    """The heartbeats table of the test database (migrated with the store)."""
    return heartbeats.HeartbeatStore(database)


@pytest.fixture
def app(
    store: PostgresStore,
    runs: History,
    trigger: RecordingTrigger,
    secrets: EnvironmentSecrets,
    beats: heartbeats.HeartbeatStore,
) -> fastapi.FastAPI:
    """The web app over the test store, history, trigger, secrets and heartbeats."""
    return api.create_app(
        store=store, runs=runs, trigger=trigger, secrets=secrets, heartbeats=beats
    )


@pytest.fixture
async def client(app: fastapi.FastAPI) -> collections.abc.AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to ``app`` in-process."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://nebula.test") as client:
        yield client


@pytest.fixture(scope="session")
def users() -> auth.Users:
    """Ada, Abe and Vera with the passwords of :data:`PASSWORDS`, and the tokens of :data:`TOKENS`.

    Session-wide: hashing with argon2 is slow on purpose, and the object never changes.
    """
    return auth.Users(
        logins=[
            auth.Login(name, auth.hash_password(password), ROLES[name])
            for name, password in PASSWORDS.items()
        ],
        tokens=[
            auth.ApiToken(name, auth.hash_token(token), role)
            for name, (token, role) in TOKENS.items()
        ],
        source="tests/api/conftest.py",
    )


@pytest.fixture
def sessions(database: str, store: PostgresStore) -> collections.abc.Iterator[auth.Sessions]:
    """The session store of the test database (migrated with the store)."""
    with auth.Sessions(database) as opened:
        yield opened


@pytest.fixture
def guarded_app(
    store: PostgresStore,
    runs: History,
    trigger: RecordingTrigger,
    secrets: EnvironmentSecrets,
    beats: heartbeats.HeartbeatStore,
    users: auth.Users,
    sessions: auth.Sessions,
) -> fastapi.FastAPI:
    """The web app with users: closed to the anonymous, as a server with a users file runs."""
    return api.create_app(
        store=store,
        runs=runs,
        trigger=trigger,
        secrets=secrets,
        heartbeats=beats,
        users=users,
        sessions=sessions,
    )


@pytest.fixture
async def guarded_client(
    guarded_app: fastapi.FastAPI,
) -> collections.abc.AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of ``guarded_app``, signed in as nobody yet; it keeps its cookies."""
    transport = httpx.ASGITransport(app=guarded_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://nebula.test") as client:
        yield client


@dataclasses.dataclass(frozen=True)
class Homelab:
    """Writes objects into the test store by hand, as a sync or a controller would have."""

    store: PostgresStore

    def put(self, document: dict[str, Any], status: dict[str, Any] | None = None) -> ResourceKey:
        """Stores a document, then its status when given; returns its key."""
        key = self.store.put(document)
        if status is not None:
            self.store.write_status(key, status)
        return key

    @staticmethod
    def git_source(
        name: str,
        url: str,
        *,
        namespace: str = "flux",
        branch: str = "main",
        webhook: tuple[str, str] | None = ("github-webhook", "hmac"),
        suspend: bool = False,
    ) -> dict[str, Any]:
        """A GitSource document; ``webhook`` is its webhookSecretRef (name, key)."""
        spec: dict[str, Any] = {"url": url, "ref": {"branch": branch}, "suspend": suspend}
        if webhook:
            spec["webhookSecretRef"] = {"name": webhook[0], "key": webhook[1]}
        return {
            "apiVersion": "nebula.dev/v1alpha1",
            "kind": "GitSource",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }

    @staticmethod
    def node(name: str) -> dict[str, Any]:
        """A NebulaNode document."""
        return {
            "apiVersion": "nebula.dev/v1alpha1",
            "kind": "NebulaNode",
            "metadata": {"name": name},
            "spec": {
                "role": "ai",
                "runtime": "k3s",
                "os": "linux",
                "addresses": [{"type": "lan", "address": "10.0.0.2"}],
            },
        }

    @staticmethod
    def model(name: str, *, namespace: str = "ai", on: str = "home-ubuntu") -> dict[str, Any]:
        """A NebulaModel document placed on one node."""
        return {
            "apiVersion": "nebula.dev/v1alpha1",
            "kind": "NebulaModel",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"provider": "ollama", "model": "llama3.1:8b", "placement": {"nodes": [on]}},
        }

    @staticmethod
    def status(
        ready: conditions.ConditionStatus,
        reason: str,
        message: str = "",
        *,
        stalled: bool = False,
        **fields: Any,
    ) -> dict[str, Any]:
        """A status with Ready (and Stalled when asked) as a controller writes it."""
        found = conditions.set_condition(
            [], type_=conditions.READY, status=ready, reason=reason, message=message, now=NOW
        )
        if stalled:
            found = conditions.set_condition(
                found, type_=conditions.STALLED, status="True", reason=reason, message=message,
                now=NOW,
            )  # fmt: skip
        dumped = conditions.Status(conditions=found, observed_generation=1).model_dump(mode="json")
        return {**dumped, **fields}


@pytest.fixture
def homelab(store: PostgresStore) -> Homelab:
    """Puts objects with their status into the test store."""
    return Homelab(store)
