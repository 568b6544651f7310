"""``/nebula`` commands that read: status, nodes, open changes, and autocomplete with real names.

The state is what the controllers wrote into a real store: the example synced by the GitSource
reconciler, one node reported by a heartbeat through the NebulaNode controller.
"""

from __future__ import annotations

import datetime
import pathlib

from bots import commands
from controllers import embedded, nebula_node, reconciling
from nebula import bot_reports, heartbeats
from nebula.resources import ResourceKey
from nebula.resources.bot_config import FEATURES
from nebula.resources.nebula_node import Hardware
from nebula.secrets import EnvironmentSecrets
from nebula.sync import History
from tests.bots.conftest import ADA, MEL, OUTSIDER, PIA, SOURCE, TESS, UI_URL, Homelab

HOME = ResourceKey("NebulaNode", None, "home-ubuntu")


def _report_home_ubuntu(homelab: Homelab) -> None:
    """Its agent reports an RTX 3060 with 12 GiB; the NebulaNode controller writes the status."""
    beats = heartbeats.HeartbeatStore(homelab.conninfo)
    beats.record(
        heartbeats.Heartbeat(
            node="home-ubuntu",
            hostname="home-ubuntu",
            agent_version="0.1.0",
            interval_seconds=15,
            hardware=Hardware.model_validate(
                {
                    "cpu": {"model": "AMD Ryzen 9 5900X", "cores": 24},
                    "memory": "64Gi",
                    "gpus": [
                        {"index": 0, "vendor": "nvidia", "model": "NVIDIA GeForce RTX 3060",
                         "vramTotal": "12Gi"}
                    ],
                    "os": "Ubuntu 24.04.1 LTS",
                    "arch": "amd64",
                    "addresses": ["192.168.1.50"],
                }
            ),
        )
    )  # fmt: skip
    kind = nebula_node.NebulaNodeKind(
        reconciling.Services(
            store=homelab.store,
            runs=History(homelab.conninfo),
            secrets=EnvironmentSecrets({}),
            heartbeats=beats,
            reports=bot_reports.BotReportStore(homelab.conninfo),
            state_dir=pathlib.Path("unused"),
        )
    )
    sink = embedded.StoreSink(homelab.store)
    for name in ("home-ubuntu", "windows-vm"):
        stored = homelab.store.get(ResourceKey("NebulaNode", None, name))
        assert stored is not None
        runner = reconciling.Runner(
            kind, stored.key, sink=sink, clock=lambda: datetime.datetime.now(datetime.UTC)
        )
        runner.run(embedded.resource_of(stored), stored.status, uid=None)


def test_status_shows_the_applied_revision_and_what_is_not_ready(homelab: Homelab) -> None:
    _report_home_ubuntu(homelab)
    stored = homelab.store.get(SOURCE)
    assert stored is not None
    applied = str(stored.status["lastAppliedRevision"])

    reply = homelab.handlers.status(MEL)

    assert not reply.ephemeral and reply.embed is not None
    fields = {f.name: f.value for f in reply.embed.fields}
    assert fields["GitSource default/local"] == f"`{applied[:7]}` on main · Applied"
    # The example declares a (suspended) GitSource of its own; nothing has synced it here.
    assert fields["GitSource default/homelab"] == "nothing applied yet on main · not synced yet"
    assert fields["Not Ready (1)"].startswith("**NebulaNode/windows-vm**: NoHeartbeat: no agent")
    assert "home-ubuntu" not in fields["Not Ready (1)"]
    assert reply.embed.colour == commands.ORANGE
    assert reply.text == "1 of 27 resources are not Ready."
    assert fields["Not reconciled yet"] == "24 objects"


def test_nodes_is_the_nebulanodes_table(homelab: Homelab) -> None:
    _report_home_ubuntu(homelab)

    reply = homelab.handlers.nodes(MEL)

    lines = reply.text.splitlines()
    assert lines[0] == lines[-1] == "```"
    assert [line.split() for line in lines[1:-1]] == [
        ["NAME", "ROLE", "GPU", "VRAM", "READY"],
        ["home-ubuntu", "ai", "RTX", "3060", "12Gi", "True"],
        ["linode-vps", "control", "-", "-", "Unknown"],
        ["windows-vm", "ai", "-", "-", "False"],
    ]


def test_changes_lists_what_waits_with_links_to_the_web_ui(homelab: Homelab) -> None:
    assert homelab.handlers.changes(MEL).text == "No change waits for approval."
    opened = homelab.handlers.model_add(ADA, model="llama3-1-8b", node="windows-vm")
    scaled = homelab.handlers.service_scale(ADA, service="dashboard", replicas=2)

    reply = homelab.handlers.changes(MEL)

    assert reply.text == "2 changes wait."
    assert reply.embed is not None
    assert [(f.name, f.value) for f in reply.embed.fields] == [
        (
            f"#{scaled.change} Scale dashboard to 2 replicas",
            f"open · `manifests/services/cloud.yaml: +1 -1` · by ada\n"
            f"{UI_URL}/changes/{scaled.change}",
        ),
        (
            f"#{opened.change} Add model llama3-1-8b to node windows-vm",
            f"open · `manifests/models.yaml: +1 -1` · by ada\n{UI_URL}/changes/{opened.change}",
        ),
    ]


def test_reading_needs_a_view_state_role_in_a_listed_guild(homelab: Homelab) -> None:
    for read in (homelab.handlers.status, homelab.handlers.nodes, homelab.handlers.changes):
        assert read(TESS).ephemeral is False  # Testers may look in the lab server
        assert read(PIA) == commands.Reply(commands.CANNOT_VIEW, ephemeral=True)
        assert read(OUTSIDER) == commands.Reply(commands.UNKNOWN_GUILD, ephemeral=True)


def test_autocomplete_offers_real_names_starting_with_what_was_typed(homelab: Homelab) -> None:
    handlers = homelab.handlers

    assert handlers.complete_nodes(ADA, "") == ["home-ubuntu", "linode-vps", "windows-vm"]
    assert handlers.complete_nodes(ADA, "WIN") == ["windows-vm"]
    assert handlers.complete_models(ADA, "q") == ["qwen2-5-coder-7b"]
    assert "llama3-1-8b" in handlers.complete_models(ADA, "")
    assert handlers.complete_services(ADA, "da") == ["dashboard"]
    assert handlers.complete_features(ADA, "st") == ["starboard", "streamNotifications"]
    assert sorted(handlers.complete_features(ADA, "")) == sorted(FEATURES)
    assert handlers.complete_nodes(ADA, "nas") == []
    # Names are state: nobody outside the permissions gets any.
    assert handlers.complete_nodes(PIA, "") == []
    assert handlers.complete_services(OUTSIDER, "") == []


def test_autocomplete_follows_the_store(homelab: Homelab) -> None:
    homelab.remote.write(
        "manifests/nodes-nas.yaml",
        "apiVersion: nebula.dev/v1alpha1\nkind: NebulaNode\nmetadata:\n  name: nas\n"
        "spec:\n  role: storage\n  runtime: docker\n  addresses:\n"
        "    - type: lan\n      address: 192.168.1.60\n",
    )
    homelab.remote.commit("A NAS joins the homelab")
    homelab.sync()

    assert homelab.handlers.complete_nodes(ADA, "n") == ["nas"]
