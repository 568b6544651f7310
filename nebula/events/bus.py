"""The event bus: topics carrying small JSON payloads between Nebula's processes.

Reconcilers, the node agent, the API and the bots publish what happened (config changed, job
progress, heartbeats) and subscribe to what they react to. The runtimes pick the bus once with
:func:`connect`: Redis pub/sub when a Redis URL is configured, an in-process bus otherwise (one
process only). Delivery is at most once and only to subscribers listening at the time; nothing
is stored, so the bus must never carry state that a late reader needs (that lives in PostgreSQL
or Kubernetes). Payloads are JSON objects on both buses, so code behaves the same on either.
"""

from __future__ import annotations

import asyncio
import collections.abc
import contextlib
import dataclasses
import json
import logging
import typing

import redis.asyncio
import redis.asyncio.client
import redis.exceptions

from nebula import errors

__all__ = ["Event", "EventBus", "InProcessBus", "RedisBus", "Subscription", "connect"]

_logger = logging.getLogger(__name__)

# Every Redis channel Nebula uses starts with this, so a shared Redis stays readable.
_CHANNEL_PREFIX = "nebula:"

# How long subscribing may wait for Redis to confirm before the store counts as unavailable.
_CONFIRM_TIMEOUT = 10.0


@dataclasses.dataclass(frozen=True)
class Event:
    """One message: the topic it was published on and its JSON-object payload."""

    topic: str
    payload: dict[str, typing.Any]


# What `subscribe` returns: entering it subscribes, iterating it yields events, leaving it
# unsubscribes.
Subscription: typing.TypeAlias = contextlib.AbstractAsyncContextManager[
    collections.abc.AsyncIterator[Event]
]


class EventBus(typing.Protocol):
    """What publishers and subscribers need from a bus, whichever one runs underneath."""

    async def publish(self, topic: str, payload: dict[str, typing.Any]) -> None:
        """Send ``payload`` to everyone subscribed to ``topic`` right now."""

    def subscribe(self, *topics: str) -> Subscription:
        """Listen to ``topics``; events published after entering the context are delivered."""

    async def aclose(self) -> None:
        """Release the bus's connections; subscriptions must be closed first."""


def connect(redis_url: str | None) -> EventBus:
    """Return the Redis bus for ``redis_url``, or the in-process bus when it is None.

    Opens no connection yet: the Redis bus connects on first use and raises
    ``StoreUnavailable`` then. Close the bus with ``aclose()`` when done.
    """
    if redis_url is None:
        return InProcessBus()
    return RedisBus(redis.asyncio.Redis.from_url(redis_url, decode_responses=True))


class InProcessBus:
    """A bus on asyncio queues for a single process (the embedded runtime without Redis)."""

    def __init__(self) -> None:
        self._queues: dict[str, set[asyncio.Queue[Event]]] = {}

    async def publish(self, topic: str, payload: dict[str, typing.Any]) -> None:
        """Queue ``payload`` for the topic's subscribers; never blocks (queues are unbounded)."""
        # A JSON round trip, as on Redis: a payload that Redis would refuse fails here too, and
        # each subscriber gets its own copy rather than the publisher's mutable dict.
        data = json.dumps(payload)
        for queue in self._queues.get(topic, ()):
            queue.put_nowait(Event(topic, json.loads(data)))

    @contextlib.asynccontextmanager
    async def subscribe(
        self, *topics: str
    ) -> collections.abc.AsyncIterator[collections.abc.AsyncIterator[Event]]:
        """Register a queue for ``topics`` for the duration of the context."""
        if not topics:
            raise ValueError("subscribe needs at least one topic")
        queue: asyncio.Queue[Event] = asyncio.Queue()
        for topic in topics:
            self._queues.setdefault(topic, set()).add(queue)
        try:
            yield _QueueEvents(queue)
        finally:
            for topic in topics:
                self._queues[topic].discard(queue)

    async def aclose(self) -> None:
        """Nothing to release; present so both buses close the same way."""


class _QueueEvents:
    def __init__(self, queue: asyncio.Queue[Event]) -> None:
        self._queue = queue

    def __aiter__(self) -> _QueueEvents:
        return self

    async def __anext__(self) -> Event:
        return await self._queue.get()


class RedisBus:
    """A bus on Redis pub/sub: channels ``nebula:<topic>``, JSON payloads, any number of hosts."""

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self._client = client

    async def publish(self, topic: str, payload: dict[str, typing.Any]) -> None:
        """PUBLISH the payload as JSON; raises ``StoreUnavailable`` when Redis is unreachable."""
        data = json.dumps(payload)
        try:
            await self._client.publish(_CHANNEL_PREFIX + topic, data)
        # Redis is down, refused us, or timed out: the same publish may work later.
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
            raise errors.StoreUnavailable(f"Redis is unreachable: {error}") from error

    @contextlib.asynccontextmanager
    async def subscribe(
        self, *topics: str
    ) -> collections.abc.AsyncIterator[collections.abc.AsyncIterator[Event]]:
        """SUBSCRIBE on a connection of its own; entering waits until Redis confirms."""
        if not topics:
            raise ValueError("subscribe needs at least one topic")
        # Leaving the PubSub context closes its connection, which also unsubscribes.
        async with self._client.pubsub() as pubsub:
            await _subscribed(pubsub, [_CHANNEL_PREFIX + topic for topic in topics])
            yield _PubSubEvents(pubsub)

    async def aclose(self) -> None:
        """Close the client and its connection pool."""
        await self._client.aclose()


async def _subscribed(pubsub: redis.asyncio.client.PubSub, channels: list[str]) -> None:
    try:
        await pubsub.subscribe(*channels)
        # Redis confirms each channel once it is subscribed; waiting for that means an event
        # published after `subscribe` returns cannot slip past the subscriber.
        async with asyncio.timeout(_CONFIRM_TIMEOUT):
            confirmed = 0
            while confirmed < len(channels):
                message = await pubsub.get_message(timeout=None)
                if message is not None and message["type"] == "subscribe":
                    confirmed += 1
    # Redis is down, refused us, or timed out.
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
        raise errors.StoreUnavailable(f"Redis is unreachable: {error}") from error
    # Redis accepted the connection but never confirmed the subscription.
    except TimeoutError as error:
        raise errors.StoreUnavailable("Redis did not confirm the subscription") from error


class _PubSubEvents:
    def __init__(self, pubsub: redis.asyncio.client.PubSub) -> None:
        self._pubsub = pubsub

    def __aiter__(self) -> _PubSubEvents:
        return self

    async def __anext__(self) -> Event:
        while True:
            try:
                message = await self._pubsub.get_message(timeout=None)
            # The connection dropped while we listened.
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
                raise errors.StoreUnavailable(f"Redis is unreachable: {error}") from error
            if message is None or message["type"] != "message":
                continue
            topic = message["channel"].removeprefix(_CHANNEL_PREFIX)
            try:
                payload = json.loads(message["data"])
            # Someone else published on a nebula: channel; one stray message must not end the
            # subscriber's loop.
            except json.JSONDecodeError:
                payload = None
            if isinstance(payload, dict):
                return Event(topic, payload)
            _logger.warning(
                "ignoring a message that is not a JSON object on %s", message["channel"]
            )
