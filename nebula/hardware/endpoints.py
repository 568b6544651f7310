"""Whether Docker, Ollama and ComfyUI answer on this machine, each asked once and briefly.

Called by ``probing``. Each check is one cheap read-only request with a short timeout, and the
three run at the same time, so a heartbeat waits for the slowest timeout, not their sum:

- Docker: the Engine API's ``GET /_ping`` must answer ``OK``, on ``DOCKER_HOST`` (``unix://``,
  ``tcp://`` or, on Windows, ``npipe://``) or the platform's default socket or pipe;
- Ollama: ``GET /api/version`` must answer JSON with a ``version``, on ``OLLAMA_HOST`` or
  ``127.0.0.1:11434`` (Ollama's own defaults and parsing rules);
- ComfyUI: ``GET /system_stats`` must answer JSON with a ``system`` object, on port 8188.

Ollama, ComfyUI and Docker over TCP are asked through httpx; Docker on a unix socket or a
Windows named pipe with one raw HTTP/1.0 request (httpx has no pipe transport). A service that
does not answer, or answers something else, counts as absent: never an error.
Not supported (they count as absent): ``ssh://`` and TLS-protected Docker hosts, and Docker
contexts. This module sends nothing but those three GETs and never starts or stops a service.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import socket
import sys
import urllib.parse
from collections.abc import Callable, Mapping

import httpx

__all__ = [
    "DEFAULT_TIMEOUT",
    "SERVICES",
    "Endpoints",
    "check",
    "comfyui_answers",
    "docker_answers",
    "ollama_answers",
    "ollama_url",
]

DEFAULT_TIMEOUT = 0.3
"""Seconds each check may take; a local service answers in a few milliseconds."""

SERVICES = ("docker", "ollama", "comfyui")
"""The services ``check`` reports on, in its order."""

_DOCKER_DEFAULT = (
    "npipe:////./pipe/docker_engine" if sys.platform == "win32" else "unix:///var/run/docker.sock"
)


def ollama_url(value: str) -> str:
    """The base URL Ollama's own client derives from an ``OLLAMA_HOST`` value.

    ``0.0.0.0:11434`` (a listen address) becomes ``http://127.0.0.1:11434``; a bare host gets
    port 11434 (443 for https); no scheme means http. Raises ValueError for a value no client
    could use (a port that is not a number), naming it.
    """
    value = value.strip() or "127.0.0.1"
    scheme, has_scheme, rest = value.partition("://")
    if not has_scheme:
        scheme, rest = "http", value
    parsed = urllib.parse.urlsplit(f"{scheme}://{rest}")
    host = parsed.hostname or "127.0.0.1"
    if host in ("0.0.0.0", "::"):  # listening everywhere: ask on loopback
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    try:
        port = parsed.port or (443 if scheme == "https" else 11434)
    # urllib refuses a port that is not a number (or out of range): the setting is wrong.
    except ValueError as error:
        raise ValueError(f"OLLAMA_HOST {value!r} is not a host and port ({error})") from None
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"{scheme}://{netloc}{parsed.path.rstrip('/')}"


@dataclasses.dataclass(frozen=True)
class Endpoints:
    """Where to look for each service, and how long each check may take."""

    docker: str = _DOCKER_DEFAULT
    """Docker Engine address in DOCKER_HOST form: unix:///path, tcp://host:port, npipe://..."""
    ollama: str = "http://127.0.0.1:11434"
    """Ollama's base URL."""
    comfyui: str = "http://127.0.0.1:8188"
    """ComfyUI's base URL."""
    timeout: float = DEFAULT_TIMEOUT
    """Seconds each check may take."""

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Endpoints:
        """The defaults, overridden by ``DOCKER_HOST`` and ``OLLAMA_HOST`` when they are set.

        Raises ValueError when OLLAMA_HOST holds no usable address.
        """
        environ = os.environ if environ is None else environ
        return cls(
            docker=environ.get("DOCKER_HOST") or _DOCKER_DEFAULT,
            ollama=ollama_url(environ["OLLAMA_HOST"]) if environ.get("OLLAMA_HOST") else cls.ollama,
        )


def _client(base_url: str, *, timeout: float) -> httpx.Client:
    # Plain http needs no CA bundle; loading one costs more than the whole check.
    verify = not base_url.startswith("http://")
    transport = httpx.HTTPTransport(verify=verify, retries=0)
    return httpx.Client(base_url=base_url, timeout=timeout, transport=transport, trust_env=False)


