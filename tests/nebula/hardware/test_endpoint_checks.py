"""Docker, Ollama and ComfyUI count as present only when they give their documented reply."""

from __future__ import annotations

import dataclasses
import pathlib
import time

import pytest

from nebula.hardware import endpoints


def test_ollama_answering_its_version_is_present(ollama_address: str) -> None:
    assert endpoints.ollama_answers(f"http://{ollama_address}")


def test_comfyui_answering_its_system_stats_is_present(comfyui_address: str) -> None:
    assert endpoints.comfyui_answers(f"http://{comfyui_address}")


def test_docker_over_tcp_answering_ping_is_present(docker_engine_address: str) -> None:
    assert endpoints.docker_answers(f"tcp://{docker_engine_address}")


def test_docker_on_a_unix_socket_answering_ping_is_present(
    docker_engine_socket: pathlib.Path,
) -> None:
    assert endpoints.docker_answers(f"unix://{docker_engine_socket}")


def test_all_three_are_checked_together_from_the_environment(
    ollama_address: str, comfyui_address: str, docker_engine_address: str
) -> None:
    environ = {"DOCKER_HOST": f"tcp://{docker_engine_address}", "OLLAMA_HOST": ollama_address}
    targets = endpoints.Endpoints.from_environment(environ)
    # ComfyUI has no environment variable of its own: its URL is a parameter.
    targets = dataclasses.replace(targets, comfyui=f"http://{comfyui_address}")

    assert endpoints.check(targets) == {"docker": True, "ollama": True, "comfyui": True}


def test_nothing_listening_means_absent(unused_address: str) -> None:
    targets = endpoints.Endpoints(
        docker=f"tcp://{unused_address}",
        ollama=f"http://{unused_address}",
        comfyui=f"http://{unused_address}",
    )

    assert endpoints.check(targets) == {"docker": False, "ollama": False, "comfyui": False}


def test_another_service_on_the_port_is_not_mistaken_for_the_expected_one(
    ollama_address: str, comfyui_address: str
) -> None:
    # Each stand-in answers only its own path: ComfyUI has no /api/version, Ollama no
    # /system_stats and no /_ping.
    assert not endpoints.ollama_answers(f"http://{comfyui_address}")
    assert not endpoints.comfyui_answers(f"http://{ollama_address}")
    assert not endpoints.docker_answers(f"tcp://{ollama_address}")


def test_a_service_that_never_replies_is_absent_after_the_short_timeout(
    unanswering_address: str,
) -> None:
    targets = endpoints.Endpoints(
        docker=f"tcp://{unanswering_address}",
        ollama=f"http://{unanswering_address}",
        comfyui=f"http://{unanswering_address}",
        timeout=0.2,
    )
    started = time.monotonic()

    answers = endpoints.check(targets)

    assert answers == {"docker": False, "ollama": False, "comfyui": False}
    assert time.monotonic() - started < 1.0  # concurrently: one timeout, not three


def test_docker_hosts_this_probe_cannot_reach_count_as_absent() -> None:
    assert not endpoints.docker_answers("ssh://admin@nas.lan")
    assert not endpoints.docker_answers("unix:///nonexistent/docker.sock")


def test_ollama_host_values_become_the_url_ollamas_client_uses() -> None:
    assert endpoints.ollama_url("0.0.0.0") == "http://127.0.0.1:11434"
    assert endpoints.ollama_url("0.0.0.0:11500") == "http://127.0.0.1:11500"
    assert endpoints.ollama_url("gpu-box.lan") == "http://gpu-box.lan:11434"
    assert endpoints.ollama_url("https://ollama.example.com") == "https://ollama.example.com:443"
    assert endpoints.ollama_url("[::]:11434") == "http://[::1]:11434"


def test_without_environment_the_documented_defaults_are_used() -> None:
    targets = endpoints.Endpoints.from_environment({})

    assert (targets.ollama, targets.comfyui) == ("http://127.0.0.1:11434", "http://127.0.0.1:8188")
    assert targets.docker in ("unix:///var/run/docker.sock", "npipe:////./pipe/docker_engine")
    assert targets.timeout == endpoints.DEFAULT_TIMEOUT


def test_an_ollama_host_with_a_port_that_is_no_number_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="OLLAMA_HOST 'gpu-box:eleven'"):
        endpoints.Endpoints.from_environment({"OLLAMA_HOST": "gpu-box:eleven"})
