"""The BotConfig as the running Discord bot applies it: per guild, its identity and features.

:class:`LiveConfig` is what the bot holds. :meth:`LiveConfig.apply` takes a BotConfig and its
generation and returns :class:`Applying`, only what differs from what the bot runs now: the
nicknames to set, the avatars that changed, the presence, the guilds whose features changed.
The Discord bot carries that out (``guild.me.edit``, ``change_presence``) and reports the
generation; the feature code asks :meth:`LiveConfig.enabled`. Plain data, no discord.py, no I/O.

Discord shows one presence per bot, not one per guild: the presence of the first guild that
sets one is used, and guilds asking for another are named in :attr:`Applying.notes`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from nebula.resources.bot_config import FEATURES, BotConfig, Features, Guild, Presence

__all__ = ["Activity", "Applying", "GuildSettings", "LiveConfig", "guild_settings", "presence"]


@dataclasses.dataclass(frozen=True)
class Activity:
    """The presence shown under the bot's name: ``watching`` ``the homelab``."""

    type: str  # playing, streaming, listening, watching, competing or custom
    text: str
    url: str | None = None  # the stream's URL (streaming only)

    @classmethod
    def of(cls, presence: Presence | None) -> Activity | None:
        """The activity of a BotConfig presence; None for none."""
        if presence is None:
            return None
        return cls(presence.type, presence.text, str(presence.url) if presence.url else None)


@dataclasses.dataclass(frozen=True)
class GuildSettings:
    """How the bot is in one guild: its nickname, avatar, presence and enabled features."""

    guild: str
    name: str
    nickname: str | None  # None: its username
    avatar_url: str | None  # None: its global avatar
    activity: Activity | None
    features: frozenset[str]  # enabled features, as written in YAML (streamNotifications)
    notify_channel: str | None


@dataclasses.dataclass(frozen=True)
class Applying:
    """What the bot must do to run a generation: only what differs from what it runs."""

    generation: int | None
    nicknames: Mapping[str, str | None]  # guild id -> nickname to set (None: the username)
    avatars: Mapping[str, str | None]  # guild id -> avatar URL to upload (None: remove)
    presence_changed: bool
    activity: Activity | None  # the presence to show, when presence_changed
    features: Mapping[str, frozenset[str]]  # guild id -> its enabled features, where they changed
    left: tuple[str, ...]  # guilds the BotConfig no longer lists
    added: tuple[str, ...] = ()  # guilds new to the bot (its commands are registered there)
    notes: tuple[str, ...] = ()  # what the bot cannot do as asked (one presence per bot)

    @property
    def empty(self) -> bool:
        """True when the bot has nothing to change on Discord (features may still change)."""
        return not (self.nicknames or self.avatars or self.presence_changed)


def guild_settings(guild: Guild) -> GuildSettings:
    """What one guild of a BotConfig asks of the bot."""
    enabled = frozenset(
        alias
        for name, alias in zip(Features.model_fields, FEATURES, strict=True)
        if getattr(guild.features, name).enabled
    )
    identity = guild.identity
    return GuildSettings(
        guild=guild.id,
        name=guild.name,
        nickname=identity.nickname,
        avatar_url=str(identity.avatar_url) if identity.avatar_url else None,
        activity=Activity.of(identity.presence),
        features=enabled,
        notify_channel=guild.notify_channel,
    )


def presence(guilds: Mapping[str, GuildSettings]) -> tuple[Activity | None, tuple[str, ...]]:
    """The one presence the bot shows (the first guild's that sets one), and notes on others."""
    asked = [(g, g.activity) for g in guilds.values() if g.activity is not None]
    if not asked:
        return None, ()
    chosen = asked[0][1]
    others = [g.name or g.guild for g, activity in asked[1:] if activity != chosen]
    if not others:
        return chosen, ()
    first = asked[0][0].name or asked[0][0].guild
    shown = f"Discord shows one presence per bot: {first}'s is shown"
    return chosen, (f"{shown}, not the one of {', '.join(others)}",)


class LiveConfig:
    """The Discord configuration the running bot applied last; see the module docstring."""

    def __init__(self) -> None:
        self._guilds: dict[str, GuildSettings] = {}
        self._activity: Activity | None = None
        self._started = False
        self.generation: int | None = None
        """The BotConfig generation applied last; None before the first."""

    def apply(self, config: BotConfig, generation: int | None) -> Applying:
        """What differs between the bot now and ``config``; the bot then runs ``config``.

        The first call sets every nickname and the presence (what Discord shows is unknown);
        later calls only what changed. An avatar is uploaded only when its URL changed.
        A BotConfig without ``discord`` leaves every guild.
        """
        discord = config.spec.discord
        wanted = {g.id: guild_settings(g) for g in discord.guilds} if discord else {}
        activity, notes = presence(wanted)
        before = self._guilds

        def changed(guild: str, field: str) -> bool:
            old = before.get(guild)
            return old is None or getattr(old, field) != getattr(wanted[guild], field)

        nicknames = {g: s.nickname for g, s in wanted.items() if changed(g, "nickname")}
        avatars = {
            g: s.avatar_url
            for g, s in wanted.items()
            if changed(g, "avatar_url") and (s.avatar_url is not None or g in before)
        }
        features = {g: s.features for g, s in wanted.items() if changed(g, "features")}
        presence_changed = not self._started or activity != self._activity
        left = tuple(sorted(set(before) - set(wanted)))
        added = tuple(g for g in wanted if g not in before)

        self._guilds, self._activity, self._started = wanted, activity, True
        self.generation = generation
        return Applying(
            generation=generation,
            nicknames=nicknames,
            avatars=avatars,
            presence_changed=presence_changed,
            activity=activity,
            features=features,
            left=left,
            added=added,
            notes=notes,
        )

    def forget(self, guild: str) -> None:
        """Forgets what was applied to a guild, so the next apply sets all of it again (after
        Discord refused part of it, or the bot joined the guild only now)."""
        self._guilds.pop(guild, None)

    def guild(self, guild: str) -> GuildSettings | None:
        """What the bot runs with in a guild; None for a guild the BotConfig does not list."""
        return self._guilds.get(guild)

    def enabled(self, guild: str, feature: str) -> bool:
        """Whether a feature (``streamNotifications``) is on in a guild right now."""
        settings = self._guilds.get(guild)
        return settings is not None and feature in settings.features

    @property
    def activity(self) -> Activity | None:
        """The presence the bot shows."""
        return self._activity
