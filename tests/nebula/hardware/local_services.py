"""Small local HTTP servers that answer like Docker, Ollama and ComfyUI for the endpoint checks.

Each speaks only the documented reply the probe asks for: the Docker Engine API's
``GET /_ping`` (``OK``, text/plain), Ollama's ``GET /api/version`` (``{"version": ...}``) and
ComfyUI's ``GET /system_stats`` (``{"system": {...}, "devices": [...]}``). They listen on
127.0.0.1 (or a unix socket in the test's folder) and stop when the test ends.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import pathlib
import socketserver
import threading
from collections.abc import Iterator, Mapping

Route = tuple[int, str, bytes]  # status, content type, body

DOCKER_PING: Mapping[str, Route] = {"/_ping": (200, "text/plain; charset=utf-8", b"OK")}
OLLAMA_VERSION: Mapping[str, Route] = {
    "/api/version": (200, "application/json; charset=utf-8", b'{"version":"0.6.3"}')
}
COMFYUI_SYSTEM_STATS: Mapping[str, Route] = {
    "/system_stats": (
        200,
        "application/json; charset=utf-8",
        json.dumps(
            {
                "system": {
                    "os": "posix",
                    "ram_total": 67108864000,
                    "ram_free": 51539607552,
                    "comfyui_version": "0.3.27",
                    "python_version": "3.12.9 (main, Feb 12 2025, 14:50:50) [GCC 12.2.0]",
                    "pytorch_version": "2.6.0+cu124",
                    "embedded_python": False,
                    "argv": ["main.py", "--listen"],
                },
                "devices": [
                    {
                        "name": "cuda:0 NVIDIA GeForce RTX 3090 : cudaMallocAsync",
                        "type": "cuda",
                        "index": 0,
                        "vram_total": 25438126080,
                        "vram_free": 24110956544,
                        "torch_vram_total": 0,
                        "torch_vram_free": 0,
                    }
                ],
            }
        ).encode(),
    )
}


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: Mapping[str, Route] = {}

    def do_GET(self) -> None:
        status, content_type, body = self.routes.get(self.path, (404, "text/plain", b"not found"))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # the test output stays readable


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def _handler(routes: Mapping[str, Route]) -> type[_Handler]:
    return type("Handler", (_Handler,), {"routes": dict(routes)})


@contextlib.contextmanager
def _running(server: socketserver.BaseServer) -> Iterator[None]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextlib.contextmanager
def serve_tcp(routes: Mapping[str, Route]) -> Iterator[str]:
    """An HTTP server on a free 127.0.0.1 port answering ``routes``; yields ``127.0.0.1:port``."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(routes))
    with _running(server):
        yield f"127.0.0.1:{server.server_address[1]}"


@contextlib.contextmanager
def serve_unix(routes: Mapping[str, Route], path: pathlib.Path) -> Iterator[pathlib.Path]:
    """An HTTP server on the unix socket ``path`` answering ``routes``; yields the path."""
    server = _UnixHTTPServer(str(path), _handler(routes))
    with _running(server):
        yield path
