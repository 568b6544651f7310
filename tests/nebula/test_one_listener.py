"""The process's one LISTEN: every subscriber hears its channels, and after the connection is
killed under it, every subscriber hears MISSED, then the messages sent after it is back."""

from __future__ import annotations

import collections.abc
import queue

import psycopg
import psycopg.conninfo
import pytest

from nebula import db

WAIT = 30.0
"""Seconds a test waits for something that must happen (a generous bound, never asserted)."""


def _notify(conninfo: str, channel: str, payload: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))


def _next(heard: queue.Queue[db.Message | db.Missed]) -> db.Message | db.Missed:
    return heard.get(timeout=WAIT)


@pytest.fixture
def listener(database: str) -> collections.abc.Iterator[db.Listener]:
    opened = db.Listener(database, poll=0.05, reconnect=0.05)
    yield opened
    opened.close()


def test_each_subscriber_hears_only_its_channels_in_the_order_sent(
    database: str, listener: db.Listener
) -> None:
    heartbeats: queue.Queue[db.Message | db.Missed] = queue.Queue()
    everything: queue.Queue[db.Message | db.Missed] = queue.Queue()
    listener.subscribe(["nebula_heartbeats"], heartbeats.put)
    listener.subscribe(["nebula_heartbeats", "nebula_changes"], everything.put)
    listener.start()
    assert listener.wait_listening(WAIT)

    _notify(database, "nebula_changes", "7")
    _notify(database, "nebula_heartbeats", "home-ubuntu")
    _notify(database, "nebula_changes", "8")

    assert _next(heartbeats) == db.Message("nebula_heartbeats", "home-ubuntu")
    assert [_next(everything) for _ in range(3)] == [
        db.Message("nebula_changes", "7"),
        db.Message("nebula_heartbeats", "home-ubuntu"),
        db.Message("nebula_changes", "8"),
    ]
    assert heartbeats.empty()


def test_a_channel_subscribed_while_listening_is_listened_to_as_well(
    database: str, listener: db.Listener
) -> None:
    first: queue.Queue[db.Message | db.Missed] = queue.Queue()
    listener.subscribe(["nebula_resources"], first.put)
    listener.start()
    assert listener.wait_listening(WAIT)

    later: queue.Queue[db.Message | db.Missed] = queue.Queue()
    listener.subscribe(["nebula_bot_reports"], later.put)
    assert listener.wait_listening(WAIT)
    _notify(database, "nebula_bot_reports", "discord")

    assert _next(later) == db.Message("nebula_bot_reports", "discord")


def test_every_subscriber_hears_missed_after_its_backend_is_killed_then_hears_again(
    database: str, listener: db.Listener
) -> None:
    subscribers = [queue.Queue[db.Message | db.Missed]() for _ in range(3)]
    for channel, heard in zip(("a", "b", "c"), subscribers, strict=True):
        listener.subscribe([f"nebula_{channel}"], heard.put)
    listener.start()
    assert listener.wait_listening(WAIT)
    killed = listener.backend_pid

    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (killed,))

    for heard in subscribers:
        assert _next(heard) is db.MISSED
    assert listener.reconnects == 1 and listener.backend_pid != killed
    for channel, heard in zip(("a", "b", "c"), subscribers, strict=True):
        _notify(database, f"nebula_{channel}", "after")
        assert _next(heard) == db.Message(f"nebula_{channel}", "after")


def test_a_subscriber_that_raises_does_not_deafen_the_others(
    database: str, listener: db.Listener
) -> None:
    def broken(message: db.Message | db.Missed) -> None:
        raise RuntimeError("a bug in one subscriber")

    heard: queue.Queue[db.Message | db.Missed] = queue.Queue()
    listener.subscribe(["nebula_changes"], broken)
    listener.subscribe(["nebula_changes"], heard.put)
    listener.start()
    assert listener.wait_listening(WAIT)

    _notify(database, "nebula_changes", "1")
    _notify(database, "nebula_changes", "2")

    assert [_next(heard), _next(heard)] == [
        db.Message("nebula_changes", "1"),
        db.Message("nebula_changes", "2"),
    ]


def test_an_unsubscribed_subscriber_hears_nothing_more(
    database: str, listener: db.Listener
) -> None:
    gone: queue.Queue[db.Message | db.Missed] = queue.Queue()
    stays: queue.Queue[db.Message | db.Missed] = queue.Queue()
    unsubscribe = listener.subscribe(["nebula_changes"], gone.put)
    listener.subscribe(["nebula_changes"], stays.put)
    listener.start()
    assert listener.wait_listening(WAIT)

    unsubscribe()
    _notify(database, "nebula_changes", "1")

    # The other subscriber heard it, so the message was delivered: the first one was skipped.
    assert _next(stays) == db.Message("nebula_changes", "1")
    assert gone.empty()


def test_waiting_for_the_listen_gives_up_while_postgres_cannot_be_reached(
    database: str,
) -> None:
    nowhere = psycopg.conninfo.make_conninfo(database, dbname="nebula_no_such_database")
    listener = db.Listener(nowhere, poll=0.05, reconnect=0.05)
    listener.subscribe(["nebula_changes"], lambda message: None)
    listener.start()
    try:
        assert listener.wait_listening(0.5) is False
        assert listener.listening is False
    finally:
        listener.close()
