"""The Discord bot when Discord cannot be reached or refuses it: one line per attempt, never a
traceback; retried with growing delays until Discord answers; a refused token ends it at once.

The bot is discord.py's real client against the local Discord (:mod:`tests.bots.discord_server`),
started after the bot, or reached through a name that does not resolve. The delays between
attempts go through ``serve``'s ``sleep`` (recorded here instead of waited out).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import socket
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import aiohttp
import aiohttp.abc
import pytest

from bots import discord_bot, live, notifications, reloading
from nebula import bot_reports, errors
from tests.bots.conftest import BOTS, TOKEN, UI_URL, Homelab, serving
from tests.bots.discord_server import FakeDiscord, until

UNRESOLVABLE = "nebula-unreachable.invalid"  # .invalid never resolves (RFC 6761)


class _NoSuchHost(aiohttp.abc.AbstractResolver):
    """Looks Discord's names up as a host name that does not exist, with the system resolver:
    what a machine without DNS (or behind a broken one) gets."""

    def __init__(self) -> None:
        self._system = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[aiohttp.abc.ResolveResult]:
        return await self._system.resolve(UNRESOLVABLE, port, family)

    async def close(self) -> None:
        await self._system.close()


def _serve(
    lab: Homelab,
    bot: discord_bot.NebulaBot,
    *,
    stop: asyncio.Event,
    sleep: Callable[[float], Awaitable[None]],
) -> Coroutine[Any, Any, None]:
    """:func:`discord_bot.serve` for ``bot`` as ``nebula bot discord`` runs it."""
    reloader = reloading.Reloader(
        conninfo=lab.conninfo,
        store=lab.store,
        reports=bot_reports.BotReportStore(lab.conninfo),
        key=BOTS,
        bot="discord",
        apply=bot.apply,
        connected=bot.connected,
        poll=0.1,
    )
    return discord_bot.serve(
        bot=bot,
        token=TOKEN,
        reloader=reloader,
        announcer=notifications.Announcer(lab.changes.store, ui_url=UI_URL),
        conninfo=lab.conninfo,
        stop=stop,
        sleep=sleep,
    )


def _retries(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("Discord is unreachable (")]


async def test_an_unreachable_discord_is_retried_with_growing_delays_until_it_answers(
    lab: Homelab, local_discord: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    # Regression: `nebula bot discord` crashed with a raw aiohttp traceback when Discord could
    # not be reached. It must retry (1 s doubling to 60 s), say so in one line per attempt, and
    # log in once Discord answers.
    caplog.set_level(logging.INFO)
    waited: list[float] = []

    async def sleep(delay: float) -> None:
        waited.append(delay)
        if len(waited) == 8:  # Discord comes back during the eighth delay
            await local_discord.start()

    async with serving(lab, local_discord, sleep=sleep) as (bot, _reloader):
        assert bot.connected()
        assert [c.path for c in local_discord.calls[:2]] == [
            "/users/@me",
            "/oauth2/applications/@me",
        ]
        assert len(local_discord.identified) == 1

    assert waited == [1, 2, 4, 8, 16, 32, 60, 60]
    retries = _retries(caplog)
    assert [r.getMessage().rpartition(": ")[2] for r in retries] == [
        f"retrying in {delay:g} s" for delay in waited
    ]
    for record in retries:
        assert record.levelno == logging.WARNING and record.name == "nebula.bots.discord"
        assert record.exc_info is None and "\n" not in record.getMessage()
        assert "Cannot connect to host discord.com:443" in record.getMessage()
        assert f"[Connect call failed ('127.0.0.1', {local_discord.port})]" in record.getMessage()
    # Nothing else was logged with a traceback, and no attempt left its session open.
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
    gc.collect()  # an unclosed session says so when it is collected
    assert not any("Unclosed" in r.getMessage() for r in caplog.records)


async def test_ctrl_c_while_waiting_for_discord_stops_the_bot_cleanly(
    lab: Homelab, local_discord: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    # Regression: the bot died with ClientConnectorDNSError when Discord's name did not
    # resolve. It must say so in one line and wait; Ctrl-C or SIGTERM (``stop``) during the
    # wait ends it at once, with nothing raised and the client closed.
    caplog.set_level(logging.INFO)
    bot = discord_bot.NebulaBot(
        handlers=lab.handlers,
        live_config=live.LiveConfig(),
        connector=lambda: aiohttp.TCPConnector(resolver=_NoSuchHost()),
    )
    waiting = asyncio.Event()

    async def sleep(delay: float) -> None:
        waiting.set()
        await asyncio.Event().wait()  # a delay that would never end

    stop = asyncio.Event()
    running = asyncio.create_task(_serve(lab, bot, stop=stop, sleep=sleep))
    await until(waiting.is_set, what="the first retry")
    stop.set()
    assert await asyncio.wait_for(running, timeout=10) is None
    assert bot.is_closed()

    [retry] = _retries(caplog)
    assert retry.getMessage().startswith(
        "Discord is unreachable (Cannot connect to host discord.com:443 ssl:default ["
    )
    assert retry.getMessage().endswith("]): retrying in 1 s")
    assert retry.exc_info is None
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
    assert local_discord.calls == []


async def test_a_token_discord_refuses_ends_the_bot_with_one_line_and_no_retry(
    lab: Homelab, fake: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    # A revoked or mistyped token is not an outage: it is said once (exit 1 through the CLI's
    # PermanentError branch) and never retried.
    waited: list[float] = []

    async def sleep(delay: float) -> None:
        waited.append(delay)

    fake.token = "another-token"
    bot = discord_bot.NebulaBot(
        handlers=lab.handlers, live_config=live.LiveConfig(), connector=fake.connector
    )
    with pytest.raises(errors.ConfigurationError) as refused:
        await _serve(lab, bot, stop=asyncio.Event(), sleep=sleep)
    assert str(refused.value) == (
        "Discord refused the bot token: copy it again from the developer portal"
    )
    assert refused.value.__cause__ is None and refused.value.__suppress_context__
    assert waited == [] and bot.is_closed()
    assert fake.unexpected == ["GET /users/@me with the wrong token"]
    fake.unexpected.clear()


async def test_a_dropped_gateway_is_reconnected_with_one_line_and_no_traceback(
    lab: Homelab, fake: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    # discord.py reconnects a dropped gateway by itself, but logs each failed attempt with a
    # whole traceback; the bot's log says it in one line instead, and the session goes on.
    caplog.set_level(logging.INFO)
    async with serving(lab, fake) as (bot, _reloader):
        fake.gateway_down = 1  # the first attempt to reconnect finds the gateway down
        await fake.drop_gateway()
        await until(lambda: any(p.get("op") == 6 for p in fake.gateway), what="the RESUME")
        await until(bot.connected, what="the session resumed")

    [line] = [r for r in caplog.records if r.getMessage().startswith("Discord dropped the")]
    assert line.levelno == logging.WARNING and line.exc_info is None
    assert "\n" not in line.getMessage()
    assert line.getMessage().startswith("Discord dropped the gateway (503, ")
    assert re.search(r"\): reconnecting in [0-9.]+ s$", line.getMessage()), line.getMessage()
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
    assert len(fake.identified) == 1  # resumed, not a new session
