"""``nebula bot discord`` and ``nebula bot twitch``: run a chat bot next to ``nebula up`` or on k3s.

Registered under the ``nebula.commands`` entry points (:data:`BOT`). By default both bots work
on the embedded runtime's state (its PostgreSQL, the BotConfig in its store, the change
requests of its bootstrap GitSource). With ``--kubernetes`` (:func:`cluster_state`) they read
the BotConfig and what the commands show from the Kubernetes API (in-cluster, else the
kubeconfig, else ``--kube-server``) and follow it with a watch, while their reports, change
requests and change notices stay in the PostgreSQL of ``DATABASE_URL``; the Discord bot's
change requests go to the GitSource that applied its BotConfig (or ``--changes-source``).
Tokens and git credentials come through the secret references from the environment
(``NEBULA_SECRET_<NAME>_<KEY>``), never from Git. discord.py and twitchio are imported only
when a bot starts: every other ``nebula`` command stays quick to load.

Both connect to Discord or Twitch for real, so they cannot run in the tests (which build the
command tree and run every handler and message function instead).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import kubernetes.client
import rich.console

from bots import commands, live, notifications, reloading
from controllers import cluster, local
from nebula import bot_reports, db, errors, settings
from nebula import cli as nebula_cli
from nebula.changes import ChangeService
from nebula.resources import ResourceKey
from nebula.resources.base import SecretKeyRef
from nebula.resources.bot_config import BotConfig
from nebula.secrets import EnvironmentSecrets, Secrets, environment_variable
from nebula.store import ResourceStore
from nebula.store import kubernetes as kubernetes_store

__all__ = [
    "BOT",
    "DEFAULT_UI_URL",
    "BotCommand",
    "BotState",
    "cluster_change_service",
    "cluster_state",
    "embedded_state",
    "secret",
]

DEFAULT_UI_URL = "http://127.0.0.1:8080"
"""Where ``nebula up`` serves the web UI: links to changes point there unless told otherwise."""

_err = rich.console.Console(stderr=True, highlight=False, soft_wrap=True)
_REAL = (
    "It connects to {platform} for real with the bot's token (it cannot run in the tests); "
    "start `nebula up` first, in the same folder or with the same --database-url (on k3s: "
    "--kubernetes, with the operator's DATABASE_URL)."
)


@dataclasses.dataclass(frozen=True)
class BotState:
    """What a bot works with, on the embedded runtime or on a cluster."""

    conninfo: str  # PostgreSQL: reports, change requests, change notices
    store: ResourceStore  # the BotConfig, and what the commands show
    secrets: Secrets  # tokens and git credentials, by reference
    feed: Callable[[ResourceKey, bot_reports.BotName], reloading.ChangeFeed]
    """What rings when the BotConfig changes."""
    changes: Callable[[ResourceKey], ChangeService]
    """The change requests the Discord bot opens, given its BotConfig (made only by it)."""

    def reloader(
        self,
        key: ResourceKey,
        bot: bot_reports.BotName,
        *,
        apply: reloading.Apply,
        connected: Callable[[], bool],
    ) -> reloading.Reloader:
        """What keeps ``bot`` on the BotConfig ``key``: its feed, and its reports."""
        return reloading.Reloader(
            changes=self.feed(key, bot),
            store=self.store,
            reports=bot_reports.BotReportStore(self.conninfo),
            key=key,
            bot=bot,
            apply=apply,
            connected=connected,
        )


@contextlib.contextmanager
def embedded_state(config: settings.Settings) -> Iterator[BotState]:
    """The embedded runtime's state: its PostgreSQL (started if private) and store, its
    bootstrap GitSource's change requests, and a LISTEN for the BotConfig."""
    with local.local_state(config, say=lambda line: _err.print(line, markup=False)) as state:
        yield BotState(
            conninfo=state.conninfo,
            store=state.store,
            secrets=state.secrets,
            feed=lambda key, bot: reloading.PostgresChanges(state.conninfo, key, bot=bot),
            changes=lambda _: local.change_service(state),
        )


def cluster_state(
    api: kubernetes.client.ApiClient,
    database_url: str,
    *,
    state_dir: pathlib.Path,
    changes_source: ResourceKey | None = None,
    secrets: Secrets | None = None,
) -> BotState:
    """A cluster's state: the objects in its API server (a watch for the BotConfig), the
    reports and change requests in the PostgreSQL of ``database_url`` (migrated by the caller),
    secrets from the environment (default). The caller closes ``api``."""
    store = kubernetes_store.KubernetesStore(api)
    found = secrets if secrets is not None else EnvironmentSecrets()
    return BotState(
        conninfo=database_url,
        store=store,
        secrets=found,
        feed=lambda key, bot: reloading.KubernetesChanges(api, key, bot=bot),
        changes=lambda key: cluster_change_service(
            store, database_url, key, source=changes_source, secrets=found, state_dir=state_dir
        ),
    )


