"""One LISTEN connection per process, fanned out to whoever subscribed to a channel.

Every part of Nebula that waits for PostgreSQL notifications (the reconcilers of both
runtimes, the web UI's live updates, the bots' reloads and change notices) subscribes here
instead of holding a LISTEN loop of its own, so all of them reconnect the same way: when the
connection is lost (PostgreSQL restarted, the backend was terminated, the network dropped) the
listener connects again with a doubling pause, LISTENs on every channel again, and then tells
every subscriber :data:`MISSED`: notifications sent meanwhile are lost, so each one re-reads
what it shows or reconciles. Subscribers are called on the listener's thread and must only hand
the message on (``loop.call_soon_threadsafe``, a queue): the thread serves everyone.

Nothing here opens a connection before :meth:`Listener.start`; the thread is a daemon and
:meth:`Listener.close` joins it within one poll.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

import psycopg
import psycopg.sql

__all__ = ["MISSED", "Listener", "Message", "Missed", "Subscriber"]

log = logging.getLogger("nebula.listening")


@dataclasses.dataclass(frozen=True)
class Message:
    """One notification: its channel and its payload (as sent, a string)."""

    channel: str
    payload: str


@dataclasses.dataclass(frozen=True)
class Missed:
    """The LISTEN was lost and is back: what was notified meanwhile did not arrive."""


MISSED = Missed()
"""What every subscriber hears after a reconnect: re-read, something may have moved."""

_CHECK_EVERY = 20
"""Polls between round trips that check the connection still works (5 s at the default)."""

Subscriber = Callable[[Message | Missed], None]
"""Called on the listener's thread with each message of its channels, and with MISSED."""


class Listener:
    """The process's LISTEN on one database; see the module docstring.

    ``poll`` is how long the thread waits for a notification before it looks at its stop flag
    and at channels subscribed meanwhile; ``reconnect`` is the first pause after a loss,
    doubling up to ``max_reconnect`` while PostgreSQL stays away.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        poll: float = 0.25,
        reconnect: float = 0.5,
        max_reconnect: float = 5.0,
    ) -> None:
        self._conninfo = conninfo
        self._poll, self._reconnect, self._max_reconnect = poll, reconnect, max_reconnect
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # _listened moved, or stopping
        self._subscribers: dict[str, list[Subscriber]] = {}
        self._listened: frozenset[str] | None = None  # LISTENed now; None: not connected
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.backend_pid: int | None = None  # the server process of the LISTEN (for tests)
        self.reconnects = 0  # how many times the LISTEN was lost and set up again

    @property
    def listening(self) -> bool:
        """Whether the LISTEN is in place right now (on at least one channel)."""
        return self._listened is not None

    def subscribe(self, channels: Iterable[str], subscriber: Subscriber) -> Callable[[], None]:
        """Calls ``subscriber`` with every message on ``channels`` from now on; thread-safe.

        Returns the function that ends the subscription. A channel new to the listener is
        listened to within one poll; wait with :meth:`wait_listening` if that matters.
        """
        wanted = tuple(dict.fromkeys(channels))
        with self._lock:
            for channel in wanted:
                self._subscribers.setdefault(channel, []).append(subscriber)

        def unsubscribe() -> None:
            with self._lock:
                for channel in wanted:
                    found = self._subscribers.get(channel, [])
                    if subscriber in found:
                        found.remove(subscriber)

        return unsubscribe

    def start(self) -> None:
        """Starts the listening thread (once; a second call does nothing)."""
        with self._lock:
            if self._thread is not None or self._stopping.is_set():
                return
            self._thread = threading.Thread(target=self._run, name="nebula-listen", daemon=True)
            self._thread.start()

    def wait_listening(self, timeout: float | None = None) -> bool:
        """Blocks until the LISTEN is in place on every channel subscribed so far; False after
        ``timeout`` seconds (PostgreSQL is down: the thread keeps trying) or once closed."""
        with self._changed:
            wanted = self._wanted()
            self._changed.wait_for(lambda: self._stopping.is_set() or self._covers(wanted), timeout)
            return not self._stopping.is_set() and self._covers(wanted)

    def close(self) -> None:
        """Stops listening and waits for the thread (at most one poll); safe to call twice."""
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    # --- On the listening thread ---------------------------------------------------------

    def _wanted(self) -> frozenset[str]:
        """The channels someone subscribed to (hold the lock)."""
        return frozenset(channel for channel, found in self._subscribers.items() if found)

    def _covers(self, channels: frozenset[str]) -> bool:
        return self._listened is not None and channels <= self._listened

    def _set_listened(self, channels: frozenset[str] | None) -> None:
        with self._changed:
            self._listened = channels
            self._changed.notify_all()

    def _run(self) -> None:
        pause = self._reconnect
        lost = False
        while not self._stopping.is_set():
            try:
                self._listen(after_loss=lost)
                return  # stopped
            # PostgreSQL is down, refused us, or dropped the connection: listen again later.
            except psycopg.Error as error:
                if self._listened is not None:
                    pause = self._reconnect  # it was listening: start the pauses afresh
                self._set_listened(None)
                log.warning("not listening, trying again in %.1fs: %s", pause, error)
                lost = True
                self._stopping.wait(pause)
                pause = min(self._max_reconnect, pause * 2)

    def _listen(self, *, after_loss: bool) -> None:
        with psycopg.connect(self._conninfo, autocommit=True) as conn:
            self.backend_pid = conn.info.backend_pid
            self._catch_up(conn)
            if after_loss:
                self.reconnects += 1
                log.info("listening again; subscribers re-read what they may have missed")
                self._deliver_all(MISSED)
            polls = 0
            while not self._stopping.is_set():
                for notify in conn.notifies(timeout=self._poll, stop_after=64):
                    self._deliver(Message(notify.channel, notify.payload))
                self._catch_up(conn)
                polls += 1
                # A connection closed by the server raises in notifies(); one lost without a
                # word (a dropped network) only shows in a round trip, made now and then.
                if polls % _CHECK_EVERY == 0:
                    conn.execute("")

    def _catch_up(self, conn: psycopg.Connection[Any]) -> None:
        """LISTENs on the channels subscribed since the last look."""
        with self._lock:
            listened = self._listened or frozenset()
            missing = self._wanted() - listened
        for channel in sorted(missing):
            conn.execute(psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(channel)))
        if missing or self._listened is None:
            self._set_listened(listened | missing)

    def _deliver(self, message: Message) -> None:
        with self._lock:
            found = list(self._subscribers.get(message.channel, ()))
        for subscriber in found:
            self._call(subscriber, message)

    def _deliver_all(self, message: Missed) -> None:
        with self._lock:
            found = list(dict.fromkeys(s for group in self._subscribers.values() for s in group))
        for subscriber in found:
            self._call(subscriber, message)

    @staticmethod
    def _call(subscriber: Subscriber, message: Message | Missed) -> None:
        try:
            subscriber(message)
        # One subscriber's bug must not deafen the others: it is logged, and the thread goes on.
        except Exception:
            log.exception("a subscriber failed on %s", message)
