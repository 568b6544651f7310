"""The bots over real services: the example homelab in a bare git remote, synced into a migrated
PostgreSQL store, with a real change service and the ``/nebula`` handlers over both.

Nothing of discord.py or twitchio is substituted: the handlers are plain functions, so the
tests call them with a :class:`~bots.commands.Caller` as the Discord glue would. The only
stand-in is the clock the rate limit reads (:class:`Clock`), set by the tests. The operator's
fixtures (``k8s``, ``running_operator``) are borrowed from ``tests/controllers``.

The Discord bot itself runs against a local Discord (:mod:`tests.bots.discord_server`):
``local_discord`` (not listening yet: unreachable), ``fake`` (listening), ``lab`` (the example
homelab with its avatar on the fake's CDN) and :func:`serving` (the bot as ``nebula bot
discord`` runs it, reaching the fake only through the ``connector=`` it takes).
"""

from __future__ import annotations

import asyncio
import collections.abc
import contextlib
import dataclasses
import datetime
import pathlib
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from bots import commands, discord_bot, live, notifications, reloading
from controllers import embedded, git_source, reconciling
from nebula import bot_reports, db
from nebula.changes import ChangeService, ChangeStore
from nebula.resources import ResourceKey
from nebula.resources.bot_config import BotConfig
from nebula.resources.git_source import GitSource, GitSourceStatus
from nebula.secrets import EnvironmentSecrets
from nebula.sources import Mirror
from nebula.store import PostgresStore
from nebula.sync import FileCache, History
from tests.bots.discord_server import FakeDiscord, FakeGuild, until
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


# --- The Discord bot on a local Discord --------------------------------------------------------

TOKEN = "MTE4NzY1NDMyMTA5ODc2NTQzMg.fake.local-discord-token"
APPLICATION = "1187654321098765432"  # the example BotConfig's applicationId
EXAMPLE_AVATAR = "https://cdn.example.com/nebula/avatar.png"
GUILDS = [
    FakeGuild(
        GUILD,
        "Nebula Creators",
        roles={"@everyone": GUILD, "Admins": "500000000000000001",
               "Homelab Crew": "500000000000000002", "Moderators": "500000000000000011",
               "Stream Pings": "500000000000000012"},
        channels={CHANNEL: "nebula", "912345678901234571": "tickets",
                  "912345678901234572": "welcome", "912345678901234573": "streams",
                  "912345678901234574": "mod-log", "912345678901234575": "now-playing",
                  "912345678901234576": "starboard"},
    ),
    FakeGuild(
        LAB_GUILD,
        "Homelab Lab (testing)",
        roles={"@everyone": LAB_GUILD, "Admins": "500000000000000021",
               "Testers": "500000000000000003"},
        channels={"987654321098765400": "lab"},
    ),
]  # fmt: skip


@pytest.fixture
async def local_discord(tmp_path: pathlib.Path) -> AsyncIterator[FakeDiscord]:
    """The local Discord with the example's two guilds, its ports taken but not listening (a
    bot finds Discord unreachable until the test starts it); nothing unexpected may reach it."""
    folder = tmp_path / "fake-discord"
    folder.mkdir()
    local = FakeDiscord(folder=folder, token=TOKEN, application_id=APPLICATION, guilds=GUILDS)
    try:
        yield local
    finally:
        await local.close()
    assert local.unexpected == [], local.unexpected


@pytest.fixture
async def fake(local_discord: FakeDiscord) -> FakeDiscord:
    """The local Discord, listening."""
    await local_discord.start()
    return local_discord


@pytest.fixture
def lab(homelab: Homelab, local_discord: FakeDiscord) -> Homelab:
    """The example homelab, its BotConfig's avatar served by the fake's CDN (no network)."""
    path = "manifests/bots.yaml"
    text = homelab.remote.read(path)
    assert EXAMPLE_AVATAR in text
    avatar = local_discord.cdn_url("nebula/avatar.png")
    homelab.remote.write(path, text.replace(EXAMPLE_AVATAR, avatar))
    homelab.remote.commit("The avatar from the local CDN")
    homelab.sync()
    config = homelab.bot_config()
    assert config is not None and config.spec.discord is not None
    identity = config.spec.discord.guilds[0].identity
    assert str(identity.avatar_url) == avatar
    return homelab


def discord_bot_on(discord: FakeDiscord, handlers: commands.Handlers) -> discord_bot.NebulaBot:
    """The bot ``nebula bot discord`` builds, connecting through the fake's connector (a fresh
    one per login attempt)."""
    return discord_bot.NebulaBot(
        handlers=handlers, live_config=live.LiveConfig(), connector=discord.connector
    )


@contextlib.asynccontextmanager
async def serving(
    homelab: Homelab,
    discord: FakeDiscord,
    *,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    applied: bool = True,
) -> AsyncIterator[tuple[discord_bot.NebulaBot, reloading.Reloader]]:
    """Runs :func:`discord_bot.serve` until the block ends, then stops it and requires it to
    end by itself, closed. Yields once the BotConfig is applied (``applied``), else at once.
    ``sleep`` waits out the delays between attempts to reach Discord."""
    bot = discord_bot_on(discord, homelab.handlers)
    reloader = reloading.Reloader(
        conninfo=homelab.conninfo,
        store=homelab.store,
        reports=bot_reports.BotReportStore(homelab.conninfo),
        key=BOTS,
        bot="discord",
        apply=bot.apply,
        connected=bot.connected,
        poll=0.1,
    )
    stop = asyncio.Event()
    running = asyncio.create_task(
        discord_bot.serve(
            bot=bot,
            token=TOKEN,
            reloader=reloader,
            announcer=notifications.Announcer(homelab.changes.store, ui_url=UI_URL),
            conninfo=homelab.conninfo,
            stop=stop,
            sleep=sleep,
        ),
        name="nebula-bot-under-test",
    )
    try:
        if applied:
            await until(
                lambda: reloader.watching.is_set() or running.done(), what="the BotConfig applied"
            )
            if running.done():
                running.result()  # it ended before applying anything: say why
        yield bot, reloader
    finally:
        stop.set()
        await asyncio.wait_for(running, timeout=10)
    assert bot.is_closed() and not bot.connected()
