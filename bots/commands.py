"""The Discord bot's ``/nebula`` commands as plain functions: (caller, arguments) → reply.

Called by :mod:`bots.discord_bot`, whose slash-command callbacks only turn an interaction into a
:class:`Caller` and a :class:`Reply` back into a message, and by the tests. Who may do what comes
from the BotConfig's guild ``permissions``; a mutating command opens a change request through
the change-request core (:class:`nebula.changes.ChangeService`), which validates the change
whole before anything is committed and returns the same change for the same request. Replies
are data (text, an embed-like summary, ephemeral or not), never discord.py objects.

Every command takes a ``checked`` callback (:data:`Checked`) and calls it once the request
passed the checks that need no git (who may, the arguments, the rate limit), right before the
slow part: the Discord bot shows "thinking…" only then, so a refusal answers at once and only
its caller sees it.

Blocking (PostgreSQL, git): the Discord bot calls these from a worker thread. Nothing here
keeps state between calls, so one :class:`Handlers` serves every guild at once.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Sequence

import pydantic

from bots import overview
from nebula import errors
from nebula.changes import ChangeRequest, ChangeService, Intent, Person, intents, requests
from nebula.resources.bot_config import FEATURES, BotConfig, Guild
from nebula.store import ResourceStore

__all__ = [
    "BLUE",
    "CANNOT_CHANGE",
    "CANNOT_VIEW",
    "EVERYONE",
    "GREEN",
    "MAX_CHOICES",
    "NOT_CONFIGURED",
    "ORANGE",
    "RATE_LIMITED",
    "RATE_WINDOW",
    "RED",
    "UNAVAILABLE",
    "UNKNOWN_GUILD",
    "BotConfigSource",
    "Caller",
    "Checked",
    "Embed",
    "Field",
    "Handlers",
    "Reply",
    "Role",
    "change_url",
]

EVERYONE = "@everyone"
"""The role every member holds; in ``permissions`` it lets everyone in."""
RATE_WINDOW = datetime.timedelta(hours=1)
"""``rateLimit.changesPerHour`` counts the changes a user opened within this window."""
MAX_CHOICES = 25
"""Discord shows at most 25 autocomplete choices."""
_MAX_FIELD = 1024  # characters of one embed field's value, Discord's limit
_MAX_TEXT = 2000  # characters of one message, Discord's limit

# Embed colours: all is well, something waits or lags, something is wrong, neutral.
GREEN, ORANGE, RED, BLUE = 0x2ECC71, 0xE67E22, 0xE74C3C, 0x3498DB

# What the bot says when it will not do something; shared by replies, logs and tests.
NOT_CONFIGURED = "Sorry, Nebula has no Discord bot configured: the BotConfig has no `discord:`."
UNKNOWN_GUILD = (
    "Sorry, Nebula does not serve this server. An admin can add it to the BotConfig's "
    "`discord.guilds`."
)
CANNOT_VIEW = "Sorry, your roles do not let you see the homelab's state here."
CANNOT_CHANGE = (
    "Sorry, your roles do not let you propose changes here. Roles that may: {roles}. "
    "Ask someone who holds one of them."
)
RATE_LIMITED = (
    "You have opened {count} changes in the last hour and the limit is {limit}: "
    "please wait a little before proposing another one."
)
UNAVAILABLE = "Nebula could not reach {what} just now; nothing was changed. Try again shortly."

Clock = Callable[[], datetime.datetime]
BotConfigSource = Callable[[], BotConfig | None]
"""Returns the BotConfig the bot runs with now; None while there is none."""
Checked = Callable[[], None]
"""Called once a request passed its quick checks, before the slow part (see the module doc)."""


def _go_on() -> None:
    """The :data:`Checked` of a caller with nothing to announce: it answers at the end."""


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclasses.dataclass(frozen=True)
class Role:
    """A Discord role the caller holds: its id and its name as shown in the server."""

    id: str
    name: str


@dataclasses.dataclass(frozen=True)
class Caller:
    """Who runs a command, and where."""

    user_id: str
    name: str  # the Discord username: the author's name on the change's commit
    guild_id: str | None  # None in a direct message
    channel_id: str | None
    roles: tuple[Role, ...] = ()

    def person(self) -> Person:
        """The change's requester: the user's name, and a stable address made of its id."""
        return Person(self.name, f"{self.user_id}@discord.invalid")

    def reply_to(self) -> str | None:
        """Where the change's moves are reported: ``discord:<guild>/<channel>``."""
        if self.guild_id is None or self.channel_id is None:
            return None
        return f"discord:{self.guild_id}/{self.channel_id}"