def _get(base_url: str, path: str, *, timeout: float) -> httpx.Response:
    with _client(base_url, timeout=timeout) as client:
        return client.get(path)


_PING = b"GET /_ping HTTP/1.0\r\nHost: localhost\r\n\r\n"


def _is_ok(reply: bytes) -> bool:
    """Whether a raw HTTP reply is the Engine's ``200`` with body ``OK``."""
    status, _, body = reply.partition(b"\r\n\r\n")
    return status.split(b" ")[1:2] == [b"200"] and body.strip() == b"OK"


def _unix_ping(path: str, timeout: float) -> bool:
    # One HTTP/1.0 GET on our own socket: httpx's unix transport leaves the socket open when
    # the connection is refused, and this check meets refused sockets all the time.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(_PING)
        reply = b""
        while len(reply) < 65536 and (chunk := sock.recv(4096)):
            reply += chunk
    return _is_ok(reply)


def _npipe_ping(path: str) -> bool:
    # Windows named pipe: httpx has no transport for it, and one HTTP/1.0 GET needs none.
    with open(path, "r+b", buffering=0) as pipe:
        pipe.write(_PING)
        reply = b""
        while len(reply) < 65536 and (chunk := pipe.read(4096)):
            reply += chunk
    return _is_ok(reply)


def docker_answers(host: str, *, timeout: float = DEFAULT_TIMEOUT) -> bool:
    """Whether the Docker Engine at ``host`` (DOCKER_HOST form) answers ``/_ping`` with OK.

    On a named pipe (Windows) the wait is bounded by ``check``, not here.
    """
    scheme, _, rest = host.partition("://")
    try:
        if scheme == "unix" and hasattr(socket, "AF_UNIX"):
            return _unix_ping(rest, timeout)
        if scheme == "npipe":
            return _npipe_ping(rest.replace("/", "\\"))
        if scheme != "tcp":
            return False
        response = _get(f"http://{rest.rstrip('/')}", "/_ping", timeout=timeout)
    # Refused, timed out, no such socket or pipe, malformed reply: no Docker Engine here.
    except (httpx.HTTPError, OSError, ValueError):
        return False
    return response.status_code == 200 and response.text.strip() == "OK"


def _json_get(url: str, path: str, *, timeout: float) -> object:
    response = _get(url.rstrip("/"), path, timeout=timeout)
    if response.status_code != 200:
        return None
    return response.json()


def ollama_answers(url: str, *, timeout: float = DEFAULT_TIMEOUT) -> bool:
    """Whether Ollama at ``url`` answers ``/api/version`` with its version."""
    try:
        reply = _json_get(url, "/api/version", timeout=timeout)
    # Refused, timed out, or not JSON: whatever listens there is not Ollama.
    except (httpx.HTTPError, OSError, ValueError):
        return False
    return isinstance(reply, dict) and isinstance(reply.get("version"), str)


def comfyui_answers(url: str, *, timeout: float = DEFAULT_TIMEOUT) -> bool:
    """Whether ComfyUI at ``url`` answers ``/system_stats`` with its system section."""
    try:
        reply = _json_get(url, "/system_stats", timeout=timeout)
    # Refused, timed out, or not JSON: whatever listens there is not ComfyUI.
    except (httpx.HTTPError, OSError, ValueError):
        return False
    return isinstance(reply, dict) and isinstance(reply.get("system"), dict)


def check(endpoints: Endpoints) -> dict[str, bool]:
    """``{"docker": ..., "ollama": ..., "comfyui": ...}``, the three asked at the same time.

    Returns within about twice ``endpoints.timeout``; a check still running then (a stuck
    named pipe) counts as absent and is left to finish on its own.
    """
    checks: dict[str, Callable[[], bool]] = {
        "docker": lambda: docker_answers(endpoints.docker, timeout=endpoints.timeout),
        "ollama": lambda: ollama_answers(endpoints.ollama, timeout=endpoints.timeout),
        "comfyui": lambda: comfyui_answers(endpoints.comfyui, timeout=endpoints.timeout),
    }
    pool = concurrent.futures.ThreadPoolExecutor(len(checks), thread_name_prefix="endpoint")
    try:
        futures = {name: pool.submit(run) for name, run in checks.items()}
        done, _ = concurrent.futures.wait(futures.values(), timeout=2 * endpoints.timeout + 0.1)
        return {name: future in done and future.result() for name, future in futures.items()}
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
