"""``BotConfig``: the Discord bot's identity, features and permissions per guild; the stream bot.

Pure data, no I/O. Tokens are Secret references only. Message templates use ``{placeholder}``
fields; a placeholder the bot cannot fill is refused here rather than posted verbatim later.
"""

from __future__ import annotations

import string
from collections.abc import Iterator
from typing import ClassVar, Literal

import pydantic

from nebula.resources import base, conditions, fields

__all__ = [
    "FEATURES",
    "BotConfig",
    "BotConfigSpec",
    "BotConfigStatus",
    "BotStatus",
    "DiscordBot",
    "Feature",
    "Features",
    "GoLivePost",
    "Guild",
    "GuildPermissions",
    "Identity",
    "Presence",
    "RateLimit",
    "StarboardFeature",
    "StreamBot",
    "StreamNotificationsFeature",
    "StreamPlatform",
    "TicketsFeature",
    "WelcomeFeature",
    "template_fields",
]

Platform = Literal["twitch", "youtube", "kick"]
RoleRef = str  # a role name as shown in Discord, a role id, or "@everyone"


def template_fields(template: str) -> set[str]:
    """The ``{placeholder}`` names a message template uses; ValueError when it is malformed."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def _check_template(
    template: str, allowed: frozenset[str], path: base.FieldPath
) -> Iterator[base.Issue]:
    try:
        unknown = template_fields(template) - allowed
    # An unbalanced "{" or "}": str.format would fail when the bot posts it.
    except ValueError as error:
        yield base.Issue(path, f"invalid template: {error} (write {{{{ and }}}} for braces)")
        return
    if unknown:
        yield base.Issue(
            path,
            f"unknown placeholder {{{sorted(unknown)[0]}}}: use "
            + ", ".join(f"{{{name}}}" for name in sorted(allowed)),
        )


class Presence(base.Model):
    """The activity shown under the bot's name."""

    type: Literal["playing", "streaming", "listening", "watching", "competing", "custom"]
    """Activity: playing, streaming, listening, watching, competing or custom."""
    text: str = pydantic.Field(min_length=1, max_length=128)
    """What follows the activity, e.g. "the homelab" after watching."""
    url: fields.HttpUrl | None = None
    """The stream's URL (type streaming only)."""


class Identity(base.Model):
    """How the bot appears in one guild."""

    nickname: str | None = pydantic.Field(default=None, min_length=1, max_length=32)
    """The bot's nickname in this guild; unset: its username."""
    avatar_url: fields.HttpUrl | None = None
    """URL of the image to use as the bot's avatar."""
    presence: Presence | None = None
    """The activity shown under the bot's name; unset: none."""


class Feature(base.Model):
    """A feature that can be switched on or off per guild."""

    enabled: bool = False
    """When true, the feature is on in this guild (default off)."""
    channel: fields.Snowflake | None = None
    """Discord channel id the feature posts in, quoted: "912345678901234571"."""


class TicketsFeature(Feature):
    """Support tickets opened as private threads."""

    support_role: RoleRef | None = None
    """Role that handles tickets, e.g. Moderators (a name, an id or @everyone)."""


class WelcomeFeature(Feature):
    """A message to every new member."""

    message: str = "Welcome to {guild}, {user}!"
    """Template of the greeting; placeholders: {user}, {guild}, {member_count}."""


class StreamNotificationsFeature(Feature):
    """Go-live announcements from the stream bot."""

    mention_role: RoleRef | None = None
    """Role pinged with each announcement (a name, an id or @everyone)."""


class StarboardFeature(Feature):
    """Messages with enough stars are reposted."""

    threshold: int = pydantic.Field(default=3, ge=1, le=100)
    """Stars a message needs to be reposted (default 3)."""


