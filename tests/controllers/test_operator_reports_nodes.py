"""The operator on Kubernetes: NebulaNodes, their agents' heartbeats, and the k3s Nodes' labels.

The issue's "done when" for the operator, end to end: the real kopf operator in-process against
kmock's emulator, heartbeats recorded in a real PostgreSQL as an agent (or the web API) records
them. The emulator checks no schema, so every status the operator writes is validated against the
generated CRD here, as a strict API server would. Waits are bounded and in real time: the
operator runs on threads of its own.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from typing import Any, TypeVar

import kubernetes.client
import pytest

from controllers import nebula_node
from nebula import crds, errors
from nebula.heartbeats import Heartbeat, HeartbeatStore
from nebula.resources import ResourceKey, conditions
from nebula.resources.nebula_node import Hardware
from nebula.store import kubernetes as kubernetes_store
from tests.controllers.conftest import Operator
from tests.controllers.emulator import Cluster

T = TypeVar("T")
CRD = next(c for c in crds.all_crds().values() if c["spec"]["names"]["kind"] == "NebulaNode")
HOME = ResourceKey("NebulaNode", None, "home-ubuntu")
RTX_3070 = {
    "index": 0,
    "vendor": "nvidia",
    "model": "NVIDIA GeForce RTX 3070",
    "vramTotal": "8Gi",
    "vramUsed": "1234Mi",
    "driver": "550.120",
    "cudaVersion": "12.4",
    "utilization": 7,
    "temperature": 44,
}
# What a k3s agent puts on its Node, plus labels from before this card and from other tools.
NODE_LABELS = {
    "kubernetes.io/hostname": "home-ubuntu",
    "kubernetes.io/arch": "amd64",
    "node.kubernetes.io/instance-type": "k3s",
    "nebula.dev/site": "home",  # not the operator's: only gpu.* and vram-tier are
    "nebula.dev/gpu.product": "NVIDIA-GeForce-GTX-1080",  # the card before
    "nebula.dev/gpu.family": "pascal",  # stale, from an older labeller
}


def _nebula_node(
    name: str, *, runtime: str = "k3s", interval: str = "1s", os: str = "linux"
) -> dict[str, Any]:
    return {
        "apiVersion": "nebula.dev/v1alpha1",
        "kind": "NebulaNode",
        "metadata": {"name": name},
        "spec": {
            "role": "ai",
            "runtime": runtime,
            "os": os,
            "addresses": [{"type": "lan", "address": "192.168.1.20"}],
            "agent": {"heartbeatInterval": interval},
            "hardware": {"arch": "amd64", "gpu": {"vendor": "nvidia", "minVram": "24Gi"}},
        },
    }


def _hardware() -> Hardware:
    return Hardware.model_validate(
        {
            "cpu": {"model": "AMD Ryzen 7 5800X 8-Core Processor", "cores": 16, "physicalCores": 8},
            "memory": "62Gi",
            "disks": [
                {"mount": "/", "total": "915Gi", "free": "512Gi"},
                {"mount": "/mnt/models", "total": "1863Gi", "free": "1201Gi"},
            ],
            "gpus": [RTX_3070],
            "os": "Ubuntu 24.04.1 LTS",
            "kernel": "6.8.0-49-generic",
            "arch": "amd64",
            "addresses": ["192.168.1.20", "100.101.1.2", "10.42.0.1"],
            "endpoints": {"docker": False, "ollama": True, "comfyui": True},
        }
    )


NO_DRIVER = (
    "nvidia-smi: NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
)


def _beat(node: str, *, interval: float = 1.0, problems: tuple[str, ...] = ()) -> Heartbeat:
    return Heartbeat(
        node=node,
        hostname=node,
        agent_version="0.1.0",
        interval_seconds=interval,
        hardware=_hardware(),
        problems=list(problems),
    )


def _create_node(k8s: Cluster, name: str, labels: dict[str, str]) -> None:
    """Creates a core/v1 Node, as k3s does when a machine joins."""
    metadata = kubernetes.client.V1ObjectMeta(name=name, labels=labels)
    node = kubernetes.client.V1Node(api_version="v1", kind="Node", metadata=metadata)
    kubernetes.client.CoreV1Api(k8s.api).create_node(node)


def _eventually(check: Callable[[], T | None], *, timeout: float = 5.0) -> T:
    """The first truthy result of ``check``, polled until ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {check.__doc__ or check}")
        time.sleep(0.02)