def cluster_change_service(
    store: ResourceStore,
    database_url: str,
    bot_config: ResourceKey,
    *,
    source: ResourceKey | None,
    secrets: Secrets,
    state_dir: pathlib.Path,
) -> ChangeService:
    """The change requests of ``source``, else of the GitSource that applied ``bot_config``
    (its ``nebula.dev/source`` label), as the cluster declares it now; the bot only opens
    changes (approving, merging and syncing are the web UI's and the operator's).

    Raises ConfigurationError when no GitSource is named and the BotConfig was not applied by
    one, and ResourceNotFound when the cluster has no such GitSource.
    """
    if source is None:
        stored_config = store.get(bot_config)
        label = stored_config.source if stored_config is not None else None
        namespace, dot, name = (label or "").partition(".")
        if not dot:
            raise errors.ConfigurationError(
                f"{bot_config} was not applied by a GitSource: name the one to take change "
                "requests for with --changes-source NAMESPACE/NAME"
            )
        source = ResourceKey("GitSource", namespace, name)
    return cluster.change_service(store, database_url, source, secrets=secrets, state_dir=state_dir)


def secret(secrets: Secrets, namespace: str, ref: SecretKeyRef, *, what: str) -> str:
    """The value of a secret reference; ConfigurationError names the variable to set."""
    value = secrets.get(namespace, ref.name, ref.key)
    if not value:
        variable = environment_variable(ref.name, ref.key)
        raise errors.ConfigurationError(f"no {what}: set {variable} (secret {ref.name}/{ref.key})")
    return value


class BotCommand:
    """``nebula bot``: runs the Discord bot or the stream bot until Ctrl-C or SIGTERM."""

    name = "bot"
    help = "run the Discord bot or the Twitch stream bot (connects to Discord/Twitch for real)"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        """Declares ``discord`` and ``twitch`` with their options."""
        parser.epilog = nebula_cli.examples("nebula bot discord", "nebula bot twitch")
        bots = parser.add_subparsers(title="bots", metavar="BOT", dest="bot", required=True)
        discord = bots.add_parser(
            "discord",
            epilog=nebula_cli.examples(
                "nebula bot discord                      # with the state of nebula up",
                "nebula bot discord --config default/homelab-bots --ui-url http://nebula.lan:8080",
                "nebula bot discord --kubernetes --database-url postgresql://nebula@postgres/nebula",
            ),
            help="the Discord bot: /nebula commands, live BotConfig, change notices",
            description="Runs the Discord bot: /nebula slash commands that open change "
            "requests, the BotConfig's identity and features applied live, and a post in the "
            "channel when a change moves. " + _REAL.format(platform="Discord"),
        )
        discord.add_argument(
            "--ui-url", default=DEFAULT_UI_URL, help=f"links to changes (default: {DEFAULT_UI_URL})"
        )
        discord.add_argument(
            "--changes-source",
            metavar="NAMESPACE/NAME",
            help="with --kubernetes: the GitSource to open changes for (default: the one that "
            "applied the BotConfig)",
        )
        twitch = bots.add_parser(
            "twitch",
            epilog=nebula_cli.examples(
                "nebula bot twitch",
                "nebula bot twitch --config default/homelab-bots --verbose",
            ),
            help="the stream bot: go-live posts on Discord, !status in Twitch chat",
            description="Runs the stream bot on Twitch: go-live announcements posted to the "
            "Discord channels of the BotConfig's goLive, and !status for moderators. The "
            "Secret of the twitch platform's credentialsSecretRef holds the bot account's "
            "token (its key), client-id, client-secret, bot-id and optionally refresh-token. "
            + _REAL.format(platform="Twitch and Discord"),
        )
        for sub in (discord, twitch):
            sub.add_argument("--state-dir", type=pathlib.Path, help="default: .nebula")
            sub.add_argument(
                "--database-url",
                help="default: $DATABASE_URL, else nebula up's private server (none with "
                "--kubernetes)",
            )
            sub.add_argument(
                "--config",
                metavar="NAMESPACE/NAME",
                help="the BotConfig to run with (default: the only one in the store)",
            )
            sub.add_argument(
                "--kubernetes",
                action="store_true",
                help="on k3s: the BotConfig from the Kubernetes API (in-cluster, else the "
                "kubeconfig), reports and changes in $DATABASE_URL's PostgreSQL",
            )
            sub.add_argument(
                "--kube-server", help="the API server's URL (implies --kubernetes; no credentials)"
            )
            sub.add_argument("--verbose", "-v", action="store_true", help="log at debug level")

    def run(self, args: argparse.Namespace) -> int:
        """Runs the chosen bot; returns 0 once it was stopped by a signal."""
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        update: dict[str, Any] = {}
        if args.state_dir:
            update["state_dir"] = args.state_dir
        if args.database_url:
            update["database_url"] = args.database_url
        config = settings.Settings().model_copy(update=update)
        with contextlib.ExitStack() as stack:
            if args.kubernetes or args.kube_server:
                state = _on_cluster(stack, config, args)
            else:
                state = stack.enter_context(embedded_state(config))
            key = reloading.find_bot_config(state.store, args.config)
            bot_config = reloading.read_bot_config(state.store, key)
            if bot_config is None:
                raise errors.ResourceNotFound(f"{key} is gone")
            if args.bot == "discord":
                asyncio.run(_discord(state, key, bot_config, ui_url=args.ui_url))
            else:
                asyncio.run(_twitch(state, key, bot_config))
        return nebula_cli.EXIT_OK


