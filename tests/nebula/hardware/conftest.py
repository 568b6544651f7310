"""Local stand-ins for the services the probe looks for, and addresses where nothing answers."""

from __future__ import annotations

import pathlib
import socket
import tempfile
from collections.abc import Iterator

import pytest

from tests.nebula.hardware import local_services


@pytest.fixture
def ollama_address() -> Iterator[str]:
    """``127.0.0.1:port`` of a server answering Ollama's ``GET /api/version``."""
    with local_services.serve_tcp(local_services.OLLAMA_VERSION) as address:
        yield address


@pytest.fixture
def comfyui_address() -> Iterator[str]:
    """``127.0.0.1:port`` of a server answering ComfyUI's ``GET /system_stats``."""
    with local_services.serve_tcp(local_services.COMFYUI_SYSTEM_STATS) as address:
        yield address


@pytest.fixture
def docker_engine_address() -> Iterator[str]:
    """``127.0.0.1:port`` of a server answering the Docker Engine API's ``GET /_ping``."""
    with local_services.serve_tcp(local_services.DOCKER_PING) as address:
        yield address


@pytest.fixture
def docker_engine_socket() -> Iterator[pathlib.Path]:
    """A unix socket answering the Docker Engine API's ``GET /_ping``, like /var/run/docker.sock."""
    # Not under tmp_path: a unix socket path must stay under ~108 bytes.
    with tempfile.TemporaryDirectory(prefix="nebula-docker-") as folder:
        path = pathlib.Path(folder) / "docker.sock"
        with local_services.serve_unix(local_services.DOCKER_PING, path) as socket_path:
            yield socket_path


@pytest.fixture
def unused_address() -> str:
    """``127.0.0.1:port`` where nothing listens (a port just freed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"127.0.0.1:{port}"


@pytest.fixture
def unanswering_address() -> Iterator[str]:
    """``127.0.0.1:port`` that accepts connections and never says a word (a hung service)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"127.0.0.1:{listener.getsockname()[1]}"
