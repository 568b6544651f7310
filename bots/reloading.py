"""Keeps a running bot on the current BotConfig: load it, hand it to the bot, report the generation.

A :class:`Reloader` belongs to one bot (``discord`` or ``twitch``) and one BotConfig. It reads
the BotConfig from the resource store, calls the bot's ``apply`` with it and its generation,
and records what it applied in the ``bot_reports`` table (``nebula.bot_reports``), which wakes
the BotConfig controller. :meth:`Reloader.watch` LISTENs on the store's resource notifications
and reloads whenever the BotConfig's spec changes (a sync applied a new generation), so a push
to Git reaches the running bot within a second. The embedded runtime's PostgreSQL store only:
on k3s the BotConfig lives in the Kubernetes API, which this does not watch yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence

import psycopg
import pydantic

from controllers import embedded
from nebula import bot_reports, errors
from nebula.resources import ResourceKey
from nebula.resources.bot_config import BotConfig
from nebula.store import ResourceStore, postgres

__all__ = ["Apply", "Reloader", "find_bot_config", "read_bot_config"]

log = logging.getLogger("nebula.bots")

Apply = Callable[[BotConfig, int | None], Awaitable[Sequence[str]]]
"""The bot's part: apply a BotConfig of a generation; returns what it could not do (or none)."""


def find_bot_config(store: ResourceStore, wanted: str | None = None) -> ResourceKey:
    """The BotConfig a bot runs with: ``namespace/name``, or the only one in the store.

    Raises ResourceNotFound when there is none (or not that one) and ConfigurationError when
    there are several and none was named.
    """
    found = [stored.key for stored in store.list("BotConfig")]
    if wanted is not None:
        namespace, _, name = wanted.rpartition("/")
        key = ResourceKey("BotConfig", namespace or "default", name)
        if key not in found:
            raise errors.ResourceNotFound(f"there is no {key}: sync it from Git first")
        return key
    if not found:
        raise errors.ResourceNotFound("there is no BotConfig yet: sync one from Git first")
    if len(found) > 1:
        listed = ", ".join(f"{k.namespace}/{k.name}" for k in found)
        raise errors.ConfigurationError(f"several BotConfigs ({listed}): name one with --config")
    return found[0]


def read_bot_config(store: ResourceStore, key: ResourceKey) -> BotConfig | None:
    """The BotConfig as the store holds it now, with its generation; None when it is gone.

    Raises pydantic's ValidationError for a stored spec the model refuses (a sync never
    stores one; a hand edit might).
    """
    stored = store.get(key)
    if stored is None:
        return None
    return BotConfig.model_validate(embedded.resource_of(stored))