@dataclasses.dataclass(frozen=True)
class Field:
    """One titled part of an embed."""

    name: str
    value: str
    inline: bool = False


@dataclasses.dataclass(frozen=True)
class Embed:
    """A card under the message: title, link, description, fields and colour."""

    title: str
    description: str = ""
    fields: tuple[Field, ...] = ()
    colour: int = BLUE
    url: str | None = None


@dataclasses.dataclass(frozen=True)
class Reply:
    """What the bot answers; ``ephemeral`` replies are shown to the caller only.

    ``text`` is the whole answer in plain text; ``embed``, when there is one, is the same
    answer as a card, which Discord shows instead of the text.
    """

    text: str
    embed: Embed | None = None
    ephemeral: bool = False
    change: int | None = None  # the change the reply is about, when it opened or found one


def change_url(ui_url: str, change: int) -> str:
    """The web UI's page of a change, where it is approved or rejected."""
    return f"{ui_url.rstrip('/')}/changes/{change}"


class Handlers:
    """Every ``/nebula`` command and autocomplete, over the store and the change service."""

    def __init__(
        self,
        *,
        # What the commands read and change.
        store: ResourceStore,
        changes: ChangeService,
        bot_config: BotConfigSource,
        # Where people approve changes (links in replies), and the time (rate limits).
        ui_url: str,
        clock: Clock = _utcnow,
    ) -> None:
        self._store = store
        self._changes = changes
        self._bot_config = bot_config
        self._ui_url = ui_url
        self._clock = clock

    # --- Who may ---------------------------------------------------------------------------

    def refusal(self, caller: Caller, *, mutating: bool) -> Reply | None:
        """The polite ephemeral refusal for this caller, or None when it may go on.

        Mutating commands need a role of ``permissions.openChanges``, the others one of
        ``permissions.viewState``, in a guild the BotConfig serves. Cheap (no git): every
        command asks it before it calls its ``checked``.
        """
        found = self._guild(caller)
        if isinstance(found, Reply):
            return found
        _, guild = found
        if mutating and not _holds(caller, guild.permissions.open_changes):
            roles = ", ".join(guild.permissions.open_changes) or "none (nobody may)"
            return Reply(CANNOT_CHANGE.format(roles=roles), ephemeral=True)
        if not mutating and not _holds(caller, guild.permissions.view_state):
            return Reply(CANNOT_VIEW, ephemeral=True)
        return None

    def _guild(self, caller: Caller) -> tuple[BotConfig, Guild] | Reply:
        config = self._bot_config()
        if config is None or config.spec.discord is None:
            return Reply(NOT_CONFIGURED, ephemeral=True)
        guild = next((g for g in config.spec.discord.guilds if g.id == caller.guild_id), None)
        if guild is None:
            return Reply(UNKNOWN_GUILD, ephemeral=True)
        return config, guild

    # --- Reading ---------------------------------------------------------------------------

    def status(self, caller: Caller, *, checked: Checked = _go_on) -> Reply:
        """``/nebula status``: each GitSource's applied revision, and what is not Ready."""
        if (refused := self.refusal(caller, mutating=False)) is not None:
            return refused
        checked()
        state = overview.overview(self._store)
        fields = [
            Field(
                f"GitSource {s.key.namespace}/{s.key.name}",
                (f"`{overview.short(s.revision)}`" if s.revision else "nothing applied yet")
                + (f" on {s.branch}" if s.branch else "")
                + (f" · {s.ready.reason}" if s.ready else " · not synced yet"),
            )
            for s in state.sources
        ]
        if state.troubles:
            lines = [_trouble(trouble) for trouble in state.troubles]
            fields.append(Field(f"Not Ready ({len(state.troubles)})", _lines(lines, _MAX_FIELD)))
        if state.unobserved:
            fields.append(Field("Not reconciled yet", f"{state.unobserved} objects", inline=True))
        summary = (
            f"All {state.objects} resources are Ready."
            if state.healthy
            else f"{len(state.troubles)} of {state.objects} resources are not Ready."
        )
        embed = Embed("Homelab status", summary, tuple(fields), GREEN if state.healthy else ORANGE)
        return Reply(summary, embed)

    def nodes(self, caller: Caller, *, checked: Checked = _go_on) -> Reply:
        """``/nebula nodes``: the nebulanodes table (NAME ROLE GPU VRAM READY)."""
        if (refused := self.refusal(caller, mutating=False)) is not None:
            return refused
        checked()
        rows = overview.node_rows(self._store)
        if not rows:
            return Reply("No NebulaNode is declared yet.")
        table = [("NAME", "ROLE", "GPU", "VRAM", "READY")]
        table += [(r.name, r.role, r.gpu, r.vram, r.ready) for r in rows]
        widths = [max(len(row[i]) for row in table) for i in range(5)]
        lines = ["   ".join(map(str.ljust, row, widths)).rstrip() for row in table]
        return Reply("```\n" + _lines(lines, _MAX_TEXT - 8) + "\n```")

    def changes(self, caller: Caller, *, checked: Checked = _go_on) -> Reply:
        """``/nebula changes``: the changes that wait for someone, newest first, with links."""
        if (refused := self.refusal(caller, mutating=False)) is not None:
            return refused
        checked()
        waiting = self._changes.store.list(states=requests.LIVE, source=self._changes.source_id)
        if not waiting:
            return Reply("No change waits for approval.")
        fields = tuple(
            Field(
                f"#{c.id} {c.title}"[:256],
                f"{c.state} · `{c.summary}` · by {Person.parse(c.requester).name}\n"
                f"{change_url(self._ui_url, c.id)}",
            )
            for c in waiting[:10]
        )
        more = f" (the 10 newest of {len(waiting)})" if len(waiting) > 10 else ""
        text = f"{len(waiting)} change{'s' if len(waiting) != 1 else ''} wait{more}."
        return Reply(text, Embed("Open changes", "", fields, ORANGE, self._ui_url))

    # --- Proposing -------------------------------------------------------------------------

    def model_add(
        self, caller: Caller, *, model: str, node: str, checked: Checked = _go_on
    ) -> Reply:
        """``/nebula model add``: proposes placing a model on one more node."""
        return self._propose(
            caller,
            lambda namespace: intents.AddModelToNode(namespace=namespace, model=model, node=node),
            checked=checked,
        )

    def model_remove(
        self, caller: Caller, *, model: str, node: str, checked: Checked = _go_on
    ) -> Reply:
        """``/nebula model remove``: proposes taking a model off a node."""
        return self._propose(
            caller,
            lambda namespace: intents.RemoveModelFromNode(
                namespace=namespace, model=model, node=node
            ),
            checked=checked,
        )

    def service_image(
        self, caller: Caller, *, service: str, image: str, checked: Checked = _go_on
    ) -> Reply:
        """``/nebula service image``: proposes running a service from another image."""
        return self._propose(
            caller,
            lambda namespace: intents.SetServiceImage(
                namespace=namespace, service=service, image=image
            ),
            checked=checked,
        )

    def service_scale(
        self, caller: Caller, *, service: str, replicas: int, checked: Checked = _go_on
    ) -> Reply:
        """``/nebula service scale``: proposes running more or fewer copies of a service."""
        return self._propose(
            caller,
            lambda namespace: intents.ScaleService(
                namespace=namespace, service=service, replicas=replicas
            ),
            checked=checked,
        )

    def feature(self, caller: Caller, *, name: str, state: str, checked: Checked = _go_on) -> Reply:
        """``/nebula feature``: proposes switching a bot feature on or off in this guild."""
        if (refused := self.refusal(caller, mutating=True)) is not None:
            return refused
        config = self._bot_config()
        if state not in ("on", "off"):
            return Reply(f"{state!r} is neither on nor off.", ephemeral=True)

        def toggle(namespace: str) -> Intent:
            assert config is not None  # _propose refuses first when there is no BotConfig
            return intents.ToggleBotFeature(
                namespace=namespace,
                bot_config=config.metadata.name,
                feature=name,
                enabled=state == "on",
                guild=caller.guild_id,
            )

        return self._propose(caller, toggle, checked=checked)

    def _propose(
        self, caller: Caller, build: Callable[[str], Intent], *, checked: Checked
    ) -> Reply:
        """Opens the change ``build`` describes, after every check; see the module docstring."""
        # Who may: the guild's openChanges roles.
        if (refused := self.refusal(caller, mutating=True)) is not None:
            return refused
        config = self._bot_config()
        assert config is not None and config.spec.discord is not None  # refusal() checked

        # The arguments, as the intent's model reads them: a bad name or image stops here.
        try:
            intent = build(config.metadata.namespace or "default")
        # An invalid name, image reference, feature or number: say which, commit nothing.
        except pydantic.ValidationError as error:
            return Reply(_invalid(error), ephemeral=True)

        # The rate limit, unless this exact request already waits (asking again is free).
        person = caller.person()
        repeated = self._waiting(person, intent)
        if repeated is None:
            limit = config.spec.discord.rate_limit.changes_per_hour
            since = self._clock() - RATE_WINDOW
            try:
                count = self._changes.store.opened_since(str(person), since)
            # PostgreSQL did not answer: nothing can be checked, so nothing is opened.
            except errors.TransientError:
                return Reply(UNAVAILABLE.format(what="the database"), ephemeral=True)
            if count >= limit:
                return Reply(RATE_LIMITED.format(count=count, limit=limit), ephemeral=True)

        # The change itself: validated whole by the service before anything is committed. This
        # is the slow part (git), which the caller may want to announce.
        checked()
        try:
            change = self._changes.open(
                intent, requester=person, origin="discord", reply_to=caller.reply_to()
            )
        # The edit would make the manifests invalid (an unknown node): name the first problem.
        except errors.InvalidChange as error:
            first = error.errors[0] if error.errors else None
            where = f" ({first.file}:{first.line})" if first else ""
            what = first.message if first else str(error)
            return Reply(f"That change would not be valid: {what}{where}. Nothing was committed.",
                         ephemeral=True)  # fmt: skip
        # It is so already: a change would change nothing.
        except errors.NothingToChange as error:
            return Reply(f"Nothing to change: {error}.", ephemeral=True)
        # The model, service or guild is not declared in the repository.
        except errors.ResourceNotFound as error:
            return Reply(f"Not found: {error}. Nothing was committed.", ephemeral=True)
        # The git remote or PostgreSQL did not answer: the same command may work shortly.
        except errors.TransientError:
            return Reply(UNAVAILABLE.format(what="the repository"), ephemeral=True)
        # Anything else the user must fix (the remote refused our push, for one).
        except errors.PermanentError as error:
            return Reply(f"The change was refused: {error}", ephemeral=True)
        return self._opened(change, repeated=repeated is not None)

    def _waiting(self, person: Person, intent: Intent) -> ChangeRequest | None:
        """This requester's change for this very intent, if one still waits."""
        wanted = intent.model_dump(mode="json")
        live = self._changes.store.list(states=requests.LIVE, source=self._changes.source_id)
        return next((c for c in live if c.requester == str(person) and c.intent == wanted), None)

    def _opened(self, change: ChangeRequest, *, repeated: bool) -> Reply:
        link = change_url(self._ui_url, change.id)
        verb = "already waits" if repeated else "is open and waits for approval"
        text = f"Change #{change.id} {verb}: {change.title}\n`{change.summary}` · {link}"
        embed = Embed(
            f"Change #{change.id}: {change.title}"[:256],
            f"Approve or reject it in the web UI: {link}",
            (
                Field("State", change.state, inline=True),
                Field("Diff", f"`{change.summary}`", inline=True),
                Field("Branch", f"`{change.branch}`", inline=True),
            ),
            BLUE,
            link,
        )
        return Reply(text, embed, change=change.id)

    # --- Autocomplete ----------------------------------------------------------------------

    def complete_nodes(self, caller: Caller, prefix: str) -> list[str]:
        """NebulaNode names starting with ``prefix`` (case-insensitive), at most 25."""
        return self._complete(caller, "NebulaNode", prefix)

    def complete_models(self, caller: Caller, prefix: str) -> list[str]:
        """NebulaModel names of the bot's namespace starting with ``prefix``, at most 25."""
        return self._complete(caller, "NebulaModel", prefix)

    def complete_services(self, caller: Caller, prefix: str) -> list[str]:
        """NebulaService names of the bot's namespace starting with ``prefix``, at most 25."""
        return self._complete(caller, "NebulaService", prefix)

    def complete_features(self, caller: Caller, prefix: str) -> list[str]:
        """Feature names as written in YAML (``streamNotifications``) starting with ``prefix``."""
        if not self._may_look(caller):
            return []
        return _starting(FEATURES, prefix)

    def _complete(self, caller: Caller, kind: str, prefix: str) -> list[str]:
        if not self._may_look(caller):
            return []
        config = self._bot_config()
        namespace = (config.metadata.namespace if config else None) or "default"
        names = [
            s.key.name
            for s in self._store.list(kind)
            if s.key.namespace is None or s.key.namespace == namespace
        ]
        return _starting(names, prefix)

    def _may_look(self, caller: Caller) -> bool:
        """Names are state too: offered to those who may see state or propose changes."""
        return self.refusal(caller, mutating=False) is None or (
            self.refusal(caller, mutating=True) is None
        )


