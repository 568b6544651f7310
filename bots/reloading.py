"""Keeps a running bot on the current BotConfig: load it, hand it to the bot, report the generation.

A :class:`Reloader` belongs to one bot (``discord`` or ``twitch``) and one BotConfig. It reads
the BotConfig from the resource store, calls the bot's ``apply`` with it and its generation,
and records what it applied in the ``bot_reports`` table (``nebula.bot_reports``), which wakes
the BotConfig controller (or the operator's BotConfig daemon). :meth:`Reloader.watch` reloads
whenever its change feed rings, and applies when the BotConfig's generation changed (a sync
applied a new spec), so a push to Git reaches the running bot within a second or two.

The feed is where the BotConfig lives:

- :class:`PostgresChanges` (the embedded runtime, ``nebula up``): a LISTEN on the store's
  resource notifications, ringing on a change of the BotConfig's spec;
- :class:`KubernetesChanges` (k3s, ``nebula bot … --kubernetes``): a watch on that one BotConfig
  object in the Kubernetes API, ringing when its ``metadata.generation`` changes. Status writes
  (the operator reporting) do not ring. It resumes from the last ``resourceVersion`` it saw,
  lists again after ``410 Gone``, and backs off while the API server does not answer.

Either runs in a thread of its own and hands its rings to the event loop; after it lost track
(PostgreSQL or the API server went away) it rings once it follows again: the BotConfig may have
changed meanwhile. The reports go to PostgreSQL in both cases.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

import kubernetes.client
import kubernetes.client.exceptions
import kubernetes.watch
import psycopg
import pydantic
import urllib3.exceptions

from controllers import embedded
from nebula import bot_reports, errors
from nebula.resources import GROUP, VERSION, ResourceKey
from nebula.resources.bot_config import BotConfig
from nebula.store import ResourceStore, postgres

__all__ = [
    "Apply",
    "ChangeFeed",
    "KubernetesChanges",
    "PostgresChanges",
    "Reloader",
    "Ring",
    "find_bot_config",
    "read_bot_config",
]

log = logging.getLogger("nebula.bots")

Apply = Callable[[BotConfig, int | None], Awaitable[Sequence[str]]]
"""The bot's part: apply a BotConfig of a generation; returns what it could not do (or none)."""

Ring = Callable[[], None]
"""Tells the Reloader that its BotConfig may have changed (callable from any thread)."""


class ChangeFeed(Protocol):
    """Where a :class:`Reloader` hears that its BotConfig may have changed."""

    def follow(self, ring: Ring, following: threading.Event, stopping: threading.Event) -> None:
        """Rings on every change of the BotConfig until ``stopping`` is set; runs in a thread.

        Sets ``following`` once it follows the BotConfig, then rings (the first load comes
        after, so no change falls in between); clears it while it has lost track, and rings
        again once it follows again. Returns soon after ``stopping`` is set, and never raises
        for a lost connection: it tries again.
        """
        ...


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
        store: ResourceStore,
        reports: bot_reports.BotReportStore,
        key: ResourceKey,
        # The bot.
        bot: bot_reports.BotName,
        apply: Apply,
        connected: Callable[[], bool],
        # What rings when the BotConfig changes; default: a LISTEN on the PostgreSQL store of
        # ``conninfo`` (PostgresChanges), looking at its stop flag every ``poll`` seconds and
        # listening again ``reconnect`` seconds after losing PostgreSQL.
        changes: ChangeFeed | None = None,
        conninfo: str | None = None,
        poll: float = 0.5,
        reconnect: float = 5.0,
    ) -> None:
        if changes is None:
            if conninfo is None:
                raise TypeError("Reloader needs changes= or the store's conninfo=")
            changes = PostgresChanges(conninfo, key, bot=bot, poll=poll, reconnect=reconnect)
        self._changes = changes
        self._store = store
        self._reports = reports
        self._key = key
        self._bot: bot_reports.BotName = bot
        self._apply = apply
        self._connected = connected
        self.config: BotConfig | None = None
        """The BotConfig the bot runs with; None before the first load."""
        self.generation: int | None = None
        """Its generation; None before the first load (or where the store keeps none)."""
        self.watching = asyncio.Event()
        """Set once :meth:`watch` follows the BotConfig and has loaded it once."""

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
            asyncio.to_thread(self._changes.follow, ring, listening, stopping),
            name="nebula-bot-reload",
        )
        try:
            # The first load comes after the feed follows: no change falls in between.
            while not listening.is_set() and not listener.done() and not stop.is_set():
                await asyncio.sleep(0.01)
            stopped = asyncio.create_task(stop.wait())
            while not stop.is_set():
                wake.clear()
                try:
                    await self.reload()
                # The store did not answer: the next ring or reconnect tries again.
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


