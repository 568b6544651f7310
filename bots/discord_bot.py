"""The Discord bot (discord.py 2.x): ``/nebula`` commands, the live BotConfig, change notices.

Run by ``nebula bot discord`` (:mod:`bots.cli`) through :func:`serve`. Thin glue only:

- the ``/nebula`` command tree (:class:`NebulaGroup` with its ``model`` and ``service``
  subgroups): each callback turns the interaction into a :class:`bots.commands.Caller`, runs
  the plain handler in a worker thread (:func:`respond`: a refusal answers at once, for its
  caller only; "thinking…" is shown once the handler passed its quick checks, before git) and
  turns the :class:`bots.commands.Reply` into a message; autocomplete asks the handlers too;
- :meth:`NebulaBot.apply` carries out what :class:`bots.live.LiveConfig` says differs
  (nickname through ``guild.me.edit``, the presence through ``change_presence``, an avatar only
  when its URL changed) for the :class:`bots.reloading.Reloader`, which reports the generation;
- :meth:`NebulaBot.post` implements :class:`bots.stream.Sender`: change notices
  (:mod:`bots.notifications`) and go-live posts reach Discord through it;
- :func:`serve` runs it: while Discord cannot be reached it says so in one line
  (:data:`UNREACHABLE`) and tries again after 1 s, 2 s, 4 s … up to 60 s; a refused token
  ends it (ConfigurationError); a dropped gateway is discord.py's to reconnect, told in one
  line too (:data:`RECONNECTING`), without its traceback.

Who may do what, what a change is and what a notice says are decided elsewhere; nothing here
holds a rule of its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Literal

import aiohttp
import discord
import httpx
from discord import app_commands

from bots import commands, live, notifications, reloading
from nebula import errors
from nebula.resources.bot_config import BotConfig

__all__ = [
    "FIRST_RETRY",
    "LAST_RETRY",
    "RECONNECTING",
    "UNREACHABLE",
    "Connector",
    "DiscordSender",
    "ModelGroup",
    "NebulaBot",
    "NebulaGroup",
    "ServiceGroup",
    "activity_of",
    "caller_of",
    "embed_of",
    "respond",
    "retry_delays",
    "serve",
]

log = logging.getLogger("nebula.bots.discord")

Work = Callable[[commands.Caller, commands.Checked], commands.Reply]
Complete = Callable[[commands.Caller, str], list[str]]
_ACTIVITY_TYPES = {
    "playing": discord.ActivityType.playing,
    "listening": discord.ActivityType.listening,
    "watching": discord.ActivityType.watching,
    "competing": discord.ActivityType.competing,
}
_WENT_WRONG = "Something went wrong on Nebula's side; nothing was changed. Try again shortly."

UNREACHABLE = "Discord is unreachable (%s): retrying in %s s"
"""Logged (warning) once per failed attempt to log in: why, and the delay before the next."""
RECONNECTING = "Discord dropped the gateway (%s): reconnecting in %s s"
"""Logged (warning) instead of discord.py's traceback each time it reconnects the gateway."""
FIRST_RETRY, LAST_RETRY = 1.0, 60.0
"""Seconds before the first new attempt to reach Discord, and the most between two."""
_DISCORD_RECONNECT = "Attempting a reconnect in %.2fs"  # what discord.Client.connect logs

Connector = Callable[[], aiohttp.BaseConnector]
"""Makes the connection a login goes through (one per attempt: discord.py closes it after)."""
Sleep = Callable[[float], Awaitable[object]]


def caller_of(interaction: discord.Interaction) -> commands.Caller:
    """Who runs a command and where, with the roles they hold in that guild."""
    user = interaction.user
    roles = (
        tuple(commands.Role(str(role.id), role.name) for role in user.roles)
        if isinstance(user, discord.Member)
        else ()
    )
    return commands.Caller(
        user_id=str(user.id),
        name=user.name,
        guild_id=str(interaction.guild_id) if interaction.guild_id else None,
        channel_id=str(interaction.channel_id) if interaction.channel_id else None,
        roles=roles,
    )