def _trouble(trouble: overview.Trouble) -> str:
    said = f"**{trouble.key.kind}/{trouble.key.name}**: {trouble.reason}"
    return f"{said}: {trouble.message}" if trouble.message else said


def _holds(caller: Caller, allowed: Sequence[str]) -> bool:
    """Whether the caller holds one of the roles, named by id or by name (case-insensitive)."""
    if EVERYONE in allowed:
        return True
    ids = {role.id for role in caller.roles}
    names = {role.name.casefold() for role in caller.roles}
    return any(want in ids or want.casefold() in names for want in allowed)


def _invalid(error: pydantic.ValidationError) -> str:
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "input"
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"Invalid {field}: {message}. Nothing was committed."


def _starting(names: Sequence[str], prefix: str) -> list[str]:
    wanted = prefix.strip().casefold()
    return sorted({n for n in names if n.casefold().startswith(wanted)})[:MAX_CHOICES]


def _lines(lines: Sequence[str], limit: int, *, longest: int = 300) -> str:
    """As many whole lines as fit in ``limit`` characters, saying how many were left out."""
    lines = [line if len(line) <= longest else line[: longest - 1] + "…" for line in lines]
    if len("\n".join(lines)) <= limit:
        return "\n".join(lines)
    shown: list[str] = []
    for index, line in enumerate(lines):
        tail = f"… and {len(lines) - index} more"
        if len("\n".join([*shown, line, tail])) > limit:
            return "\n".join([*shown, tail])
        shown.append(line)
    return "\n".join(shown)  # not reached: the whole text was too long
