"""The stream bot's words: go-live posts for Discord, and its ``!status`` answer in chat.

Plain functions of the BotConfig and what happened, called by :mod:`bots.twitch_bot` (the
twitchio glue) and the tests. Posts reach Discord through a :class:`Sender`, which the Discord
bot implements (:class:`bots.discord_bot.NebulaBot`). Templates were checked when the BotConfig
was loaded (only known placeholders), so rendering here cannot fail on a placeholder.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

from bots import overview
from nebula.resources.bot_config import BotConfig, Platform, StreamPlatform

__all__ = [
    "MAX_CHAT",
    "PLATFORM_NAMES",
    "GoLive",
    "Post",
    "Sender",
    "answers",
    "go_live_posts",
    "platform_of",
    "status_answer",
]

PLATFORM_NAMES: dict[str, str] = {"twitch": "Twitch", "youtube": "YouTube", "kick": "Kick"}
"""How ``{platform}`` reads in a post."""
MAX_CHAT = 500
"""Characters of one Twitch chat message."""


@dataclasses.dataclass(frozen=True)
class GoLive:
    """A stream that just went live, as the platform describes it."""

    platform: Platform
    channel: str  # the channel's login on the platform, as the BotConfig names it
    streamer: str  # the name people see
    title: str
    url: str
    game: str = ""
    viewers: int = 0


@dataclasses.dataclass(frozen=True)
class Post:
    """One Discord message to send: where, what, and the role to ping."""

    guild: str
    channel: str
    text: str
    mention_role: str | None = None  # a role name, a role id or @everyone


class Sender(Protocol):
    """Posts in a Discord channel (the Discord bot implements it)."""

    async def post(
        self, guild: str, channel: str, text: str, *, mention_role: str | None = None
    ) -> None:
        """Sends ``text`` in the channel, pinging ``mention_role`` when given."""
        ...


def platform_of(config: BotConfig, platform: Platform, channel: str) -> StreamPlatform | None:
    """The BotConfig's entry for a watched channel (login compared case-insensitively)."""
    if config.spec.stream is None:
        return None
    wanted = channel.casefold().lstrip("#")
    return next(
        (
            p
            for p in config.spec.stream.platforms
            if p.platform == platform and p.channel.casefold().lstrip("#") == wanted
        ),
        None,
    )


def go_live_posts(config: BotConfig, event: GoLive) -> list[Post]:
    """Every post the BotConfig's ``goLive`` asks for when ``event``'s channel goes live.

    Nothing for a channel the BotConfig does not watch, and nothing in a guild whose
    ``streamNotifications`` feature is off (the toggle applies to go-live posts too).
    """
    stream = config.spec.stream
    if stream is None or platform_of(config, event.platform, event.channel) is None:
        return []
    guilds = {g.id: g for g in config.spec.discord.guilds} if config.spec.discord else {}
    posts = []
    for wanted in stream.go_live:
        if wanted.platforms and event.platform not in wanted.platforms:
            continue
        guild = guilds.get(wanted.guild)
        notifications = guild.features.stream_notifications if guild else None
        if notifications is not None and not notifications.enabled:
            continue
        text = wanted.template.format(
            streamer=event.streamer,
            platform=PLATFORM_NAMES[event.platform],
            title=event.title,
            url=event.url,
            game=event.game or "no category",
            viewers=event.viewers,
        )
        role = wanted.mention_role or (notifications.mention_role if notifications else None)
        posts.append(Post(wanted.guild, wanted.channel, text, role))
    return posts


def answers(platform: StreamPlatform | None, *, moderator: bool) -> bool:
    """Whether ``!status`` is answered in a chat: a watched one, and for moderators only where
    ``moderatorsOnly`` (the default) says so."""
    return platform is not None and (moderator or not platform.moderators_only)


def status_answer(
    *,
    platform: StreamPlatform | None,
    moderator: bool,
    state: overview.Overview,
) -> str | None:
    """The answer to ``!status`` in a watched chat, or None (say nothing).

    ``moderator`` counts the broadcaster too. A chat with ``moderatorsOnly`` (the default)
    answers moderators only; everyone else gets no answer at all, not a refusal that would
    invite spamming the command. A chat the BotConfig does not watch gets nothing.
    """
    if not answers(platform, moderator=moderator):
        return None
    answer = f"Homelab: {state.line()}"
    return answer if len(answer) <= MAX_CHAT else answer[: MAX_CHAT - 1] + "…"
