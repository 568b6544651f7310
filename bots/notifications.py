"""What a bot posts where a change was asked for, when it is approved, merged, applied, rejected
or in conflict.

:func:`notice` is a plain function of a change request → where and what to post (None for a
change no chat asked for, or a move nobody needs to hear of); :class:`Announcer` claims each
move in the change store so it is posted once, and finds the moves made while no bot
listened; :func:`listen` LISTENs on the ``nebula_changes`` channel
(every move of a change is announced there) and hands the notices to a sender. Run by the
Discord bot, whose sender posts in the channel; nothing here talks to Discord itself.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import re
import threading
from collections.abc import Callable

import psycopg

from bots import commands
from nebula import errors
from nebula.changes import ChangeRequest, ChangeStore, Person, requests
from nebula.store import postgres

__all__ = ["ANNOUNCED", "CATCH_UP", "Announcer", "Destination", "Notice", "listen", "notice"]

log = logging.getLogger("nebula.bots")


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


ANNOUNCED: tuple[requests.State, ...] = ("approved", "merged", "applied", "rejected", "conflict")
"""The moves a bot reports (opening is answered by the command itself)."""
CATCH_UP = datetime.timedelta(hours=6)
"""How old a move made while no bot listened may be and still be posted when one starts."""
_REPLY_TO = re.compile(r"^discord:(?P<guild>[0-9]{1,20})/(?P<channel>[0-9]{1,20})$")
_DISCORD_USER = re.compile(r"^(?P<id>[0-9]{1,20})@discord\.invalid$")


@dataclasses.dataclass(frozen=True)
class Destination:
    """A Discord channel, by guild and channel id."""

    guild: str
    channel: str

    @classmethod
    def parse(cls, reply_to: str | None) -> Destination | None:
        """The channel of ``discord:<guild>/<channel>``; None for anything else."""
        match = _REPLY_TO.match(reply_to or "")
        return cls(match["guild"], match["channel"]) if match else None


@dataclasses.dataclass(frozen=True)
class Notice:
    """One message to post: where, about which change and move, and the text."""

    destination: Destination
    change: int
    state: requests.State
    text: str


def notice(change: ChangeRequest, *, ui_url: str) -> Notice | None:
    """The message for the change's current state in the channel it was asked in, or None."""
    destination = Destination.parse(change.reply_to)
    if destination is None or change.state not in ANNOUNCED:
        return None
    link = commands.change_url(ui_url, change.id)
    who = _mention(change.requester)
    decided = Person.parse(change.decided_by).name if change.decided_by else "someone"
    what = f"change #{change.id} ({change.title})"
    if change.state == "approved":
        text = f"{who}{what} was approved by {decided}; merging it now."
    elif change.state == "merged":
        text = f"{who}{what} is merged; the sync applies it next."
    elif change.state == "applied":
        text = f"{who}{what} is applied: the homelab runs it now."
    elif change.state == "rejected":
        why = f": {change.reason}" if change.reason else "."
        text = f"{who}{what} was rejected by {decided}{why}"
    else:
        files = ", ".join(change.conflict_files) or "the same lines"
        text = f"{who}{what} is in conflict ({files}); rebase it in the web UI."
    return Notice(destination, change.id, change.state, f"{text[0].upper()}{text[1:]}\n{link}")


def _mention(requester: str) -> str:
    """``<@id> `` for a requester who asked from Discord, so the post pings them; else empty."""
    match = _DISCORD_USER.match(Person.parse(requester).email)
    return f"<@{match['id']}> " if match else ""


class Announcer:
    """Turns change ids into notices, each move of each change once.

    Once across processes and restarts: the change store keeps the last state told of, and
    only the announcer that claims a move posts it (at most once: a post that then fails is
    not tried again, as a chat message is news, not a record).
    """

    def __init__(
        self,
        store: ChangeStore,
        *,
        ui_url: str,
        catch_up: datetime.timedelta = CATCH_UP,
        clock: Callable[[], datetime.datetime] = _utcnow,
    ) -> None:
        self._store = store
        self._ui_url = ui_url
        self._catch_up = catch_up
        self._clock = clock

    def announce(self, change: int) -> Notice | None:
        """The notice for the change as it is now; None when there is nothing new to say.

        A move and the next one may come before the change is read (approved, then merged at
        once): the change is read as it is, so "merged" is said once and "approved" skipped.
        """
        try:
            current = self._store.get(change)
        # Announced, then gone (a database restored from a backup): nothing to say.
        except errors.ResourceNotFound:
            return None
        found = notice(current, ui_url=self._ui_url)
        if found is None or not self._store.claim_announcement(change, current.state):
            return None
        return found

    def missed(self) -> list[Notice]:
        """The notices of moves no bot told of yet (made while none listened), at most
        :data:`CATCH_UP` old, oldest first; each is claimed as :meth:`announce` does."""
        since = self._clock() - self._catch_up
        waiting = self._store.unannounced(reply_to="discord:", states=ANNOUNCED, since=since)
        return [found for change in waiting if (found := self.announce(change)) is not None]


def listen(
    conninfo: str,
    announcer: Announcer,
    send: Callable[[Notice], None],
    *,
    stop: threading.Event,
    listening: threading.Event | None = None,
    poll: float = 0.5,
    reconnect: float = 5.0,
) -> None:
    """Hands every new notice to ``send`` until ``stop`` is set; blocking (run it in a thread).

    ``listening`` is set once the LISTEN is in place; then the moves no bot told of yet (made
    while none listened, or while PostgreSQL was away) are sent first (see
    :meth:`Announcer.missed`). ``send`` must not block for long (the Discord bot schedules the
    post on its loop); a failing send is logged and the next notice still goes out. When
    PostgreSQL goes away it listens again after ``reconnect`` seconds.
    """
    while not stop.is_set():
        try:
            _listen(conninfo, announcer, send, stop=stop, listening=listening, poll=poll)
        # PostgreSQL is down, refused us, or dropped the connection: listen again later.
        except psycopg.Error as error:
            log.warning("not listening for changes, again in %ss: %s", reconnect, error)
            stop.wait(reconnect)


def _listen(
    conninfo: str,
    announcer: Announcer,
    send: Callable[[Notice], None],
    *,
    stop: threading.Event,
    listening: threading.Event | None,
    poll: float,
) -> None:
    changes = postgres.listen(conninfo, timeout=poll, channels=[requests.CHANNEL])
    caught_up = False
    try:
        for message in changes:
            if stop.is_set():
                return
            # The LISTEN is in place (the first item comes after it): what moved before it
            # cannot be missed now, so tell it.
            if not caught_up:
                caught_up = True
                for found in _missed(announcer):
                    _send(send, found)
                if listening is not None:
                    listening.set()
            if not isinstance(message, postgres.Signal) or message.channel != requests.CHANNEL:
                continue
            try:
                one = announcer.announce(int(message.payload))
            # The change could not be read or claimed just now: this move goes unannounced.
            except errors.TransientError as error:
                log.warning("change #%s could not be read: %s", message.payload, error)
                continue
            if one is not None:
                _send(send, one)
    finally:
        changes.close()


def _missed(announcer: Announcer) -> list[Notice]:
    try:
        return announcer.missed()
    # The changes could not be read just now: the next LISTEN (or move) tries again.
    except errors.TransientError as error:
        log.warning("the moves made while no bot listened could not be read: %s", error)
        return []


def _send(send: Callable[[Notice], None], found: Notice) -> None:
    try:
        send(found)
    # The sender failed (a channel the bot cannot post in): the next notice still goes.
    except Exception:
        log.exception("could not post the notice of change #%s", found.change)