def embed_of(embed: commands.Embed) -> discord.Embed:
    """A reply's embed as Discord draws it."""
    found = discord.Embed(
        title=embed.title,
        description=embed.description or None,
        colour=embed.colour,
        url=embed.url,
    )
    for field in embed.fields:
        found.add_field(name=field.name, value=field.value or "-", inline=field.inline)
    return found


def activity_of(activity: live.Activity | None) -> discord.BaseActivity | None:
    """A BotConfig presence as discord.py's activity; None for none."""
    if activity is None:
        return None
    if activity.type == "custom":
        return discord.CustomActivity(name=activity.text)
    if activity.type == "streaming" and activity.url:
        return discord.Streaming(name=activity.text, url=activity.url)
    kind = _ACTIVITY_TYPES.get(activity.type, discord.ActivityType.playing)
    return discord.Activity(type=kind, name=activity.text)


async def respond(interaction: discord.Interaction, work: Work, *, mutating: bool) -> None:
    """Answers one command: a refusal at once, else "thinking…" once it passed its checks,
    then the reply.

    The work runs in a thread (it reads PostgreSQL and may commit and push) and calls its
    ``checked`` before the slow part, which defers the answer from that thread. A mutating
    command thinks for its caller only, since the repository may still refuse it; a reading
    one thinks in public. When the reply is meant for other eyes than the thinking was, the
    thinking is deleted and the reply follows up in its place.
    """
    loop = asyncio.get_running_loop()

    def checked() -> None:
        # Discord wants a first answer within 3 s: the quick checks fit, git may not.
        thinking = interaction.response.defer(thinking=True, ephemeral=mutating)
        asyncio.run_coroutine_threadsafe(thinking, loop).result()

    try:
        reply = await asyncio.to_thread(work, caller_of(interaction), checked)
    # A bug or an outage the handler did not expect: the caller must not wait forever.
    except Exception:
        log.exception(
            "/%s failed", interaction.command.qualified_name if interaction.command else ""
        )
        reply = commands.Reply(_WENT_WRONG, ephemeral=True)
    # Refused before thinking: the answer is the first and only one.
    if not interaction.response.is_done():
        if reply.embed is not None:
            await interaction.response.send_message(
                embed=embed_of(reply.embed), ephemeral=reply.ephemeral
            )
        else:
            await interaction.response.send_message(reply.text, ephemeral=reply.ephemeral)
        return
    if reply.ephemeral != mutating:
        await interaction.delete_original_response()
    # The card says what the text says: one of them, not both.
    if reply.embed is not None:
        await interaction.followup.send(embed=embed_of(reply.embed), ephemeral=reply.ephemeral)
    else:
        await interaction.followup.send(reply.text, ephemeral=reply.ephemeral)


async def _choices(
    interaction: discord.Interaction, complete: Complete, current: str
) -> list[app_commands.Choice[str]]:
    names = await asyncio.to_thread(complete, caller_of(interaction), current)
    return [app_commands.Choice(name=name, value=name) for name in names]


