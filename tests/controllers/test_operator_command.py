"""``nebula operator``: the options it takes and what it refuses before touching a cluster."""

from __future__ import annotations

import argparse

import httpx
import pytest

from controllers import handlers
from tests.controllers.conftest import Operator


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="nebula operator")
    handlers.OPERATOR.configure(parser)
    return parser.parse_args(argv)


def test_the_operator_watches_every_namespace_unless_told_otherwise() -> None:
    assert _parse().namespaces is None
    assert _parse("-n", "homelab", "--namespace", "media").namespaces == ["homelab", "media"]


def test_namespaces_and_all_namespaces_exclude_each_other() -> None:
    with pytest.raises(SystemExit) as exited:
        _parse("--namespace", "homelab", "--all-namespaces")

    assert exited.value.code == 2


def test_peering_and_state_are_options_with_defaults() -> None:
    args = _parse("--peering", "nebula", "--state-dir", "/var/lib/nebula")

    assert (args.peering, str(args.state_dir), args.database_url) == (
        "nebula",
        "/var/lib/nebula",
        None,
    )


def test_a_liveness_probe_is_an_option() -> None:
    assert _parse().liveness is None
    url = "http://0.0.0.0:8080/healthz"
    assert _parse("--liveness", url).liveness == url


def test_the_running_operator_answers_its_liveness_probe(running_operator: Operator) -> None:
    answer = httpx.get(running_operator.liveness, timeout=5)

    assert answer.status_code == 200
