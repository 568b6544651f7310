"""The stream bot on Twitch (twitchio 3.x): go-live posts to Discord, ``!status`` in chat.

Run by ``nebula bot twitch`` (:mod:`bots.cli`) through :func:`serve`. Thin glue only: it
subscribes to ``stream.online`` and chat messages of the Twitch channels the BotConfig
watches (EventSub over a websocket), turns a go-live into :class:`bots.stream.GoLive` and the
posts :func:`bots.stream.go_live_posts` makes into messages sent by a :class:`bots.stream.Sender`
(the Discord bot), and answers ``!status`` with :func:`bots.stream.status_answer`.

Credentials come from secrets only (:class:`TwitchCredentials`), never from Git, and are
never written to disk: twitchio's token file is switched off.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import twitchio
from twitchio import eventsub
from twitchio.ext import commands as twitch_commands

from bots import overview, reloading, stream
from nebula import errors
from nebula.resources.bot_config import BotConfig, StreamPlatform
from nebula.secrets import Secrets, environment_variable
from nebula.store import ResourceStore

__all__ = ["StatusCommands", "StreamBot", "TwitchCredentials", "serve"]

log = logging.getLogger("nebula.bots.twitch")


@dataclasses.dataclass(frozen=True)
class TwitchCredentials:
    """What the bot account needs on Twitch: the app's id and secret, and its user token.

    Read from the Secret the platform's ``credentialsSecretRef`` names: its ``key`` holds the
    bot account's OAuth access token; the same Secret holds ``client-id``, ``client-secret``,
    ``bot-id`` (the bot account's user id) and optionally ``refresh-token``.
    """

    client_id: str
    client_secret: str
    bot_id: str
    token: str
    refresh: str = ""

    def __repr__(self) -> str:
        return f"TwitchCredentials(client_id={self.client_id!r}, bot_id={self.bot_id!r}, ...)"

    @classmethod
    def read(
        cls, platform: StreamPlatform, secrets: Secrets, *, namespace: str
    ) -> TwitchCredentials:
        """The credentials of a Twitch platform entry; ConfigurationError names what is missing
        (as the environment variable the embedded runtime reads), never a value."""
        ref = platform.credentials_secret_ref
        if ref is None:
            raise errors.ConfigurationError(
                f"stream platform twitch/{platform.channel} has no credentialsSecretRef"
            )
        keys = {"token": ref.key, "client_id": "client-id", "client_secret": "client-secret"}
        keys["bot_id"] = "bot-id"
        found = {field: secrets.get(namespace, ref.name, key) for field, key in keys.items()}
        missing = [environment_variable(ref.name, keys[f]) for f, v in found.items() if not v]
        if missing:
            raise errors.ConfigurationError(
                f"secret {ref.name!r} lacks what the Twitch bot needs: set {', '.join(missing)}"
            )
        refresh = secrets.get(namespace, ref.name, "refresh-token") or ""
        return cls(
            client_id=str(found["client_id"]),
            client_secret=str(found["client_secret"]),
            bot_id=str(found["bot_id"]),
            token=str(found["token"]),
            refresh=refresh,
        )


class StatusCommands(twitch_commands.Component):
    """The chat commands: ``!status``."""

    def __init__(self, bot: StreamBot) -> None:
        self.bot = bot

    # twitchio's command decorator returns Any: the method stays typed, its wrapper is not.
    @twitch_commands.command(name="status")  # type: ignore[untyped-decorator]
    async def status(self, ctx: twitch_commands.Context[StreamBot]) -> None:
        """Answers moderators (or everyone, where moderatorsOnly is false) with one line."""
        chatter = ctx.chatter
        moderator = isinstance(chatter, twitchio.Chatter) and (
            chatter.moderator or chatter.broadcaster
        )
        answer = await self.bot.status_answer(ctx.broadcaster.name or "", moderator=moderator)
        if answer is not None:
            await ctx.reply(answer)


class StreamBot(twitch_commands.Bot):
    """The Twitch client: EventSub subscriptions, go-live posts, ``!status``."""

    def __init__(
        self,
        *,
        credentials: TwitchCredentials,
        store: ResourceStore,
        sender: stream.Sender | None,
    ) -> None:
        super().__init__(
            client_id=credentials.client_id,
            client_secret=credentials.client_secret,
            bot_id=credentials.bot_id,
            prefix="!",
        )
        self._credentials = credentials
        self._store = store
        self._sender = sender  # None: the BotConfig has no Discord bot to post through
        self._subscribed: set[str] = set()  # channel logins with EventSub subscriptions
        self.config: BotConfig | None = None
        self.online = False

    def connected(self) -> bool:
        """Whether the bot is logged in and subscribed."""
        return self.online

    # twitchio keeps tokens in a file by default; ours come from secrets and stay in memory.
    async def load_tokens(self, path: str | None = None, /) -> None:
        """Adds the bot account's token from the secrets (never from a file)."""
        await self.add_token(self._credentials.token, self._credentials.refresh)

    async def save_tokens(self, path: str | None = None, /) -> None:
        """Writes nothing: tokens are never stored on disk."""

    async def setup_hook(self) -> None:
        """Registers ``!status``; subscriptions follow the BotConfig (:meth:`apply`)."""
        await self.add_component(StatusCommands(self))

    async def event_ready(self) -> None:
        """Logged in: subscribe to the channels the BotConfig watches."""
        self.online = True
        if self.config is not None:
            await self._subscribe(self.config)

    async def apply(self, config: BotConfig, generation: int | None) -> list[str]:
        """Runs with a new BotConfig: templates, moderators-only, newly watched channels."""
        self.config = config
        return await self._subscribe(config) if self.online else []

    async def _subscribe(self, config: BotConfig) -> list[str]:
        platforms = config.spec.stream.platforms if config.spec.stream else []
        watched = [p.channel for p in platforms if p.platform == "twitch"]
        wanted = [login for login in watched if login.casefold() not in self._subscribed]
        if not wanted:
            return []
        problems = []
        users = await self.fetch_users(logins=wanted)
        found = {(user.name or "").casefold(): user for user in users}
        for login in wanted:
            user = found.get(login.casefold())
            if user is None:
                problems.append(f"no Twitch channel named {login}")
                continue
            try:
                await self.subscribe_websocket(
                    eventsub.StreamOnlineSubscription(broadcaster_user_id=user.id)
                )
                await self.subscribe_websocket(
                    eventsub.ChatMessageSubscription(
                        broadcaster_user_id=user.id, user_id=self.bot_id
                    )
                )
            # Twitch refused (a scope the token lacks, the bot not a moderator there).
            except twitchio.HTTPException as error:
                problems.append(f"not subscribed to {login}: {error}")
                continue
            self._subscribed.add(login.casefold())
        return problems

    async def event_stream_online(self, payload: twitchio.StreamOnline) -> None:
        """A watched channel went live: post what the BotConfig's goLive asks for."""
        config, sender = self.config, self._sender
        if config is None or sender is None:
            return
        login = payload.broadcaster.name or ""
        title, game, viewers = "", "", 0
        async for live in self.fetch_streams(user_ids=[payload.broadcaster.id], type="live"):
            title, game, viewers = live.title, live.game_name or "", live.viewer_count
            break
        event = stream.GoLive(
            platform="twitch",
            channel=login,
            streamer=payload.broadcaster.display_name or login,
            title=title,
            url=f"https://twitch.tv/{login}",
            game=game,
            viewers=viewers,
        )
        for post in stream.go_live_posts(config, event):
            try:
                await sender.post(
                    post.guild, post.channel, post.text, mention_role=post.mention_role
                )
            # One channel refusing (missing permissions) must not keep the others quiet.
            except Exception:
                log.exception("go-live post to %s/%s failed", post.guild, post.channel)

    async def status_answer(self, channel: str, *, moderator: bool) -> str | None:
        """The ``!status`` answer in a channel, or None (see :func:`bots.stream.status_answer`)."""
        if self.config is None:
            return None
        platform = stream.platform_of(self.config, "twitch", channel)
        # Only those who get an answer cost a look at the store.
        if not stream.answers(platform, moderator=moderator):
            return None
        state = await asyncio.to_thread(overview.overview, self._store)
        return stream.status_answer(platform=platform, moderator=moderator, state=state)


async def serve(
    *,
    bot: StreamBot,
    reloader: reloading.Reloader,
    stop: asyncio.Event,
) -> None:
    """Runs the stream bot until ``stop`` is set, keeping it on the current BotConfig.

    Connects to Twitch for real (app and user tokens): the tests check the messages and the
    ``!status`` rule, never this. Raises whatever ended the client when it ends by itself.
    """
    async with bot:
        running = asyncio.create_task(bot.start(with_adapter=False), name="twitch")
        watching = asyncio.create_task(reloader.watch(stop), name="twitch-reload")
        stopped = asyncio.create_task(stop.wait(), name="twitch-stop")
        try:
            await asyncio.wait({stopped, running}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.set()
            await asyncio.gather(watching, stopped, return_exceptions=True)
            await bot.close()
            ended = await asyncio.gather(running, return_exceptions=True)
            bot.online = False
            await reloader.report()
        if isinstance(ended[0], Exception):
            raise ended[0]