def _status(k8s: Cluster, key: ResourceKey = HOME) -> dict[str, Any]:
    return dict(k8s.objects("NebulaNode").get(key, {}).get("status") or {})


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions", []) if c["type"] == type_), {})


def _ready_is(
    k8s: Cluster, value: str, *, key: ResourceKey = HOME, reason: str | None = None
) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        """the NebulaNode's Ready condition has the expected status and reason"""
        status = _status(k8s, key)
        ready = _condition(status, conditions.READY)
        found = ready.get("status") == value and reason in (None, ready.get("reason"))
        return status if found else None

    return check


def _heartbeat_seen(
    k8s: Cluster, key: ResourceKey, after: str | None
) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        """the status shows a heartbeat newer than the one before"""
        status = _status(k8s, key)
        seen = status.get("lastHeartbeat")
        return status if seen is not None and seen != after else None

    return check


def _node_labels(k8s: Cluster, name: str) -> dict[str, str]:
    return dict(k8s.objects("v1/nodes")[ResourceKey("v1/nodes", None, name)]["metadata"]["labels"])


def _node_annotations(k8s: Cluster, name: str) -> dict[str, str]:
    metadata = k8s.objects("v1/nodes")[ResourceKey("v1/nodes", None, name)]["metadata"]
    return dict(metadata.get("annotations") or {})


def _node_requests(k8s: Cluster) -> list[tuple[str, str, str | None]]:
    """The requests to core/v1 Nodes: method, path and content type."""
    return k8s.call(
        lambda emulator: [
            (r.method.value, r.url.path, r.headers.get("Content-Type"))
            for r in emulator
            if r.url.path.startswith("/api/v1/nodes")
        ]
    )


def _events(k8s: Cluster, reason: str) -> list[dict[str, Any]]:
    return [e for e in k8s.objects("v1/events").values() if e.get("reason") == reason]


def _schema_errors(k8s: Cluster) -> list[str]:
    """Every schema problem of every version of every NebulaNode (spec and status writes)."""
    return [
        f"{key.name}: {problem}"
        for key in k8s.objects("NebulaNode")
        for version in k8s.history(*key)
        for problem in crds.errors(CRD, version)
    ]


