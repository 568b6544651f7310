"""The Discord and Twitch bots: they turn chat commands into change requests and read state.

A runtime: it connects chat platforms to the change-request core and the store, and holds no
business rule of its own. What the bots say and decide is plain code, importable without a
chat framework:

- :mod:`bots.commands`: the ``/nebula`` commands as functions of (caller, arguments) → reply;
- :mod:`bots.notifications`: what is posted when a change moves, and the LISTEN that finds out;
- :mod:`bots.live` and :mod:`bots.reloading`: the BotConfig applied live, and reported back;
- :mod:`bots.overview` and :mod:`bots.stream`: the homelab's state, go-live posts, ``!status``.

The glue imports discord.py (:mod:`bots.discord_bot`) or twitchio (:mod:`bots.twitch_bot`) and
is imported only by what runs a bot (``nebula bot``, :mod:`bots.cli`) and by the tests.
"""

from bots import commands, live, notifications, overview, reloading, stream

__all__ = ["commands", "live", "notifications", "overview", "reloading", "stream"]