class PostgresChanges:
    """The embedded runtime's feed: LISTEN on the PostgreSQL store's resource notifications.

    Rings on every change of the BotConfig's spec (and on its deletion). When PostgreSQL goes
    away it listens again ``reconnect`` seconds later, then rings.
    """

    def __init__(
        self,
        conninfo: str,
        key: ResourceKey,
        *,
        bot: str = "",
        # How often the listener looks at its stop flag, and waits after losing PostgreSQL.
        poll: float = 0.5,
        reconnect: float = 5.0,
    ) -> None:
        self._conninfo = conninfo
        self._key = key
        self._bot = bot
        self._poll = poll
        self._reconnect = reconnect

    def follow(self, ring: Ring, following: threading.Event, stopping: threading.Event) -> None:
        """See :meth:`ChangeFeed.follow`; one connection of its own, for LISTEN."""
        while not stopping.is_set():
            try:
                changes = postgres.listen(self._conninfo, timeout=self._poll)
                try:
                    for change in changes:
                        if not following.is_set():
                            following.set()
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
                following.clear()
                log.warning("the %s bot stopped listening for %s, again in %ss: %s",
                            self._bot, self._key, self._reconnect, error)  # fmt: skip
                stopping.wait(self._reconnect)


_GONE = "gone"  # what the feed last saw of a BotConfig that does not exist


