"""The k3s install material builds offline and asks for what the code really does."""

from __future__ import annotations

import argparse
import pathlib
import subprocess
from typing import Any

import pytest
import ruamel.yaml

from bots import cli as bots_cli
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


def test_the_install_holds_the_crds_the_four_workloads_and_their_rbac(
    objects: list[dict[str, Any]],
) -> None:
    kinds = sorted(
        f"{o['kind']}/{o['metadata']['name']}"
        for o in objects
        if o["kind"] != "CustomResourceDefinition"
    )
    assert kinds == [
        "ClusterRole/nebula-bot", "ClusterRole/nebula-operator", "ClusterRole/nebula-web",
        "ClusterRoleBinding/nebula-bot", "ClusterRoleBinding/nebula-operator",
        "ClusterRoleBinding/nebula-web",
        "DaemonSet/nebula-agent", "Deployment/nebula-discord-bot", "Deployment/nebula-operator",
        "Deployment/nebula-web",
        "Namespace/nebula-system", "Service/nebula-web",
        "ServiceAccount/nebula-bot", "ServiceAccount/nebula-operator",
        "ServiceAccount/nebula-web",
    ]  # fmt: skip
    assert sum(o["kind"] == "CustomResourceDefinition" for o in objects) == 7


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("Deployment", "nebula-operator"),
        ("Deployment", "nebula-web"),
        ("DaemonSet", "nebula-agent"),
        ("Deployment", "nebula-discord-bot"),
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


def test_the_discord_bot_follows_the_cluster_with_its_token_and_database_by_reference(
    objects: list[dict[str, Any]],
) -> None:
    deployment = _named(objects, "Deployment", "nebula-discord-bot")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    args = cli.parser().parse_args(container["args"])
    assert args.run == bots_cli.BOT.run
    assert (args.bot, args.kubernetes, args.kube_server) == ("discord", True, None)
    assert deployment["spec"]["replicas"] == 1  # one gateway session per token
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    assert env == {
        # As the web server and the operator get it.
        "DATABASE_URL": {"name": "nebula-database", "key": "url"},
        # The BotConfig's spec.discord.tokenSecretRef (manifests/bots.yaml: discord-bot/token).
        "NEBULA_SECRET_DISCORD_BOT_TOKEN": {"name": "discord-bot", "key": "token"},
    }
    web = _named(objects, "Deployment", "nebula-web")["spec"]["template"]["spec"]
    assert container["image"] == web["containers"][0]["image"]
    # Its own service account, bound to its own role.
    assert pod["serviceAccountName"] == "nebula-bot"
    binding = _named(objects, "ClusterRoleBinding", "nebula-bot")
    assert binding["roleRef"]["name"] == "nebula-bot"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "nebula-bot", "namespace": "nebula-system"}
    ]


def test_the_bot_may_only_read_and_watch_its_botconfig_and_read_what_it_shows(
    objects: list[dict[str, Any]],
) -> None:
    rules = _named(objects, "ClusterRole", "nebula-bot")["rules"]
    allowed = {
        (group, res, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for res in rule["resources"]
        for verb in rule["verbs"]
    }
    assert {("nebula.dev", "botconfigs", v) for v in ("get", "list", "watch")} <= allowed
    assert {group for group, _, _ in allowed} == {"nebula.dev"}  # no Secrets, no Nodes
    assert {verb for _, _, verb in allowed} == {"get", "list", "watch"}
    assert {res for _, res, verb in allowed if verb == "watch"} == {"botconfigs"}
