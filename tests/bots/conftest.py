"""The bots over real services: the example homelab in a bare git remote, synced into a migrated
PostgreSQL store, with a real change service and the ``/nebula`` handlers over both.

Nothing of discord.py or twitchio is substituted: the handlers are plain functions, so the
tests call them with a :class:`~bots.commands.Caller` as the Discord glue would. The only
stand-in is the clock the rate limit reads (:class:`Clock`), set by the tests. The operator's
fixtures (``k8s``, ``running_operator``) are borrowed from ``tests/controllers``.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime
import pathlib
import subprocess

import pytest

from bots import commands, reloading
from controllers import embedded, git_source, reconciling
from nebula import db
from nebula.changes import ChangeService, ChangeStore
from nebula.resources import ResourceKey
from nebula.resources.bot_config import BotConfig
from nebula.resources.git_source import GitSource, GitSourceStatus
from nebula.secrets import EnvironmentSecrets
from nebula.sources import Mirror
from nebula.store import PostgresStore
from nebula.sync import FileCache, History
from tests.conftest import GitRemote

# The operator's fixtures (kmock's emulator, and kopf running on it), for the BotConfig daemon.
from tests.controllers.conftest import k8s, operator_kinds, running_operator  # noqa: F401

NOW = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=datetime.UTC)
UI_URL = "https://nebula.example"
SOURCE = ResourceKey("GitSource", "default", "local")  # as `nebula up` names it
BOTS = ResourceKey("BotConfig", "default", "homelab-bots")
GUILD = "912345678901234567"  # Nebula Creators: openChanges Admins, Homelab Crew; viewState all
CHANNEL = "912345678901234580"
LAB_GUILD = "987654321098765432"  # Homelab Lab: openChanges Admins; viewState Admins, Testers
EVERYONE = commands.Role(GUILD, "@everyone")

ADA = commands.Caller("100000000000000001", "ada", GUILD, CHANNEL,
                      (EVERYONE, commands.Role("500000000000000001", "Admins")))  # fmt: skip
"""An admin of the Nebula Creators server: may see and propose."""
CY = commands.Caller("100000000000000003", "cy", GUILD, CHANNEL,
                     (EVERYONE, commands.Role("500000000000000002", "homelab crew")))  # fmt: skip
"""Holds Homelab Crew (written in another case in Discord): may see and propose."""
MEL = commands.Caller("100000000000000002", "mel", GUILD, CHANNEL, (EVERYONE,))
"""A member with no role: may see (viewState @everyone), may not propose."""
TESS = commands.Caller("100000000000000004", "tess", LAB_GUILD, "987654321098765400",
                       (commands.Role(LAB_GUILD, "@everyone"),
                        commands.Role("500000000000000003", "Testers")))  # fmt: skip
"""A tester of the lab server: may see, may not propose."""
PIA = commands.Caller("100000000000000005", "pia", LAB_GUILD, "987654321098765400",
                      (commands.Role(LAB_GUILD, "@everyone"),))  # fmt: skip
"""A member of the lab server without a role: may not even see."""
OUTSIDER = commands.Caller("100000000000000006", "otto", "111111111111111111", "222", ())
"""Someone in a server the BotConfig does not list."""


@dataclasses.dataclass
class Clock:
    """The time the rate limit reads; tests move it instead of waiting an hour."""

    now: datetime.datetime = dataclasses.field(default_factory=lambda: NOW)

    def __call__(self) -> datetime.datetime:
        return self.now


class Homelab:
    """The example homelab: its remote, the store it is synced into, changes and handlers."""

    def __init__(
        self, *, conninfo: str, store: PostgresStore, remote: GitRemote, tmp: pathlib.Path
    ):
        self.conninfo = conninfo
        self.store = store
        self.remote = remote
        self.tmp = tmp
        self.runs = History(conninfo)
        self.mirror = Mirror(tmp / "sync.git")
        self.cache = FileCache()
        store.put(
            {
                "apiVersion": "nebula.dev/v1alpha1",
                "kind": "GitSource",
                "metadata": {"name": SOURCE.name, "namespace": SOURCE.namespace},
                "spec": {"url": remote.url, "path": "manifests", "interval": "1h"},
            }
        )
        self.changes = ChangeService(
            conninfo=conninfo, source=self.source(), mirror=Mirror(tmp / "changes.git")
        )
        self.clock = Clock()
        self.handlers = commands.Handlers(
            store=store,
            changes=self.changes,
            bot_config=self.bot_config,
            ui_url=UI_URL,
            clock=self.clock,
        )

    def source(self) -> GitSource:
        """The GitSource as the store holds it."""
        stored = self.store.get(SOURCE)
        assert stored is not None
        return GitSource.model_validate(embedded.resource_of(stored))

    def sync(self) -> reconciling.Result[GitSourceStatus]:
        """One sync of the remote into the store (merged changes follow to applied)."""
        stored = self.store.get(SOURCE)
        assert stored is not None
        previous = GitSourceStatus.model_validate(stored.status) if stored.status else None
        outcome = git_source.reconcile(
            self.source(),
            mirror=self.mirror,
            cache=self.cache,
            store=self.store,
            runs=self.runs,
            secrets=EnvironmentSecrets({}),
            changes=ChangeStore(self.conninfo),
            now=NOW,
            previous=previous,
        )
        self.store.write_status(
            SOURCE, outcome.status.model_dump(mode="json", by_alias=True, exclude_none=True)
        )
        return outcome

    def bot_config(self) -> BotConfig | None:
        """The BotConfig as the store holds it now."""
        return reloading.read_bot_config(self.store, BOTS)

    def branches(self) -> list[str]:
        """The branches of the bare remote: a change that was committed has one."""
        done = subprocess.run(
            ["git", "--git-dir", str(self.remote.bare), "branch", "--list", "--format=%(refname)"],
            capture_output=True,
            text=True,
            check=True,
        )
        return sorted(done.stdout.split())


@pytest.fixture
def store(database: str) -> collections.abc.Iterator[PostgresStore]:
    """A resource store on a new, migrated database."""
    db.migrate(database)
    with PostgresStore(database) as opened:
        yield opened


@pytest.fixture
def homelab(
    database: str, store: PostgresStore, homelab_remote: GitRemote, tmp_path: pathlib.Path
) -> Homelab:
    """The example homelab, synced once, with the ``/nebula`` handlers over it."""
    lab = Homelab(conninfo=database, store=store, remote=homelab_remote, tmp=tmp_path)
    assert lab.sync().status.last_applied_revision is not None
    return lab


@pytest.fixture
def handlers(homelab: Homelab) -> commands.Handlers:
    """The ``/nebula`` handlers over the synced example homelab."""
    return homelab.handlers
