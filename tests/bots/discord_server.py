"""A small local Discord for the bot's tests: the v10 JSON gateway and the REST routes it calls.

:class:`FakeDiscord` is an aiohttp server on 127.0.0.1 (a free port chosen at start) with a
self-signed certificate (made with ``openssl``) for ``discord.com`` and
``gateway.discord.gg``: discord.py's fixed URLs (``https://discord.com/api/v10`` and
``wss://gateway.discord.gg``) reach it through :meth:`FakeDiscord.connector`, an aiohttp
connector whose resolver maps those two names to the server and whose SSL context trusts only
that certificate. That connector is what ``discord.Client(connector=...)`` takes: nothing of
discord.py is patched. A second, plain-HTTP site serves the images an avatar URL points at.

The gateway speaks what Discord documents: HELLO (op 10), IDENTIFY (op 2) answered with READY
and one GUILD_CREATE per guild (op 0), heartbeats (op 1) acknowledged (op 11), presence
updates (op 3) recorded; ``compress=zlib-stream`` is honoured. The REST side answers the
routes the bot uses and records every call; anything else (an unknown route, opcode or a
wrong token) is logged at ERROR and kept in :attr:`FakeDiscord.unexpected`, which the tests
require to be empty.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import itertools
import json
import logging
import pathlib
import re
import socket
import ssl
import struct
import subprocess
import time
import zlib
from collections.abc import Callable
from typing import Any

import aiohttp
import aiohttp.abc
from aiohttp import web

__all__ = ["AVATAR_PNG", "Call", "FakeDiscord", "FakeGuild", "until"]

log = logging.getLogger("tests.fake_discord")

API = "/api/v10"
HOSTS = ("discord.com", "gateway.discord.gg")
_DISCORD_EPOCH_MS = 1420070400000
_ids = itertools.count(1)


def _snowflake() -> str:
    """A fresh snowflake: Discord's millisecond clock in the high bits, a counter below."""
    return str(((int(time.time() * 1000) - _DISCORD_EPOCH_MS) << 22) | (next(_ids) & 0x3FFFFF))


def _png() -> bytes:
    """A valid 1x1 PNG (discord.py checks the signature before uploading an avatar)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)  # 1x1, 8-bit RGBA
    pixels = zlib.compress(b"\x00\x7f\x00\xff\xff")  # filter byte, one pixel
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


AVATAR_PNG = _png()
"""The image the fake CDN serves at ``/nebula/avatar.png``."""


@dataclasses.dataclass(frozen=True)
class FakeGuild:
    """A guild the bot is in: its roles (name -> id) and text channels (id -> name)."""

    id: str
    name: str
    roles: dict[str, str]
    channels: dict[str, str]


@dataclasses.dataclass(frozen=True)
class Call:
    """One REST request as the fake received it."""

    method: str
    path: str  # without the /api/v10 prefix
    body: Any  # the JSON body, None without one


async def until(check: Callable[[], bool], *, timeout: float = 10.0, what: str = "") -> None:
    """Waits until ``check()`` holds; fails the test after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.02)


def _json(data: Any, status: int = 200) -> web.Response:
    """JSON as Discord sends it: ``Content-Type: application/json`` exactly (no charset),
    which is what discord.py looks for before it parses a body."""
    return web.Response(
        body=json.dumps(data).encode(), status=status, content_type="application/json"
    )


class _Resolver(aiohttp.abc.AbstractResolver):
    """Resolves Discord's two names to the fake; refuses every other name (no network)."""

    def __init__(self, port: int, unexpected: list[str]) -> None:
        self._port = port
        self._unexpected = unexpected

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[aiohttp.abc.ResolveResult]:
        if host not in HOSTS:
            self._unexpected.append(f"resolve {host}")
            log.error("the bot looked up %s, which the fake Discord does not serve", host)
            raise OSError(f"{host} is not served by the fake Discord")
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": self._port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
        ]

    async def close(self) -> None:
        pass


def _free_socket() -> socket.socket:
    listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listening.bind(("127.0.0.1", 0))
    return listening