class Features(base.Model):
    """Every feature of the Discord bot, each off unless enabled."""

    tickets: TicketsFeature = pydantic.Field(default_factory=TicketsFeature)
    """Support tickets opened as private threads."""
    welcome: WelcomeFeature = pydantic.Field(default_factory=WelcomeFeature)
    """A message to every new member."""
    stream_notifications: StreamNotificationsFeature = pydantic.Field(
        default_factory=StreamNotificationsFeature
    )
    """Go-live announcements from the stream bot."""
    moderation: Feature = pydantic.Field(default_factory=Feature)
    """Moderation; channel is where moderation actions are logged."""
    music: Feature = pydantic.Field(default_factory=Feature)
    """Music playback."""
    now_playing: Feature = pydantic.Field(default_factory=Feature)
    """Plex / Spotify "now playing" posts."""
    analytics: Feature = pydantic.Field(default_factory=Feature)
    """Server analytics."""
    starboard: StarboardFeature = pydantic.Field(default_factory=StarboardFeature)
    """Messages with enough stars are reposted."""
    leveling: Feature = pydantic.Field(default_factory=Feature)
    """Member levels."""
    reaction_roles: Feature = pydantic.Field(default_factory=Feature)
    """Roles members take by reacting to a message."""


FEATURES: tuple[str, ...] = tuple(
    Features.model_fields[name].alias or name for name in Features.model_fields
)
"""Feature names as written in YAML (``streamNotifications``), for commands and docs."""


class GuildPermissions(base.Model):
    """Which Discord roles may do what through the bot."""

    open_changes: list[RoleRef] = pydantic.Field(default_factory=list)
    """Roles that may propose changes (they still wait for approval)."""
    view_state: list[RoleRef] = pydantic.Field(default_factory=lambda: ["@everyone"])
    """Roles that may see nodes, services and changes (default @everyone)."""


class Guild(base.Model):
    """The bot in one Discord server."""

    id: fields.Snowflake
    """Guild (server) id, quoted: "912345678901234567"."""
    name: str = ""
    """A reminder for people; the id is what counts."""
    identity: Identity = pydantic.Field(default_factory=Identity)
    """How the bot appears in this guild: nickname, avatar, presence."""
    features: Features = pydantic.Field(default_factory=Features)
    """Features of the bot in this guild, each off unless enabled."""
    permissions: GuildPermissions = pydantic.Field(default_factory=GuildPermissions)
    """Which roles may do what through the bot."""
    notify_channel: fields.Snowflake | None = None
    """Channel id where change requests are announced; unset: nowhere."""

    def issues(self) -> Iterator[base.Issue]:
        """Enabled features that have nowhere to post, and bad welcome templates."""
        for name in ("tickets", "welcome", "stream_notifications", "starboard"):
            feature: Feature = getattr(self.features, name)
            if feature.enabled and feature.channel is None:
                alias = Features.model_fields[name].alias or name
                yield base.Issue(("features", alias), f"{alias} is enabled but has no channel")
        yield from _check_template(
            self.features.welcome.message,
            frozenset({"user", "guild", "member_count"}),
            ("features", "welcome", "message"),
        )


class RateLimit(base.Model):
    """How often one user may open changes."""

    changes_per_hour: int = pydantic.Field(default=10, ge=1, le=1000)
    """Change requests one user may open per hour (default 10)."""


class DiscordBot(base.Model):
    """The Discord bot: its token and every guild it serves."""

    token_secret_ref: base.SecretKeyRef
    """Secret key holding the bot token."""
    application_id: fields.Snowflake | None = None
    """The bot's application id from the Discord developer portal."""
    guilds: list[Guild] = pydantic.Field(min_length=1)
    """Every Discord server the bot serves, with its settings."""
    rate_limit: RateLimit = pydantic.Field(default_factory=RateLimit)
    """How often one user may open changes."""

    def issues(self) -> Iterator[base.Issue]:
        """Guilds listed twice, and each guild's own issues."""
        yield from base.unique([g.id for g in self.guilds], "guilds", "guild")
        yield from base.issues_of(self.guilds, "guilds")


class StreamPlatform(base.Model):
    """A channel the stream bot watches."""

    platform: Platform
    """Streaming platform: twitch, youtube or kick."""
    channel: str = pydantic.Field(min_length=1, max_length=100)
    """Channel name on that platform."""
    credentials_secret_ref: base.SecretKeyRef | None = None
    """Secret key holding the bot's credentials for that platform."""
    moderators_only: bool = True
    """When true (default), chat commands such as !status answer moderators only."""