class ModelGroup(app_commands.Group, name="model", description="Place AI models on nodes"):
    """``/nebula model add|remove``."""

    def __init__(self, handlers: commands.Handlers, *, parent: app_commands.Group) -> None:
        super().__init__(parent=parent)
        self.handlers = handlers

    @app_commands.command(name="add", description="Propose placing a model on one more node")
    @app_commands.describe(model="The NebulaModel", node="The NebulaNode to place it on")
    async def add_model(self, interaction: discord.Interaction, model: str, node: str) -> None:
        """Opens a change adding the node to the model's placement."""
        handlers = self.handlers
        await respond(
            interaction,
            lambda caller, checked: handlers.model_add(
                caller, model=model, node=node, checked=checked
            ),
            mutating=True,
        )

    @app_commands.command(name="remove", description="Propose taking a model off a node")
    @app_commands.describe(model="The NebulaModel", node="The NebulaNode to take it off")
    async def remove_model(self, interaction: discord.Interaction, model: str, node: str) -> None:
        """Opens a change removing the node from the model's placement."""
        handlers = self.handlers
        await respond(
            interaction,
            lambda caller, checked: handlers.model_remove(
                caller, model=model, node=node, checked=checked
            ),
            mutating=True,
        )

    @add_model.autocomplete("model")
    @remove_model.autocomplete("model")
    async def _models(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await _choices(interaction, self.handlers.complete_models, current)

    @add_model.autocomplete("node")
    @remove_model.autocomplete("node")
    async def _nodes(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await _choices(interaction, self.handlers.complete_nodes, current)


class ServiceGroup(app_commands.Group, name="service", description="Change what a service runs"):
    """``/nebula service image|scale``."""

    def __init__(self, handlers: commands.Handlers, *, parent: app_commands.Group) -> None:
        super().__init__(parent=parent)
        self.handlers = handlers

    @app_commands.command(name="image", description="Propose running a service from an image")
    @app_commands.describe(service="The NebulaService", image="e.g. ghcr.io/acme/dashboard:1.5.0")
    async def set_image(self, interaction: discord.Interaction, service: str, image: str) -> None:
        """Opens a change setting the service's image."""
        handlers = self.handlers
        await respond(
            interaction,
            lambda caller, checked: handlers.service_image(
                caller, service=service, image=image, checked=checked
            ),
            mutating=True,
        )

    @app_commands.command(name="scale", description="Propose running more or fewer copies")
    @app_commands.describe(service="The NebulaService", replicas="How many copies (0 stops it)")
    async def scale(
        self,
        interaction: discord.Interaction,
        service: str,
        replicas: app_commands.Range[int, 0, 50],
    ) -> None:
        """Opens a change setting the service's replicas."""
        handlers = self.handlers
        await respond(
            interaction,
            lambda caller, checked: handlers.service_scale(
                caller, service=service, replicas=replicas, checked=checked
            ),
            mutating=True,
        )

    @set_image.autocomplete("service")
    @scale.autocomplete("service")
    async def _services(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await _choices(interaction, self.handlers.complete_services, current)


class NebulaGroup(
    app_commands.Group,
    name="nebula",
    description="Your homelab: its state, and changes that wait for approval",
    guild_only=True,
):
    """``/nebula``: every command the bot offers, in servers only.

    No default member permissions: who may do what is the BotConfig's ``permissions``, per
    role and per guild (Discord could only gate the whole ``/nebula`` at once, reads included).
    """

    def __init__(self, handlers: commands.Handlers) -> None:
        super().__init__(
            allowed_contexts=app_commands.AppCommandContext(
                guild=True, dm_channel=False, private_channel=False
            )
        )
        self.handlers = handlers
        # A group made with a parent joins it by itself.
        ModelGroup(handlers, parent=self)
        ServiceGroup(handlers, parent=self)

    @app_commands.command(name="status", description="Sync revisions, and what is not Ready")
    async def status(self, interaction: discord.Interaction) -> None:
        """Shows each GitSource's revision and what is not Ready."""
        handlers = self.handlers
        await respond(
            interaction,
            lambda caller, checked: handlers.status(caller, checked=checked),
            mutating=False,
        )

    @app_commands.command(name="nodes", description="The machines: role, GPU, VRAM, Ready")
    async def nodes(self, interaction: discord.Interaction) -> None:
        """Shows the nebulanodes table."""
        handlers = self.handlers
        await respond(
            interaction,
            lambda caller, checked: handlers.nodes(caller, checked=checked),
            mutating=False,
        )

    @app_commands.command(name="feature", description="Propose switching a bot feature here")
    @app_commands.describe(name="The feature, e.g. streamNotifications", state="on or off")
    async def feature(
        self, interaction: discord.Interaction, name: str, state: Literal["on", "off"]
    ) -> None:
        """Opens a change toggling the feature in this guild."""
        handlers = self.handlers
        await respond(
            interaction,
            lambda caller, checked: handlers.feature(
                caller, name=name, state=state, checked=checked
            ),
            mutating=True,
        )

    @feature.autocomplete("name")
    async def _features(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await _choices(interaction, self.handlers.complete_features, current)

    @app_commands.command(name="changes", description="Changes that wait, with their links")
    async def list_changes(self, interaction: discord.Interaction) -> None:
        """Lists the open changes."""
        handlers = self.handlers
        await respond(
            interaction,
            lambda caller, checked: handlers.changes(caller, checked=checked),
            mutating=False,
        )


class DiscordSender(discord.Client):
    """Posts in Discord channels (:class:`bots.stream.Sender`); needs only a login, no gateway
    session, so the stream bot's process posts go-lives through one of its own."""

    def __init__(self, *, connector: Connector | None = None, **client: Any) -> None:
        # Guilds only: interactions carry the caller's roles, so no privileged intent is needed.
        # ``connector``: what each login goes through (None: discord.py's own, to discord.com).
        # ``client``: discord.Client's own options (proxy=, ...), passed through.
        super().__init__(intents=discord.Intents(guilds=True), **client)
        self._connector = connector

    async def log_in(self, token: str) -> None:
        """Logs in (:meth:`discord.Client.login`) on a connection of its own; safe to repeat
        after it failed, which closes what the attempt opened.

        Raises LoginFailure for a refused token, and what aiohttp or discord.py raise when
        Discord does not answer.
        """
        # discord.py opens a session on its HTTP client's connector at each login and the
        # session closes that connector: every attempt needs a new one (MISSING: its default).
        self.http.connector = (
            self._connector() if self._connector is not None else discord.utils.MISSING
        )
        try:
            await self.login(token)
        except BaseException:
            await self.http.close()  # this attempt's session, or an "Unclosed" warning later
            raise

    async def post(
        self, guild: str, channel: str, text: str, *, mention_role: str | None = None
    ) -> None:
        """Sends ``text`` in a channel, pinging a role (by name or id, or @everyone) first."""
        found = self.get_channel(int(channel)) or await self.fetch_channel(int(channel))
        if not isinstance(found, discord.abc.Messageable):
            raise ValueError(f"channel {channel} of guild {guild} takes no messages")
        mention = await self._mention(guild, mention_role) if mention_role else ""
        await found.send(
            f"{mention} {text}".strip(),
            allowed_mentions=discord.AllowedMentions(everyone=True, roles=True, users=True),
        )

    async def _mention(self, guild_id: str, role: str) -> str:
        if role == commands.EVERYONE:
            return "@everyone"
        guild = self.get_guild(int(guild_id)) or await self.fetch_guild(int(guild_id))
        found = next((r for r in guild.roles if role in (str(r.id), r.name)), None)
        return found.mention if found else ""

    def send_threadsafe(self, notice: notifications.Notice) -> None:
        """Posts a change notice from another thread (the notifications listener)."""
        destination = notice.destination
        posting = asyncio.run_coroutine_threadsafe(
            self.post(destination.guild, destination.channel, notice.text), self.loop
        )

        def failed(done: concurrent.futures.Future[None]) -> None:
            if not done.cancelled() and (error := done.exception()) is not None:
                log.error("the notice of change #%s was not posted: %s", notice.change, error)

        posting.add_done_callback(failed)


class NebulaBot(DiscordSender):
    """The Discord bot: the ``/nebula`` tree, the live BotConfig, notices and go-live posts."""

    def __init__(
        self, *, handlers: commands.Handlers, live_config: live.LiveConfig, **client: Any
    ) -> None:
        super().__init__(**client)
        self.tree: app_commands.CommandTree[NebulaBot] = app_commands.CommandTree(self)
        self.tree.add_command(NebulaGroup(handlers))
        self.live = live_config
        self.online = False
        """Whether the gateway session is up (ready or resumed, and not disconnected since)."""
        self.connection_changed: Callable[[], Awaitable[None]] | None = None
        """Called after connecting, resuming and disconnecting (the reloader's report)."""
        self.joined: Callable[[], Awaitable[None]] | None = None
        """Called after joining a guild (the reloader re-applies the BotConfig)."""

    def connected(self) -> bool:
        """Whether the bot is connected to Discord now."""
        return self.online and not self.is_closed()

    async def on_ready(self) -> None:
        """Connected: say so."""
        await self._online(True)

    async def on_resumed(self) -> None:
        """Connected again after a short drop: say so."""
        await self._online(True)

    async def on_disconnect(self) -> None:
        """The gateway dropped: say so (discord.py reconnects by itself)."""
        await self._online(False)

    async def on_guild_join(self, guild: discord.Guild) -> None:
        """Joined a guild: its identity is set again, as if it were new."""
        self.live.forget(str(guild.id))
        if self.joined is not None:
            await self.joined()

    async def _online(self, online: bool) -> None:
        if online != self.online:
            self.online = online
            if self.connection_changed is not None:
                await self.connection_changed()

    async def apply(self, config: BotConfig, generation: int | None) -> list[str]:
        """Applies what differs from the running configuration; returns what Discord refused.

        Commands are synced to guilds the bot serves for the first time. What fails is
        forgotten by the live configuration, so the next apply tries it again.
        """
        changes = self.live.apply(config, generation)
        problems = list(changes.notes)
        for guild_id in changes.added:
            try:
                guild = discord.Object(id=int(guild_id))
                self.tree.copy_global_to(guild=guild)
                await self.tree.sync(guild=guild)
            # Not in that guild, or not allowed to create commands there.
            except discord.HTTPException as error:
                problems.append(f"commands not registered in guild {guild_id}: {error.text}")
                self.live.forget(guild_id)  # new again to the next apply, which tries again
        for guild_id, nickname in changes.nicknames.items():
            problems += await self._edit_me(guild_id, _nickname(nickname))
        for guild_id, url in changes.avatars.items():
            problems += await self._avatar(guild_id, url)
        if changes.presence_changed:
            await self.change_presence(activity=activity_of(changes.activity))
        return problems

    async def _avatar(self, guild_id: str, url: str | None) -> list[str]:
        """Uploads the image at ``url`` as the bot's avatar in the guild (None: removes it)."""
        if url is None:
            return await self._edit_me(guild_id, lambda me: me.edit(avatar=None))
        try:
            async with httpx.AsyncClient(timeout=20.0, follow_redirects=True) as client:
                answer = await client.get(url)
                answer.raise_for_status()
        # The image's server did not answer or refused: the old avatar stays.
        except httpx.HTTPError as error:
            self.live.forget(guild_id)
            return [f"avatar of guild {guild_id} not downloaded from {url}: {error}"]
        image = answer.content
        return await self._edit_me(guild_id, lambda me: me.edit(avatar=image))

    async def _edit_me(
        self, guild_id: str, edit: Callable[[discord.Member], Awaitable[object]]
    ) -> list[str]:
        """Edits the bot's own member in a guild; returns what went wrong (nothing: empty)."""
        guild = self.get_guild(int(guild_id))
        if guild is None:
            self.live.forget(guild_id)
            return [f"not a member of guild {guild_id}: invite the bot there"]
        try:
            await edit(guild.me)
        # Missing permissions (Change Nickname), a refused image, Discord's rate limit.
        except (discord.HTTPException, ValueError) as error:
            self.live.forget(guild_id)
            return [f"guild {guild.name or guild_id}: {error}"]
        return []


def _nickname(nickname: str | None) -> Callable[[discord.Member], Awaitable[object]]:
    """Sets the bot's nickname in a guild (None: back to its username)."""

    def edit(me: discord.Member) -> Awaitable[object]:
        return me.edit(nick=nickname)

    return edit


def retry_delays() -> Iterator[float]:
    """The delays between attempts to reach Discord: 1 s, doubling, then 60 s each time."""
    delay = FIRST_RETRY
    while True:
        yield delay
        delay = min(delay * 2, LAST_RETRY)


async def serve(
    *,
    bot: NebulaBot,
    token: str,
    reloader: reloading.Reloader,
    announcer: notifications.Announcer,
    conninfo: str,
    stop: asyncio.Event,
    sleep: Sleep = asyncio.sleep,
) -> None:
    """Runs the bot until ``stop`` is set: connect, keep the BotConfig applied, post notices.

    Connects to Discord for real (the token must be a bot token). While Discord cannot be
    reached it logs :data:`UNREACHABLE` and tries again after each of :func:`retry_delays`
    (waited out with ``sleep``); ``stop`` ends it during a wait or an attempt too. Raises
    ConfigurationError when Discord refuses the token, and whatever ended the gateway session
    when it ends by itself.
    """
    bot.connection_changed = reloader.report

    async def rejoin() -> None:
        await reloader.reload(force=True)

    bot.joined = rejoin
    stopping = threading.Event()
    async with bot, _one_line_reconnects():
        if not await _log_in(bot, token, stop=stop, sleep=sleep):
            return  # stopped before Discord answered
        connecting = asyncio.create_task(bot.connect(), name="discord-gateway")
        ready = asyncio.create_task(bot.wait_until_ready(), name="discord-ready")
        await asyncio.wait({connecting, ready}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            connecting.result()  # the session ended before it was ready: say why
            return
        watching = asyncio.create_task(reloader.watch(stop), name="discord-reload")
        announcing = asyncio.create_task(
            asyncio.to_thread(
                notifications.listen, conninfo, announcer, bot.send_threadsafe, stop=stopping
            ),
            name="discord-notices",
        )
        stopped = asyncio.create_task(stop.wait(), name="discord-stop")
        try:
            await asyncio.wait({stopped, connecting}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.set()
            stopping.set()
            await asyncio.gather(watching, announcing, stopped, return_exceptions=True)
            await bot.close()
            ended = await asyncio.gather(connecting, return_exceptions=True)
            bot.online = False
            await reloader.report()
        if isinstance(ended[0], Exception):
            raise ended[0]


async def _log_in(bot: DiscordSender, token: str, *, stop: asyncio.Event, sleep: Sleep) -> bool:
    """Logs in, trying again while Discord does not answer; False when ``stop`` came first."""
    delays = retry_delays()
    while True:
        try:
            return await _unless_stopped(bot.log_in(token), stop)
        # A wrong or revoked token: only the user can fix it.
        except discord.LoginFailure:
            raise errors.ConfigurationError(
                "Discord refused the bot token: copy it again from the developer portal"
            ) from None
        # No answer (no DNS, refused, TLS, a timeout) or Discord's own trouble (5xx): it may
        # answer in a moment, so wait and try again.
        except (OSError, aiohttp.ClientError, discord.DiscordServerError) as error:
            delay = next(delays)
            log.warning(UNREACHABLE, _why(error), f"{delay:g}")
        if not await _unless_stopped(sleep(delay), stop):
            return False


async def _unless_stopped(work: Awaitable[object], stop: asyncio.Event) -> bool:
    """Awaits ``work`` (raising what it raises) unless ``stop`` is set first, which cancels
    it: returns whether it finished."""
    doing = asyncio.ensure_future(work)
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({doing, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not doing.done():
            doing.cancel()
        await asyncio.gather(doing, stopped, return_exceptions=True)
    if doing.cancelled():
        return False
    doing.result()
    return True


def _why(error: BaseException) -> str:
    """An error in a few words, for a log line."""
    return str(error) or type(error).__name__


class _OneLineReconnect(logging.Filter):
    """Turns discord.py's "Attempting a reconnect" with its traceback into :data:`RECONNECTING`
    (a filter may rewrite the records it passes)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == _DISCORD_RECONNECT and record.exc_info and record.exc_info[1]:
            delay = record.args[0] if isinstance(record.args, tuple) and record.args else 0
            record.msg = RECONNECTING
            record.args = (_why(record.exc_info[1]), f"{delay:.2g}")
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


@contextlib.asynccontextmanager
async def _one_line_reconnects() -> AsyncIterator[None]:
    """:class:`_OneLineReconnect` on discord.py's client logger while the bot runs (async:
    it sits in ``serve``'s ``async with`` next to the client)."""
    found = _OneLineReconnect()
    logger = logging.getLogger("discord.client")
    logger.addFilter(found)
    try:
        yield
    finally:
        logger.removeFilter(found)