def make_certificate(folder: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """A self-signed certificate (and its key) for discord.com and gateway.discord.gg."""
    cert, key = folder / "discord.pem", folder / "discord.key"
    names = ",".join(f"DNS:{host}" for host in HOSTS)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
         "-subj", "/CN=fake-discord", "-addext", f"subjectAltName={names}"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


class FakeDiscord:
    """The local Discord; see the module docstring. Start with :meth:`start`, end with
    :meth:`close` (after the bot closed)."""

    def __init__(
        self,
        *,
        folder: pathlib.Path,
        token: str,
        application_id: str,
        guilds: list[FakeGuild],
        bot_name: str = "nebula",
    ) -> None:
        self.folder = folder
        self.token = token
        self.application_id = application_id
        self.guilds = {guild.id: guild for guild in guilds}
        self.user: dict[str, Any] = {
            "id": application_id,  # a bot's user id is its application's id
            "username": bot_name,
            "discriminator": "0",
            "global_name": None,
            "avatar": None,
            "bot": True,
            "verified": True,
            "mfa_enabled": False,
            "flags": 0,
            "public_flags": 0,
        }
        self.members = {guild.id: self._member(guild.id) for guild in guilds}
        self.calls: list[Call] = []
        """Every REST call (known routes), in order."""
        self.gateway: list[dict[str, Any]] = []
        """Every gateway payload the bot sent, in order (heartbeats included)."""
        self.identified: list[dict[str, Any]] = []
        """The IDENTIFY payloads (``d``)."""
        self.connections: list[str] = []
        """The query string of each gateway connection."""
        self.unexpected: list[str] = []
        """What the fake could not answer: must stay empty."""
        self.cdn_hits = 0
        self.refused_commands: set[str] = set()
        """Guilds where registering commands fails (403: invited without that scope)."""
        self._sequence = 0
        self._app = web.Application()
        self._app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner: web.AppRunner | None = None
        self._client_ssl: ssl.SSLContext | None = None
        self.port = 0
        self.cdn_port = 0

    # -- running ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Listens on two free ports of 127.0.0.1: TLS (Discord) and plain HTTP (the CDN)."""
        cert, key = make_certificate(self.folder)
        server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ssl.load_cert_chain(cert, key)
        self._client_ssl = ssl.create_default_context(cafile=str(cert))
        self._runner = web.AppRunner(self._app, handle_signals=False, access_log=None)
        await self._runner.setup()
        tls, plain = _free_socket(), _free_socket()
        self.port, self.cdn_port = tls.getsockname()[1], plain.getsockname()[1]
        await web.SockSite(self._runner, tls, ssl_context=server_ssl).start()
        await web.SockSite(self._runner, plain).start()

    async def close(self) -> None:
        """Stops listening and closes what is still connected."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def connector(self) -> aiohttp.TCPConnector:
        """What ``discord.Client(connector=...)`` takes to talk to this fake (and only it)."""
        assert self._client_ssl is not None, "start the fake first"
        return aiohttp.TCPConnector(
            limit=0, ssl=self._client_ssl, resolver=_Resolver(self.port, self.unexpected)
        )

    def cdn_url(self, path: str) -> str:
        """A plain-HTTP URL of the fake CDN (an avatarUrl the bot downloads with httpx)."""
        return f"http://127.0.0.1:{self.cdn_port}/{path.lstrip('/')}"

    # -- what the tests look at ----------------------------------------------------------------

    def sent(self, method: str, pattern: str) -> list[Call]:
        """The calls of a method whose path matches ``pattern`` (a regex, fully)."""
        found = re.compile(pattern)
        return [c for c in self.calls if c.method == method and found.fullmatch(c.path)]

    def presences(self) -> list[dict[str, Any]]:
        """The presence updates (op 3) the bot sent, their ``d``."""
        return [p["d"] for p in self.gateway if p.get("op") == 3]

    def messages(self, channel: str) -> list[dict[str, Any]]:
        """The messages posted in a channel, their JSON bodies."""
        return [c.body for c in self.sent("POST", f"/channels/{channel}/messages")]

    def activity(self) -> int:
        """How much the bot has sent (REST calls and gateway payloads but heartbeats)."""
        beats = sum(1 for p in self.gateway if p.get("op") == 1)
        return len(self.calls) + len(self.gateway) - beats

    def _wrong(self, what: str) -> None:
        self.unexpected.append(what)
        log.error("the fake Discord cannot answer: %s", what)

    # -- routing -------------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        host = request.host.split(":")[0]
        if request.path == "/nebula/avatar.png" and request.method == "GET":
            self.cdn_hits += 1
            return web.Response(body=AVATAR_PNG, content_type="image/png")
        if host == "gateway.discord.gg" and request.path == "/" and request.method == "GET":
            return await self._gateway(request)
        if host == "discord.com" and request.path.startswith(API + "/"):
            return await self._rest(request, request.path[len(API) :])
        self._wrong(f"{request.method} {request.host}{request.path_qs}")
        return _json({"message": "404: Not Found", "code": 0}, status=404)

    # -- REST --------------------------------------------------------------------------------------

    async def _rest(self, request: web.Request, path: str) -> web.Response:
        if request.headers.get("Authorization") != f"Bot {self.token}":
            self._wrong(f"{request.method} {path} with the wrong token")
            return _json({"message": "401: Unauthorized", "code": 0}, status=401)
        body = await request.json() if request.can_read_body else None
        method = request.method
        app = self.application_id
        routes: list[tuple[str, str, Callable[..., web.Response]]] = [
            ("GET", r"/users/@me", self._me),
            ("GET", r"/oauth2/applications/@me", self._application),
            ("GET", r"/gateway", self._gateway_url),
            ("GET", r"/gateway/bot", self._gateway_url),
            ("PUT", rf"/applications/{app}/guilds/(?P<guild>\d+)/commands", self._commands),
            ("PUT", rf"/applications/{app}/commands", self._commands),
            ("PATCH", r"/guilds/(?P<guild>\d+)/members/@me", self._edit_me),
            ("POST", r"/channels/(?P<channel>\d+)/messages", self._post),
            ("GET", r"/channels/(?P<channel>\d+)", self._channel),
        ]
        for wanted, pattern, answer in routes:
            match = re.fullmatch(pattern, path)
            if match and method == wanted:
                self.calls.append(Call(method, path, body))
                return answer(body=body, **match.groupdict())
        self._wrong(f"{method} {path}")
        return _json({"message": "404: Not Found", "code": 0}, status=404)

    def _me(self, body: Any) -> web.Response:
        return _json(self.user)

    def _application(self, body: Any) -> web.Response:
        return _json(
            {
                "id": self.application_id,
                "name": self.user["username"],
                "icon": None,
                "description": "",
                "rpc_origins": [],
                "bot_public": False,
                "bot_require_code_grant": False,
                "owner": {**self.user, "id": "100000000000000001", "username": "ada", "bot": False},
                "team": None,
                "verify_key": "0" * 64,
                "flags": 0,
                "interactions_endpoint_url": None,
            }
        )

    def _gateway_url(self, body: Any) -> web.Response:
        return _json(
            {
                "url": "wss://gateway.discord.gg",
                "shards": 1,
                "session_start_limit": {
                    "total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1
                },
            }
        )  # fmt: skip

    def _commands(self, body: Any, guild: str | None = None) -> web.Response:
        if guild is not None and (guild not in self.guilds or guild in self.refused_commands):
            return _json({"message": "Missing Access", "code": 50001}, status=403)
        assert isinstance(body, list)
        answered = []
        for command in body:
            registered = {
                "id": _snowflake(),
                "application_id": self.application_id,
                "version": _snowflake(),
                "type": 1,
                **command,
            }
            if guild is not None:
                registered["guild_id"] = guild
            answered.append(registered)
        return _json(answered)

    def _member(self, guild: str, **changed: Any) -> dict[str, Any]:
        return {
            "user": self.user,
            "nick": None,
            "avatar": None,
            "roles": [],
            "joined_at": "2026-01-01T00:00:00+00:00",
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": 0,
            **changed,
        }

    def _edit_me(self, body: Any, guild: str) -> web.Response:
        if guild not in self.guilds:
            return _json({"message": "Unknown Guild", "code": 10004}, status=404)
        member = self.members[guild]
        if "nick" in body:
            member["nick"] = body["nick"] or None
        if "avatar" in body:
            member["avatar"] = (
                None if body["avatar"] is None else f"{zlib.crc32(body['avatar'].encode()):x}"
            )
        return _json(member)

    def _guild_of(self, channel: str) -> FakeGuild | None:
        return next((g for g in self.guilds.values() if channel in g.channels), None)

    def _channel_payload(self, guild: FakeGuild, channel: str) -> dict[str, Any]:
        return {
            "id": channel,
            "type": 0,  # GUILD_TEXT
            "guild_id": guild.id,
            "name": guild.channels[channel],
            "position": list(guild.channels).index(channel),
            "permission_overwrites": [],
            "parent_id": None,
            "topic": None,
            "nsfw": False,
            "rate_limit_per_user": 0,
            "last_message_id": None,
        }

    def _channel(self, body: Any, channel: str) -> web.Response:
        guild = self._guild_of(channel)
        if guild is None:
            return _json({"message": "Unknown Channel", "code": 10003}, status=404)
        return _json(self._channel_payload(guild, channel))

    def _post(self, body: Any, channel: str) -> web.Response:
        guild = self._guild_of(channel)
        if guild is None:
            return _json({"message": "Unknown Channel", "code": 10003}, status=404)
        return _json(
            {
                "id": _snowflake(),
                "type": 0,
                "channel_id": channel,
                "guild_id": guild.id,
                "author": self.user,
                "content": body.get("content") or "",
                "timestamp": datetime.datetime.now(datetime.UTC).isoformat(),
                "edited_timestamp": None,
                "tts": bool(body.get("tts")),
                "mention_everyone": False,
                "mentions": [],
                "mention_roles": [],
                "attachments": [],
                "embeds": body.get("embeds") or [],
                "pinned": False,
                "flags": 0,
                "components": [],
            }
        )

    # -- the gateway -------------------------------------------------------------------------------

    def _guild_create(self, guild: FakeGuild) -> dict[str, Any]:
        roles = [
            {"id": role_id, "name": name, "permissions": "0", "position": position,
             "color": 0, "colors": {"primary_color": 0}, "hoist": False, "managed": False,
             "mentionable": True, "flags": 0}
            for position, (name, role_id) in enumerate(guild.roles.items())
        ]  # fmt: skip
        return {
            "id": guild.id,
            "name": guild.name,
            "unavailable": False,
            "icon": None,
            "owner_id": "100000000000000001",
            "joined_at": "2026-01-01T00:00:00+00:00",
            "large": False,
            "member_count": 3,
            "features": [],
            "preferred_locale": "en-US",
            "roles": roles,
            "channels": [self._channel_payload(guild, c) for c in guild.channels],
            "members": [self.members[guild.id]],  # the bot's own member, as Discord sends it
            "threads": [],
            "voice_states": [],
            "presences": [],
            "emojis": [],
            "stickers": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("v") != "10" or request.query.get("encoding") != "json":
            self._wrong(f"gateway connection {request.query_string}")
            return web.Response(status=400)
        self.connections.append(request.query_string)
        socket_ = web.WebSocketResponse()
        await socket_.prepare(request)
        compressor = zlib.compressobj() if request.query.get("compress") == "zlib-stream" else None

        async def send(op: int, data: Any, event: str | None = None) -> None:
            payload: dict[str, Any] = {"op": op, "d": data, "s": None, "t": event}
            if op == 0:
                self._sequence += 1
                payload["s"] = self._sequence
            text = json.dumps(payload)
            if compressor is None:
                await socket_.send_str(text)
            else:  # one zlib stream per connection, each message flushed (ends 00 00 ff ff)
                framed = compressor.compress(text.encode()) + compressor.flush(zlib.Z_SYNC_FLUSH)
                await socket_.send_bytes(framed)

        await send(10, {"heartbeat_interval": 41250})
        async for message in socket_:
            if message.type != aiohttp.WSMsgType.TEXT:
                self._wrong(f"gateway message of type {message.type!r}")
                continue
            payload = json.loads(message.data)
            self.gateway.append(payload)
            op = payload.get("op")
            if op == 1:
                await send(11, None)
            elif op == 2:
                await self._identify(payload["d"], send)
            elif op == 3:
                pass  # recorded: the tests look at it
            else:
                self._wrong(f"gateway opcode {op}: {payload}")
        return socket_

    async def _identify(self, data: dict[str, Any], send: Callable[..., Any]) -> None:
        self.identified.append(data)
        if data.get("token") != self.token:
            self._wrong("IDENTIFY with the wrong token")
            return
        ready = {
            "v": 10,
            "user": self.user,
            "guilds": [{"id": g, "unavailable": True} for g in self.guilds],
            "session_id": "fake-session",
            "resume_gateway_url": "wss://gateway.discord.gg",
            "application": {"id": self.application_id, "flags": 0},
            "private_channels": [],
            "relationships": [],
        }
        await send(0, ready, "READY")
        for guild in self.guilds.values():
            await send(0, self._guild_create(guild), "GUILD_CREATE")