def _parse_time(stamp: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_a_heartbeat_fills_the_status_and_labels_the_node_and_silence_turns_it_not_ready(
    k8s: Cluster, running_operator: Operator
) -> None:
    _create_node(k8s, "home-ubuntu", NODE_LABELS)
    k8s.create(_nebula_node("home-ubuntu"))
    _eventually(_ready_is(k8s, "False", reason=nebula_node.NO_HEARTBEAT))

    HeartbeatStore(running_operator.database).record(_beat("home-ubuntu"))
    recorded = time.monotonic()

    status = _eventually(_ready_is(k8s, "True", reason=nebula_node.REPORTING))
    assert (status["gpu"], status["vram"], status["vramTier"]) == ("RTX 3070", "8Gi", "8Gi+")
    assert (status["cpu"], status["memory"], status["agentVersion"]) == (
        "16 cores",
        "62Gi",
        "0.1.0",
    )
    assert status["hardware"]["gpus"][0]["model"] == "NVIDIA GeForce RTX 3070"
    assert status["hardware"]["disks"][1]["mount"] == "/mnt/models"
    matches = _condition(status, nebula_node.HARDWARE_MATCHES)
    assert (matches["status"], matches["reason"]) == ("False", nebula_node.DIFFERS)
    assert matches["message"] == (
        "declared at least 24Gi (24576Mi) of VRAM per nvidia GPU, "
        "found NVIDIA GeForce RTX 3070 with 8Gi (8192Mi)"
    )
    degraded = _condition(status, conditions.DEGRADED)
    assert (degraded["status"], degraded["reason"]) == ("True", nebula_node.HARDWARE_DIFFERS)

    def labelled() -> dict[str, str] | None:
        """the Node carries the GPU's labels"""
        labels = _node_labels(k8s, "home-ubuntu")
        return labels if labels.get("nebula.dev/gpu.memory") == "8192" else None

    labels = _eventually(labelled)
    ours = {k: v for k, v in labels.items() if k.startswith(("nebula.dev/gpu.", "nebula.dev/vram"))}
    assert ours == {
        "nebula.dev/gpu.product": "NVIDIA-GeForce-RTX-3070",
        "nebula.dev/gpu.memory": "8192",
        "nebula.dev/gpu.count": "1",
        "nebula.dev/vram-tier": "8Gi-or-more",
    }
    others = {k: v for k, v in NODE_LABELS.items() if not k.startswith("nebula.dev/gpu.")}
    assert {k: v for k, v in labels.items() if k not in ours} == others
    event = _eventually(lambda: _events(k8s, nebula_node.NODE_LABELLED))[0]
    assert event["type"] == "Normal" and "-nebula.dev/gpu.family" in event["message"]

    # The agent stops: three intervals (1 s each) after its last heartbeat, the node is stale.
    status = _eventually(_ready_is(k8s, "False", reason=nebula_node.HEARTBEAT_STALE))
    assert time.monotonic() - recorded < 3 * 1.0 + 2.0
    ready = _condition(status, conditions.READY)
    silent = _parse_time(ready["lastTransitionTime"]) - _parse_time(status["lastHeartbeat"])
    assert silent >= datetime.timedelta(seconds=3)
    assert "expected every 1s" in ready["message"]
    # What was known of the machine stays known, and its Node keeps its labels.
    assert status["gpu"] == "RTX 3070" and status["hardware"]["cpu"]["cores"] == 16
    assert _node_labels(k8s, "home-ubuntu")["nebula.dev/gpu.memory"] == "8192"
    assert _schema_errors(k8s) == []


def test_a_heartbeat_or_a_spec_change_wakes_the_daemon_before_its_delay_ends(
    k8s: Cluster, running_operator: Operator
) -> None:
    # An hour-long interval: without being woken, the daemon would look again in an hour.
    _create_node(k8s, "home-ubuntu", {"kubernetes.io/hostname": "home-ubuntu"})
    k8s.create(_nebula_node("home-ubuntu", interval="1h"))
    _eventually(_ready_is(k8s, "False", reason=nebula_node.NO_HEARTBEAT))

    HeartbeatStore(running_operator.database).record(_beat("home-ubuntu", interval=3600))

    status = _eventually(_ready_is(k8s, "True"), timeout=2.0)
    assert _condition(status, nebula_node.HARDWARE_MATCHES)["status"] == "False"
    assert _condition(status, conditions.DEGRADED)["status"] == "True"

    k8s.patch(HOME, {"spec": {"hardware": {"gpu": {"vendor": "nvidia", "minVram": "8Gi"}}}})

    def matching() -> dict[str, Any] | None:
        """the hardware matches the changed declaration"""
        status = _status(k8s)
        return (
            status if _condition(status, nebula_node.HARDWARE_MATCHES)["status"] == "True" else None
        )

    status = _eventually(matching, timeout=2.0)
    assert status["observedGeneration"] == 2
    assert _condition(status, conditions.DEGRADED)["status"] == "False"
    assert _schema_errors(k8s) == []


def test_the_agents_problems_reach_the_status_and_make_the_node_degraded(
    k8s: Cluster, running_operator: Operator
) -> None:
    # Bug: what the agent could not read (a broken NVIDIA driver) stayed in the heartbeats
    # table; the operator writes it into the status, within the CRD's schema, as the embedded
    # runtime does, and the node turns Degraded while it stays Ready.
    declared = _nebula_node("home-ubuntu", interval="1h")
    declared["spec"]["hardware"] = {"arch": "amd64"}
    k8s.create(declared)

    beats = HeartbeatStore(running_operator.database)
    beats.record(_beat("home-ubuntu", interval=3600, problems=(NO_DRIVER,)))

    status = _eventually(_ready_is(k8s, "True", reason=nebula_node.REPORTING))
    assert status["problems"] == [NO_DRIVER]
    degraded = _condition(status, conditions.DEGRADED)
    assert (degraded["status"], degraded["reason"], degraded["message"]) == (
        "True",
        nebula_node.AGENT_PROBLEMS,
        f"the agent could not read {NO_DRIVER}",
    )

    # The driver is back: the next heartbeat clears both.
    beats.record(_beat("home-ubuntu", interval=3600))

    def recovered() -> dict[str, Any] | None:
        """the node is no longer Degraded"""
        status = _status(k8s)
        return status if _condition(status, conditions.DEGRADED)["status"] == "False" else None

    status = _eventually(recovered)
    assert status.get("problems", []) == []
    assert _schema_errors(k8s) == []


def test_a_docker_node_never_touches_kubernetes_nodes(
    k8s: Cluster, running_operator: Operator
) -> None:
    vm = ResourceKey("NebulaNode", None, "windows-vm")
    # A Node of the same name exists, so only the runtime keeps the operator away from it.
    _create_node(k8s, "windows-vm", {"kubernetes.io/hostname": "windows-vm"})
    k8s.create(_nebula_node("windows-vm", runtime="docker", os="windows"))
    beats = HeartbeatStore(running_operator.database)

    beats.record(_beat("windows-vm"))
    first = _eventually(_ready_is(k8s, "True", key=vm))["lastHeartbeat"]
    # A second report: once it shows, the pass of the first one has finished, labels and all.
    beats.record(_beat("windows-vm"))
    _eventually(_heartbeat_seen(k8s, vm, first))

    assert [r[:2] for r in _node_requests(k8s)] == [("POST", "/api/v1/nodes")]  # the test's own
    assert _node_labels(k8s, "windows-vm") == {"kubernetes.io/hostname": "windows-vm"}
    assert _events(k8s, nebula_node.NODE_NOT_FOUND) == []
    assert _schema_errors(k8s) == []


def test_a_k3s_node_without_its_kubernetes_node_reports_and_warns_once_until_it_joins(
    k8s: Cluster, running_operator: Operator
) -> None:
    beats = HeartbeatStore(running_operator.database)
    k8s.create(_nebula_node("home-ubuntu"))

    beats.record(_beat("home-ubuntu"))

    # The reconciler's status stands; the missing Node is an event, not a failure.
    first = _eventually(_ready_is(k8s, "True"))["lastHeartbeat"]
    event = _eventually(lambda: _events(k8s, nebula_node.NODE_NOT_FOUND))[0]
    assert event["type"] == "Warning"
    assert event["involvedObject"] == {
        "apiVersion": "nebula.dev/v1alpha1",
        "kind": "NebulaNode",
        "name": "home-ubuntu",
        "uid": k8s.objects("NebulaNode")[HOME]["metadata"]["uid"],
    }
    assert "'home-ubuntu'" in event["message"] and "kubernetesNodeName" in event["message"]
    beats.record(_beat("home-ubuntu"))
    second = _eventually(_heartbeat_seen(k8s, HOME, first))["lastHeartbeat"]
    assert len(_events(k8s, nebula_node.NODE_NOT_FOUND)) == 1

    # The machine joins the cluster: its next heartbeat labels the Node.
    _create_node(k8s, "home-ubuntu", {"kubernetes.io/hostname": "home-ubuntu"})
    beats.record(_beat("home-ubuntu"))
    _eventually(_heartbeat_seen(k8s, HOME, second))

    def labelled() -> bool:
        """the Node that joined carries the GPU's labels"""
        return _node_labels(k8s, "home-ubuntu").get("nebula.dev/vram-tier") == "8Gi-or-more"

    _eventually(labelled)
    assert len(_events(k8s, nebula_node.NODE_NOT_FOUND)) == 1
    assert _schema_errors(k8s) == []


def test_labelling_merge_patches_only_the_named_labels_and_a_403_names_the_permission(
    k8s: Cluster,
) -> None:
    _create_node(k8s, "home-ubuntu", NODE_LABELS)

    labels = {"nebula.dev/gpu.family": None, "nebula.dev/vram-tier": "cpu"}
    kubernetes_store.label_node(k8s.api, "home-ubuntu", labels)

    expected = {**NODE_LABELS, "nebula.dev/vram-tier": "cpu"}
    del expected["nebula.dev/gpu.family"]
    assert kubernetes_store.read_node_labels(k8s.api, "home-ubuntu") == (expected, {})
    patches = [r for r in _node_requests(k8s) if r[0] == "PATCH"]
    assert patches == [("PATCH", "/api/v1/nodes/home-ubuntu", "application/merge-patch+json")]
    assert kubernetes_store.read_node_labels(k8s.api, "gone") is None
    with pytest.raises(errors.ResourceNotFound, match="Node gone"):
        kubernetes_store.label_node(k8s.api, "gone", {"nebula.dev/vram-tier": "cpu"})

    k8s.react("patch", "/api/v1/nodes/home-ubuntu", 403, 'nodes "home-ubuntu" is forbidden')

    with pytest.raises(errors.ConfigurationError, match="verb 'patch' on 'nodes'"):
        kubernetes_store.label_node(k8s.api, "home-ubuntu", {"nebula.dev/vram-tier": "cpu"})


def test_declared_labels_follow_the_spec_onto_the_node_and_leave_others_alone(
    k8s: Cluster, running_operator: Operator
) -> None:
    _create_node(k8s, "home-ubuntu", {**NODE_LABELS, "team": "media"})  # someone else's
    declared = _nebula_node("home-ubuntu", interval="30s")
    declared["spec"]["labels"] = {"zone": "attic", "nebula.dev/vram-tier": "cpu"}
    k8s.create(declared)
    HeartbeatStore(running_operator.database).record(_beat("home-ubuntu", interval=30.0))

    def carries(wanted: dict[str, str]) -> Callable[[], dict[str, str] | None]:
        def check() -> dict[str, str] | None:
            """the Node carries the declared labels"""
            labels = _node_labels(k8s, "home-ubuntu")
            return labels if all(labels.get(k) == v for k, v in wanted.items()) else None

        return check

    labels = _eventually(carries({"zone": "attic"}))
    # The hardware has the last word under nebula.dev/; others' labels stay.
    assert labels["nebula.dev/vram-tier"] == "8Gi-or-more"
    assert labels["team"] == "media"
    assert _node_annotations(k8s, "home-ubuntu")[nebula_node.DECLARED_LABELS] == "zone"

    # `nebula change open label-node ...` merged: zone goes, rack comes; team stays.
    k8s.patch(HOME, {"spec": {"labels": {"rack": "2", "zone": None}}})
    HeartbeatStore(running_operator.database).record(_beat("home-ubuntu", interval=30.0))
    labels = _eventually(carries({"rack": "2"}))
    _eventually(lambda: "zone" not in _node_labels(k8s, "home-ubuntu"))
    assert _node_labels(k8s, "home-ubuntu")["team"] == "media"
    assert _node_annotations(k8s, "home-ubuntu")[nebula_node.DECLARED_LABELS] == "rack"
