"""``nebula bot discord`` and ``nebula bot twitch``: run a chat bot next to ``nebula up``.

Registered under the ``nebula.commands`` entry points (:data:`BOT`). Both bots work on the
embedded runtime's state (its PostgreSQL, the BotConfig in its store, the change requests of
its bootstrap GitSource) and read their tokens through the BotConfig's secret references from
the environment (``NEBULA_SECRET_<NAME>_<KEY>``), never from Git. discord.py and twitchio are
imported only when a bot starts: every other ``nebula`` command stays quick to load.

Both connect to Discord or Twitch for real, so they cannot run in the tests (which build the
command tree and run every handler and message function instead).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import pathlib
from typing import Any

import rich.console

from bots import commands, live, notifications, reloading
from controllers import local
from nebula import bot_reports, errors, settings
from nebula.resources import ResourceKey
from nebula.resources.base import SecretKeyRef
from nebula.resources.bot_config import BotConfig
from nebula.secrets import Secrets, environment_variable

__all__ = ["BOT", "DEFAULT_UI_URL", "BotCommand", "secret"]

DEFAULT_UI_URL = "http://127.0.0.1:8080"
"""Where ``nebula up`` serves the web UI: links to changes point there unless told otherwise."""

_err = rich.console.Console(stderr=True, highlight=False, soft_wrap=True)
_REAL = (
    "It connects to {platform} for real with the bot's token (it cannot run in the tests); "
    "start `nebula up` first, in the same folder or with the same --database-url."
)


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
        bots = parser.add_subparsers(title="bots", metavar="BOT", dest="bot", required=True)
        discord = bots.add_parser(
            "discord",
            help="the Discord bot: /nebula commands, live BotConfig, change notices",
            description="Runs the Discord bot: /nebula slash commands that open change "
            "requests, the BotConfig's identity and features applied live, and a post in the "
            "channel when a change moves. " + _REAL.format(platform="Discord"),
        )
        discord.add_argument(
            "--ui-url", default=DEFAULT_UI_URL, help=f"links to changes (default: {DEFAULT_UI_URL})"
        )
        twitch = bots.add_parser(
            "twitch",
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
                "--database-url", help="default: $DATABASE_URL, else nebula up's private server"
            )
            sub.add_argument(
                "--config",
                metavar="NAMESPACE/NAME",
                help="the BotConfig to run with (default: the only one in the store)",
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
        with local.local_state(config, say=lambda line: _err.print(line, markup=False)) as state:
            key = reloading.find_bot_config(state.store, args.config)
            bot_config = reloading.read_bot_config(state.store, key)
            if bot_config is None:
                raise errors.ResourceNotFound(f"{key} is gone")
            if args.bot == "discord":
                asyncio.run(_discord(state, key, bot_config, ui_url=args.ui_url))
            else:
                asyncio.run(_twitch(state, key, bot_config))
        return 0


async def _discord(
    state: local.LocalState, key: ResourceKey, config: BotConfig, *, ui_url: str
) -> None:
    from bots import discord_bot  # discord.py: only when the bot runs

    if config.spec.discord is None:
        raise errors.ConfigurationError(f"{key} configures no Discord bot (spec.discord)")
    namespace = key.namespace or "default"
    token = secret(
        state.secrets, namespace, config.spec.discord.token_secret_ref, what="Discord bot token"
    )
    changes = local.change_service(state)
    handlers = commands.Handlers(
        store=state.store,
        changes=changes,
        # The commands follow what the bot runs (late-bound: the reloader is made below).
        bot_config=lambda: reloader.config,
        ui_url=ui_url,
    )
    bot = discord_bot.NebulaBot(handlers=handlers, live_config=live.LiveConfig())
    reloader = reloading.Reloader(
        conninfo=state.conninfo,
        store=state.store,
        reports=bot_reports.BotReportStore(state.conninfo),
        key=key,
        bot="discord",
        apply=bot.apply,
        connected=bot.connected,
    )
    await discord_bot.serve(
        bot=bot,
        token=token,
        reloader=reloader,
        announcer=notifications.Announcer(changes.store, ui_url=ui_url),
        conninfo=state.conninfo,
        stop=local.stop_on_signals(),
    )


async def _twitch(state: local.LocalState, key: ResourceKey, config: BotConfig) -> None:
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
    reloader = reloading.Reloader(
        conninfo=state.conninfo,
        store=state.store,
        reports=bot_reports.BotReportStore(state.conninfo),
        key=key,
        bot="twitch",
        apply=bot.apply,
        connected=bot.connected,
    )
    try:
        await twitch_bot.serve(bot=bot, reloader=reloader, stop=local.stop_on_signals())
    finally:
        if sender is not None:
            await sender.close()


BOT = BotCommand()
"""The ``bot`` subcommand, registered under the ``nebula.commands`` entry points."""