class KubernetesChanges:
    """The k3s feed: a watch on one BotConfig object in the Kubernetes API.

    Lists the object (``fieldSelector=metadata.name=…``) to learn where it stands and its
    ``resourceVersion``, rings, then watches from that version on and rings whenever the
    object's ``metadata.generation`` changes, or it appears or goes. A watch that ends (the
    server's ``timeout``) resumes from the last version seen; ``410 Gone`` (that version is
    too old) lists again. While the API server does not answer it retries after ``backoff``
    seconds, doubling up to ``max_backoff``. Needs get, list and watch on ``botconfigs``.
    """

    def __init__(
        self,
        api: kubernetes.client.ApiClient,
        key: ResourceKey,
        *,
        bot: str = "",
        # How long one watch request lasts on the server, and how long a request may hang.
        timeout: int = 300,
        request_timeout: float = 30.0,
        # The pause after a failure, doubled on each failure in a row up to max_backoff.
        backoff: float = 1.0,
        max_backoff: float = 60.0,
    ) -> None:
        self._api = kubernetes.client.CustomObjectsApi(api)
        self._key = key
        self._namespace = key.namespace or "default"
        self._bot = bot
        self._timeout = timeout
        self._request_timeout = request_timeout
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._lock = threading.Lock()
        self._watch: kubernetes.watch.Watch | None = None

    def follow(self, ring: Ring, following: threading.Event, stopping: threading.Event) -> None:
        """See :meth:`ChangeFeed.follow`. A second thread breaks a blocked watch on stopping."""
        done = threading.Event()
        breaker = threading.Thread(
            target=self._break_on_stop, args=(stopping, done), name="nebula-bot-watch-stop"
        )
        breaker.start()
        try:
            self._follow(ring, following, stopping)
        finally:
            done.set()
            breaker.join()

    def _follow(self, ring: Ring, following: threading.Event, stopping: threading.Event) -> None:
        version: str | None = None  # the resourceVersion to watch from; None: list first
        listed = False  # whether that version is the list's (no event came since)
        seen: int | str | None = None  # the generation last rung for (or _GONE)
        failures = 0
        while not stopping.is_set():
            try:
                if version is None:
                    version, seen = self._list()
                    listed, failures = True, 0
                    following.set()
                    ring()
                for event in self._events(version):
                    if stopping.is_set():
                        return
                    raw: Mapping[str, Any] = event.get("raw_object") or {}
                    metadata = raw.get("metadata") or {}
                    version, listed = metadata.get("resourceVersion") or version, False
                    if event.get("type") == "BOOKMARK" or metadata.get("name") != self._key.name:
                        continue  # a server that ignored the field selector
                    now = _GONE if event.get("type") == "DELETED" else metadata.get("generation")
                    if now != seen:
                        seen = now
                        ring()
                # The watch ended as watches do (the server's timeout): resume from there.
            except kubernetes.client.exceptions.ApiException as error:
                if stopping.is_set():
                    return
                # The version watched from is too old: list again, and ring (it may have
                # changed). Unless it is the list's own: then the server is unwell; pause.
                if error.status == 410 and not listed:
                    version = None
                    continue
                failures += 1
                self._lost(following, stopping, failures, f"{error.status} {error.reason}")
                version = None
            # No answer, a dropped connection, or a broken stream: follow again after a pause.
            except (urllib3.exceptions.HTTPError, OSError, ValueError) as error:
                if stopping.is_set():
                    return
                failures += 1
                self._lost(following, stopping, failures, str(error) or type(error).__name__)
                version = None

    def _list(self) -> tuple[str | None, int | str | None]:
        """The list's resourceVersion, and the BotConfig's generation (or _GONE)."""
        answer: Any = self._api.list_namespaced_custom_object(
            GROUP, VERSION, self._namespace, BotConfig.info.plural,
            field_selector=f"metadata.name={self._key.name}",
            _request_timeout=self._request_timeout,
        )  # fmt: skip
        found = [
            item
            for item in (answer or {}).get("items") or []
            if (item.get("metadata") or {}).get("name") == self._key.name
        ]
        seen = (found[0].get("metadata") or {}).get("generation") if found else _GONE
        return ((answer or {}).get("metadata") or {}).get("resourceVersion"), seen

    def _events(self, version: str | None) -> Any:
        """One watch request from ``version`` on (None: from now)."""
        watch = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]
        with self._lock:
            self._watch = watch
        options: dict[str, Any] = {
            "field_selector": f"metadata.name={self._key.name}",
            "timeout_seconds": self._timeout,
            "allow_watch_bookmarks": True,
            # A hung connection ends some time after the server should have ended the watch.
            "_request_timeout": (self._request_timeout, self._timeout + self._request_timeout),
        }
        if version is not None:
            options["resource_version"] = version
        return watch.stream(  # type: ignore[no-untyped-call]
            self._api.list_namespaced_custom_object,
            GROUP, VERSION, self._namespace, BotConfig.info.plural, **options,
        )  # fmt: skip

    def _lost(
        self, following: threading.Event, stopping: threading.Event, failures: int, why: str
    ) -> None:
        following.clear()
        delay = min(self._backoff * 2 ** (failures - 1), self._max_backoff)
        log.warning("the %s bot lost the watch on %s, again in %ss: %s",
                    self._bot, self._key, delay, why)  # fmt: skip
        stopping.wait(delay)

    def _break_on_stop(self, stopping: threading.Event, done: threading.Event) -> None:
        """Once stopping is set, breaks the watch in flight, again until the feed returns (a
        watch may start just after a break)."""
        while not done.wait(0.05):
            if not stopping.is_set():
                continue
            with self._lock:
                watch = self._watch
            if watch is not None:
                watch.stop()  # type: ignore[no-untyped-call]
