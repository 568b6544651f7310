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
updates (op 3) recorded, RESUME (op 6) answered with RESUMED; ``compress=zlib-stream`` is
honoured. :meth:`FakeDiscord.interact` sends an INTERACTION_CREATE as Discord does when
someone runs a slash command, and every answer to it (the interaction callback, follow-ups,
edits and deletes of the original response, which take no bot token) is kept in
:attr:`FakeDiscord.answers`. The REST side answers the routes the bot uses and records every
call; anything else (an unknown route, opcode or a wrong token) is logged at ERROR and kept in
:attr:`FakeDiscord.unexpected`, which the tests require to be empty.

Its ports are taken when it is made, and refuse connections until :meth:`FakeDiscord.start`:
a bot given its :meth:`FakeDiscord.connector` before that finds Discord unreachable.
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

__all__ = ["AVATAR_PNG", "EPHEMERAL", "Call", "FakeDiscord", "FakeGuild", "Interaction", "until"]

log = logging.getLogger("tests.fake_discord")

API = "/api/v10"
HOSTS = ("discord.com", "gateway.discord.gg")
_DISCORD_EPOCH_MS = 1420070400000
EPHEMERAL = 64
"""The message flag of an answer only its caller sees."""
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


@dataclasses.dataclass(frozen=True)
class Interaction:
    """A slash command someone ran (:meth:`FakeDiscord.interact`): its id and token."""

    id: str
    token: str


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
        self.gateway_down = 0
        """How many of the next gateway connections are refused (503: an outage)."""
        self.answers: list[Call] = []
        """Every answer to an interaction (callbacks, follow-ups, their edits), in order."""
        self.commands: dict[str, dict[str, str]] = {}
        """The registered commands' ids: guild ('' for global) -> name -> id."""
        self._interactions: dict[str, tuple[str, str]] = {}  # token -> guild, channel
        self._sequence = 0
        self._send: Callable[..., Any] | None = None  # into the latest gateway session
        self._sessions: list[web.WebSocketResponse] = []
        self._app = web.Application()
        self._app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner: web.AppRunner | None = None
        self._certificate: tuple[pathlib.Path, pathlib.Path] | None = None
        # Bound now, listening once started: until then a connection is refused.
        self._tls, self._plain = _free_socket(), _free_socket()
        self.port: int = self._tls.getsockname()[1]
        self.cdn_port: int = self._plain.getsockname()[1]

    # -- running ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Listens on its two ports of 127.0.0.1: TLS (Discord) and plain HTTP (the CDN)."""
        cert, key = self._certificates()
        server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ssl.load_cert_chain(cert, key)
        self._runner = web.AppRunner(self._app, handle_signals=False, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, self._tls, ssl_context=server_ssl).start()
        await web.SockSite(self._runner, self._plain).start()

    async def close(self) -> None:
        """Stops listening and closes what is still connected."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._tls.close()
        self._plain.close()

    def connector(self) -> aiohttp.TCPConnector:
        """A connection to this fake (and only it), as ``discord.Client(connector=...)`` takes
        one; usable before :meth:`start` (the port then refuses)."""
        client_ssl = ssl.create_default_context(cafile=str(self._certificates()[0]))
        return aiohttp.TCPConnector(
            limit=0, ssl=client_ssl, resolver=_Resolver(self.port, self.unexpected)
        )

    def _certificates(self) -> tuple[pathlib.Path, pathlib.Path]:
        if self._certificate is None:
            self._certificate = make_certificate(self.folder)
        return self._certificate

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

    def answers_to(self, interaction: Interaction) -> list[Call]:
        """The answers to one interaction, in order: its callback, then follow-ups and edits."""
        paths = (f"/interactions/{interaction.id}/", f"/webhooks/{self.application_id}/"
                 f"{interaction.token}")  # fmt: skip
        return [c for c in self.answers if c.path.startswith(paths)]

    async def interact(
        self,
        *,
        guild: str,
        channel: str,
        user: tuple[str, str],
        roles: list[str],
        command: str,
        **options: str | int,
    ) -> Interaction:
        """Runs a slash command as ``user`` (id, name) holding ``roles`` (ids) would: an
        INTERACTION_CREATE on the gateway. ``command`` is its path below ``/nebula``
        (``"service image"``), ``options`` its arguments."""
        assert self._send is not None, "no gateway session to send the interaction on"
        interaction = Interaction(_snowflake(), f"interaction-token-{next(_ids)}")
        self._interactions[interaction.token] = (guild, channel)
        *groups, name = command.split()
        values = [
            {"name": key, "type": 4 if isinstance(value, int) else 3, "value": value}
            for key, value in options.items()
        ]
        tree: list[dict[str, Any]] = [{"name": name, "type": 1, "options": values}]
        for group in reversed(groups):
            tree = [{"name": group, "type": 2, "options": tree}]
        user_id, username = user
        member = {
            **self._member(guild),
            "user": {"id": user_id, "username": username, "discriminator": "0",
                     "global_name": None, "avatar": None},
            "roles": roles,
            "permissions": "0",
        }  # fmt: skip
        found = self.guilds[guild]
        payload = {
            "id": interaction.id,
            "application_id": self.application_id,
            "type": 2,  # APPLICATION_COMMAND
            "token": interaction.token,
            "version": 1,
            "guild_id": guild,
            "channel_id": channel,
            "channel": self._channel_payload(found, channel),
            "member": member,
            "app_permissions": "0",
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": guild},
            "context": 0,  # GUILD
            "attachment_size_limit": 8 * 1024 * 1024,
            "data": {
                "id": self.commands.get(guild, {}).get("nebula", _snowflake()),
                "name": "nebula",
                "type": 1,  # CHAT_INPUT
                "guild_id": guild,
                "options": tree,
            },
        }
        await self._send(0, payload, "INTERACTION_CREATE")
        return interaction

    async def drop_gateway(self) -> None:
        """Closes the gateway sessions, as Discord does now and then (code 1000)."""
        for session in self._sessions:
            await session.close(code=1000)

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
            path = request.path[len(API) :]
            if path.startswith(("/interactions/", "/webhooks/")):
                return await self._answer(request, path)
            return await self._rest(request, path)
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
            self.commands.setdefault(guild or "", {})[command["name"]] = registered["id"]
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
        return _json(self._message(guild.id, channel, body))

    def _message(self, guild: str, channel: str, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": _snowflake(),
            "type": 0,
            "channel_id": channel,
            "guild_id": guild,
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
            "flags": body.get("flags") or 0,
            "components": [],
        }

    # -- answers to interactions -------------------------------------------------------------------

    async def _answer(self, request: web.Request, path: str) -> web.Response:
        """An interaction's callback, follow-ups and original response (no bot token: the
        interaction's own token is in the path)."""
        body = await request.json() if request.can_read_body else None
        method = request.method
        app = self.application_id
        callback = re.fullmatch(r"/interactions/(?P<id>\d+)/(?P<token>[^/]+)/callback", path)
        webhook = re.fullmatch(
            rf"/webhooks/{app}/(?P<token>[^/]+)(?P<original>/messages/@original)?", path
        )
        found = callback or webhook
        if found is None or found["token"] not in self._interactions:
            self._wrong(f"{method} {path}: no such interaction")
            return _json({"message": "Unknown interaction", "code": 10062}, status=404)
        guild, channel = self._interactions[found["token"]]
        original = webhook is not None and webhook["original"] is not None
        if callback is not None and method == "POST":
            self.answers.append(Call(method, path, body))
            return self._callback(callback["id"], guild, channel, body)
        if (
            webhook is not None
            and method in ("POST", "PATCH", "DELETE")
            and (original or method == "POST")
        ):
            self.answers.append(Call(method, path, body))
            if method == "DELETE":
                return web.Response(status=204)
            return _json(self._message(guild, channel, body))
        self._wrong(f"{method} {path}")
        return _json({"message": "405: Method Not Allowed", "code": 0}, status=405)

    def _callback(self, id_: str, guild: str, channel: str, body: Any) -> web.Response:
        """The first answer (``with_response``): a message (type 4) or "thinking" (type 5)."""
        kind = body["type"]
        flags = (body.get("data") or {}).get("flags") or 0
        message = self._message(guild, channel, {**(body.get("data") or {}), "flags": flags})
        resource: dict[str, Any] = {"type": kind}
        if kind == 4:  # CHANNEL_MESSAGE_WITH_SOURCE
            resource["message"] = message
        return _json(
            {
                "interaction": {
                    "id": id_,
                    "type": 2,
                    "response_message_id": message["id"],
                    "response_message_loading": kind == 5,
                    "response_message_ephemeral": bool(flags & EPHEMERAL),
                },
                "resource": resource,
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
        if self.gateway_down > 0:
            self.gateway_down -= 1
            return web.Response(status=503, text="upstream connect error")
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

        self._send = send
        self._sessions.append(socket_)
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
            elif op == 6:  # RESUME: the session goes on where it was
                await send(0, {}, "RESUMED")
            else:
                self._wrong(f"gateway opcode {op}: {payload}")
        self._sessions.remove(socket_)
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
