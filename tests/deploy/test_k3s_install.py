"""The k3s install material builds offline and asks for what the code really does."""

from __future__ import annotations

import argparse
import pathlib
import subprocess
from typing import Any

import pytest
import ruamel.yaml

from nebula import cli

ROOT = pathlib.Path(__file__).parent.parent.parent


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    built = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "deploy" / "k3s")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    return [doc for doc in ruamel.yaml.YAML(typ="safe").load_all(built.stdout) if doc]


def _named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def test_the_install_holds_the_crds_the_three_workloads_and_their_rbac(
    objects: list[dict[str, Any]],
) -> None:
    kinds = sorted(
        f"{o['kind']}/{o['metadata']['name']}"
        for o in objects
        if o["kind"] != "CustomResourceDefinition"
    )
    assert kinds == [
        "ClusterRole/nebula-operator", "ClusterRole/nebula-web",
        "ClusterRoleBinding/nebula-operator", "ClusterRoleBinding/nebula-web",
        "DaemonSet/nebula-agent", "Deployment/nebula-operator", "Deployment/nebula-web",
        "Namespace/nebula-system", "Service/nebula-web",
        "ServiceAccount/nebula-operator", "ServiceAccount/nebula-web",
    ]  # fmt: skip
    assert sum(o["kind"] == "CustomResourceDefinition" for o in objects) == 7


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("Deployment", "nebula-operator"),
        ("Deployment", "nebula-web"),
        ("DaemonSet", "nebula-agent"),
    ],
)
def test_every_container_runs_a_command_the_cli_accepts(
    objects: list[dict[str, Any]], kind: str, name: str
) -> None:
    [container] = _named(objects, kind, name)["spec"]["template"]["spec"]["containers"]

    args = cli.parser().parse_args(container["args"])

    assert isinstance(args, argparse.Namespace) and hasattr(args, "run")


def test_the_operator_may_label_nodes_and_write_statuses_and_the_web_may_only_read_and_ask(
    objects: list[dict[str, Any]],
) -> None:
    def allowed(role: str) -> set[tuple[str, str]]:
        rules = _named(objects, "ClusterRole", role)["rules"]
        return {
            (res, verb) for rule in rules for res in rule["resources"] for verb in rule["verbs"]
        }

    operator, web = allowed("nebula-operator"), allowed("nebula-web")
    assert {("nodes", "patch"), ("gitsources/status", "patch"), ("events", "create")} <= operator
    assert {("nebulanodes", "patch"), ("secrets", "get")} <= operator
    assert ("gitsources", "patch") in web  # the webhook stamps nebula.dev/requested-at
    assert not {verb for res, verb in web if verb in ("create", "delete")}