class Reloader:
    """One bot's link to its BotConfig: reload on change, apply, report; see the module doc."""

    def __init__(
        self,
        *,
        # Where the BotConfig lives and where reports go.
        conninfo: str,
        store: ResourceStore,
        reports: bot_reports.BotReportStore,
        key: ResourceKey,
        # The bot.
        bot: bot_reports.BotName,
        apply: Apply,
        connected: Callable[[], bool],
        # How often the listener looks at its stop flag, and waits after losing PostgreSQL.
        poll: float = 0.5,
        reconnect: float = 5.0,
    ) -> None:
        self._conninfo = conninfo
        self._store = store
        self._reports = reports
        self._key = key
        self._bot: bot_reports.BotName = bot
        self._apply = apply
        self._connected = connected
        self._poll = poll
        self._reconnect = reconnect
        self.config: BotConfig | None = None
        """The BotConfig the bot runs with; None before the first load."""
        self.generation: int | None = None
        """Its generation; None before the first load (or where the store keeps none)."""
        self.watching = asyncio.Event()
        """Set once :meth:`watch` listens and has loaded the BotConfig once."""

    async def reload(self, *, force: bool = False) -> bool:
        """Loads the BotConfig; applies and reports it when its generation is new (or forced:
        the bot joined a guild and must set what it forgot).

        Returns whether the bot applied something. A BotConfig that is gone, or that the model
        refuses, is reported (with why) and the bot keeps what it runs.
        """
        try:
            config = await asyncio.to_thread(read_bot_config, self._store, self._key)
        # A stored spec the model refuses: the bot keeps the last good one, and says so.
        except pydantic.ValidationError as error:
            await self.report(f"{self._key} is invalid, still running the last good one: {error}")
            return False
        if config is None:
            await self.report(f"{self._key} is gone; still running the last one")
            return False
        generation = config.metadata.generation
        if self.config is not None and generation == self.generation and not force:
            return False
        problems = await self._apply(config, generation)
        self.config, self.generation = config, generation
        await self.report("; ".join(problems))
        return True

    async def report(self, message: str = "") -> None:
        """Records the generation the bot runs and whether it is connected (wakes the
        controller). A report the database does not take is logged, not raised: the next one
        says the same and more."""
        report = bot_reports.BotReport(
            namespace=self._key.namespace or "",
            name=self._key.name,
            bot=self._bot,
            applied_generation=self.generation,
            connected=self._connected(),
            message=message[:4096],
        )
        try:
            await asyncio.to_thread(self._reports.record, report)
        # PostgreSQL did not answer: the BotConfig's status lags until the next report.
        except errors.TransientError as error:
            log.warning("the %s bot could not report generation %s: %s", self._bot,
                        self.generation, error)  # fmt: skip

    async def watch(self, stop: asyncio.Event) -> None:
        """Reloads now and whenever the BotConfig changes, until ``stop`` is set."""
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        listening = threading.Event()
        stopping = threading.Event()

        def ring() -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed before the listener
                loop.call_soon_threadsafe(wake.set)

        listener = asyncio.create_task(
            asyncio.to_thread(self._listen, ring, listening, stopping), name="nebula-bot-reload"
        )
        try:
            # The first load comes after LISTEN is in place: no change falls in between.
            while not listening.is_set() and not listener.done() and not stop.is_set():
                await asyncio.sleep(0.01)
            stopped = asyncio.create_task(stop.wait())
            while not stop.is_set():
                wake.clear()
                try:
                    await self.reload()
                # PostgreSQL did not answer: the next notification or reconnect tries again.
                except errors.TransientError as error:
                    log.warning("the %s bot could not reload %s: %s", self._bot, self._key, error)
                # The bot failed to apply in a way it did not foresee: it keeps what it runs,
                # keeps watching, and the next change tries again.
                except Exception:
                    log.exception("the %s bot could not apply %s", self._bot, self._key)
                self.watching.set()
                woken = asyncio.create_task(wake.wait())
                await asyncio.wait({woken, stopped}, return_when=asyncio.FIRST_COMPLETED)
                woken.cancel()
            stopped.cancel()
        finally:
            stopping.set()
            await asyncio.gather(listener, return_exceptions=True)

    def _listen(
        self, ring: Callable[[], None], listening: threading.Event, stopping: threading.Event
    ) -> None:
        """Rings on every change of the BotConfig's spec; runs in its own thread and connection.

        When PostgreSQL goes away it listens again after a pause, then rings: the BotConfig
        may have changed meanwhile.
        """
        while not stopping.is_set():
            try:
                changes = postgres.listen(self._conninfo, timeout=self._poll)
                try:
                    for change in changes:
                        if not listening.is_set():
                            listening.set()
                            ring()
                        if stopping.is_set():
                            return
                        if (
                            isinstance(change, postgres.Notification)
                            and change.key == self._key
                            and (change.spec or change.op == "delete")
                        ):
                            ring()
                finally:
                    changes.close()
            # PostgreSQL is down, refused us, or dropped the connection: listen again later.
            except psycopg.Error as error:
                listening.clear()
                log.warning("the %s bot stopped listening for %s, again in %ss: %s",
                            self._bot, self._key, self._reconnect, error)  # fmt: skip
                stopping.wait(self._reconnect)