class GoLivePost(base.Model):
    """Where and how a go-live is announced on Discord."""

    platforms: list[Platform] = pydantic.Field(default_factory=list)
    """Platforms whose go-lives are posted; empty: every platform of the stream bot."""
    guild: fields.Snowflake
    """Guild id to post in; the Discord bot must serve it."""
    channel: fields.Snowflake
    """Channel id to post in."""
    template: str = "{streamer} is live on {platform}: {title} {url}"
    """Template of the post; placeholders: {streamer} {platform} {title} {url} {game} {viewers}."""
    mention_role: RoleRef | None = None
    """Role pinged with the post (a name, an id or @everyone)."""


class StreamBot(base.Model):
    """The stream bot: watched channels and go-live posts."""

    platforms: list[StreamPlatform] = pydantic.Field(min_length=1)
    """Channels the stream bot watches."""
    go_live: list[GoLivePost] = pydantic.Field(default_factory=list)
    """Where and how go-lives are announced on Discord."""

    def issues(self) -> Iterator[base.Issue]:
        """Repeated channels, posts for platforms not watched, and bad templates."""
        yield from base.unique(
            [(p.platform, p.channel) for p in self.platforms], "platforms", "channel"
        )
        watched = {p.platform for p in self.platforms}
        allowed = frozenset({"streamer", "platform", "title", "url", "game", "viewers"})
        for index, post in enumerate(self.go_live):
            for j, platform in enumerate(post.platforms):
                if platform not in watched:
                    yield base.Issue(
                        ("goLive", index, "platforms", j),
                        f"platform {platform!r} is not in stream.platforms",
                    )
            yield from _check_template(post.template, allowed, ("goLive", index, "template"))


class BotConfigSpec(base.Spec):
    """The configuration of the Discord bot and the stream bot (at least one of them)."""

    discord: DiscordBot | None = None
    """The Discord bot: its token and every guild it serves."""
    stream: StreamBot | None = None
    """The stream bot: watched channels and go-live posts."""

    @pydantic.model_validator(mode="after")
    def _at_least_one_bot(self) -> BotConfigSpec:
        if self.discord is None and self.stream is None:
            raise ValueError("configure at least one of 'discord' or 'stream'")
        return self

    def issues(self) -> Iterator[base.Issue]:
        """Each bot's issues, and go-live posts to guilds the Discord bot does not serve."""
        if self.discord:
            yield from (issue.under("discord") for issue in self.discord.issues())
        if self.stream:
            yield from (issue.under("stream") for issue in self.stream.issues())
        if self.discord and self.stream:
            guilds = {g.id for g in self.discord.guilds}
            for index, post in enumerate(self.stream.go_live):
                if post.guild not in guilds:
                    yield base.Issue(
                        ("stream", "goLive", index, "guild"),
                        f"guild {post.guild} is not one of discord.guilds",
                    )


class BotStatus(base.Model):
    """What one running bot reports having applied."""

    bot: Literal["discord", "twitch", "youtube", "kick"]
    """Which bot: discord, twitch, youtube or kick."""
    applied_generation: int | None = None
    """The metadata.generation of the config this bot runs with."""
    connected: bool = False
    """Whether the bot is connected to its platform."""
    message: str = ""
    """What the bot last reported, such as an error; empty when all is well."""


class BotConfigStatus(conditions.Status):
    """Which generation the running bots have applied; Ready only when all have this one."""

    bots: list[BotStatus] = pydantic.Field(default_factory=list)
    """What each running bot reports."""
    applied_generation: int | None = None
    """The oldest generation any bot runs with."""
    guilds: int = 0
    """How many guilds the Discord bot serves."""


class BotConfig(base.Resource):
    """The chat bots' configuration."""

    info: ClassVar[base.KindInfo] = base.KindInfo(
        plural="botconfigs",
        scope="Namespaced",
        short_names=("botcfg",),
        description="Discord bot identity, features and permissions per guild; stream bot.",
        columns=(
            base.PrinterColumn("Guilds", ".status.guilds", "integer"),
            base.PrinterColumn("Applied", ".status.appliedGeneration", "integer"),
        ),
    )

    kind: Literal["BotConfig"] = "BotConfig"
    spec: BotConfigSpec
    status: BotConfigStatus | None = None
