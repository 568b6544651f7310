"""Both event buses, Redis on a real redis-server and the in-process one, keep the same contract."""

from __future__ import annotations

import asyncio
import collections.abc
import socket

import pytest

from nebula import errors, events

# Every wait is bounded, so a broken bus fails the test instead of hanging it.
WAIT = 5.0


@pytest.fixture(params=["redis", "in-process"])
def bus_url(request: pytest.FixtureRequest) -> str | None:
    """What ``events.connect`` gets: the test redis-server's URL, or None for the in-process bus."""
    if request.param == "redis":
        url: str = request.getfixturevalue("redis_server")
        return url
    return None


@pytest.fixture
async def bus(bus_url: str | None) -> collections.abc.AsyncIterator[events.EventBus]:
    """A bus from ``events.connect``, closed after the test."""
    bus = events.connect(bus_url)
    yield bus
    await bus.aclose()


async def test_event_reaches_subscribers_of_its_topic_and_no_others(bus: events.EventBus) -> None:
    async with bus.subscribe("config.changed") as config, bus.subscribe("job.progress") as jobs:
        await bus.publish("config.changed", {"revision": "abc123"})
        await bus.publish("job.progress", {"percent": 50})

        # Each subscriber's first event is its own topic's: the other topic's never arrived
        # before it, and events on one connection arrive in order.
        async with asyncio.timeout(WAIT):
            assert await anext(config) == events.Event("config.changed", {"revision": "abc123"})
            assert await anext(jobs) == events.Event("job.progress", {"percent": 50})


async def test_one_subscription_hears_every_topic_it_names(bus: events.EventBus) -> None:
    async with bus.subscribe("node.heartbeat", "node.gone") as nodes:
        await bus.publish("node.heartbeat", {"node": "gpu-host"})
        await bus.publish("node.gone", {"node": "vps"})

        async with asyncio.timeout(WAIT):
            received = [await anext(nodes), await anext(nodes)]

    assert received == [
        events.Event("node.heartbeat", {"node": "gpu-host"}),
        events.Event("node.gone", {"node": "vps"}),
    ]


async def test_payload_round_trips_unchanged(bus: events.EventBus) -> None:
    payload = {
        "model": "llama3:8b",
        "progress": {"done": 1234567890123, "ratio": 0.25, "steps": ["pull", "verify"]},
        "error": None,
        "ok": True,
        "note": "größe ✓",
    }

    async with bus.subscribe("model.pull") as pulls:
        await bus.publish("model.pull", payload)
        async with asyncio.timeout(WAIT):
            event = await anext(pulls)

    assert event.payload == payload


async def test_redis_bus_carries_events_between_two_clients(redis_server: str) -> None:
    publisher = events.connect(redis_server)
    subscriber = events.connect(redis_server)
    try:
        async with subscriber.subscribe("pipeline.run") as runs:
            await publisher.publish("pipeline.run", {"run": 7})
            async with asyncio.timeout(WAIT):
                assert await anext(runs) == events.Event("pipeline.run", {"run": 7})
    finally:
        await publisher.aclose()
        await subscriber.aclose()


async def test_unreachable_redis_raises_store_unavailable() -> None:
    # A port that was free a moment ago: nothing listens there, so the connection is refused.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    bus = events.connect(f"redis://127.0.0.1:{port}/0")
    try:
        with pytest.raises(errors.StoreUnavailable):
            await bus.publish("config.changed", {})
        with pytest.raises(errors.StoreUnavailable):
            async with bus.subscribe("config.changed"):
                pass
    finally:
        await bus.aclose()