def _on_cluster(
    stack: contextlib.ExitStack, config: settings.Settings, args: argparse.Namespace
) -> BotState:
    if not config.database_url:
        raise errors.ConfigurationError(
            "--kubernetes: no database for the reports and changes: pass --database-url or set "
            "DATABASE_URL (a postgresql:// URL)"
        )
    url = str(config.database_url)
    db.migrate(url)
    api = stack.enter_context(contextlib.closing(kubernetes_store.connect(args.kube_server)))
    changes_source = getattr(args, "changes_source", None)
    return cluster_state(
        api,
        url,
        state_dir=config.state_dir.resolve(),
        changes_source=cluster.source_key(changes_source) if changes_source else None,
    )


async def _discord(state: BotState, key: ResourceKey, config: BotConfig, *, ui_url: str) -> None:
    from bots import discord_bot  # discord.py: only when the bot runs

    if config.spec.discord is None:
        raise errors.ConfigurationError(f"{key} configures no Discord bot (spec.discord)")
    namespace = key.namespace or "default"
    token = secret(
        state.secrets, namespace, config.spec.discord.token_secret_ref, what="Discord bot token"
    )
    changes = state.changes(key)
    handlers = commands.Handlers(
        store=state.store,
        changes=changes,
        # The commands follow what the bot runs (late-bound: the reloader is made below).
        bot_config=lambda: reloader.config,
        ui_url=ui_url,
    )
    bot = discord_bot.NebulaBot(handlers=handlers, live_config=live.LiveConfig())
    reloader = state.reloader(key, "discord", apply=bot.apply, connected=bot.connected)
    await discord_bot.serve(
        bot=bot,
        token=token,
        reloader=reloader,
        announcer=notifications.Announcer(changes.store, ui_url=ui_url),
        conninfo=state.conninfo,
        stop=local.stop_on_signals(),
    )


async def _twitch(state: BotState, key: ResourceKey, config: BotConfig) -> None:
    from bots import discord_bot, twitch_bot  # discord.py and twitchio: only when it runs

    namespace = key.namespace or "default"
    platforms = config.spec.stream.platforms if config.spec.stream else []
    twitch = next((p for p in platforms if p.platform == "twitch"), None)
    if twitch is None:
        raise errors.ConfigurationError(f"{key} watches no Twitch channel (spec.stream)")
    credentials = twitch_bot.TwitchCredentials.read(twitch, state.secrets, namespace=namespace)
    # Go-lives are posted through a Discord login of the BotConfig's Discord bot (no gateway).
    sender: discord_bot.DiscordSender | None = None
    if config.spec.discord is not None:
        token = secret(
            state.secrets, namespace, config.spec.discord.token_secret_ref, what="Discord token"
        )
        sender = discord_bot.DiscordSender()
        await sender.login(token)
    bot = twitch_bot.StreamBot(credentials=credentials, store=state.store, sender=sender)
    reloader = state.reloader(key, "twitch", apply=bot.apply, connected=bot.connected)
    try:
        await twitch_bot.serve(bot=bot, reloader=reloader, stop=local.stop_on_signals())
    finally:
        if sender is not None:
            await sender.close()


BOT = BotCommand()
"""The ``bot`` subcommand, registered under the ``nebula.commands`` entry points."""
