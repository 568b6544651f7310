"""The operator on Kubernetes: a GitSource custom resource, a git push, and what the cluster holds.

The issue's scenarios end to end: the real kopf operator in-process against kmock's emulator, a
real bare git repository, a real PostgreSQL for the sync history. The emulator checks no schema,
so every object applied and every status written is validated against the generated CRDs here,
as a strict API server would.
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Callable
from typing import Any, TypeVar

from nebula import crds, manifests
from nebula.resources import ResourceKey, conditions
from nebula.store import SOURCE_LABEL
from nebula.store import kubernetes as kubernetes_store
from nebula.sync import REQUESTED_AT, History
from tests.conftest import GitRemote
from tests.controllers.conftest import Operator
from tests.controllers.emulator import Cluster

T = TypeVar("T")
EXAMPLE = pathlib.Path(__file__).parent.parent.parent / "manifests"
SOURCE = ResourceKey("GitSource", "default", "local")
SOURCE_ID = "default.local"
CRDS = {crd["spec"]["names"]["kind"]: crd for crd in crds.all_crds().values()}
BROKEN = """\
apiVersion: nebula.dev/v1alpha1
kind: NebulaModel
metadata:
  name: broken
spec:
  provider: ollama
  model: llama3.1:8b
  sise: 4Gi
"""


def _git_source(url: str, *, interval: str = "1s") -> dict[str, Any]:
    return {
        "apiVersion": "nebula.dev/v1alpha1",
        "kind": "GitSource",
        "metadata": {"name": SOURCE.name, "namespace": SOURCE.namespace},
        # A timeout the interval allows (at most ten intervals), as a sync would require.
        "spec": {
            "url": url,
            "ref": {"branch": "main"},
            "path": "manifests",
            "interval": interval,
            "timeout": "10s",
        },
    }


def _eventually(check: Callable[[], T | None], *, timeout: float = 20.0) -> T:
    """The first truthy result of ``check``, polled until ``timeout`` (the operator runs on
    threads of its own, in real time)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {check.__doc__ or check}")
        time.sleep(0.05)


def _started(k8s: Cluster, remote: GitRemote, *, interval: str = "1s") -> str:
    """Creates the GitSource and waits until it applied the remote's head; returns the head."""
    head = remote.commit("Start")
    k8s.create(_git_source(remote.url, interval=interval))
    _eventually(_applied(k8s, head))
    return head


def _status(k8s: Cluster) -> dict[str, Any]:
    return dict(k8s.objects("GitSource").get(SOURCE, {}).get("status") or {})


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions", []) if c["type"] == type_), None)


def _applied(k8s: Cluster, revision: str) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        """the GitSource is Ready at the revision"""
        status = _status(k8s)
        ready = _condition(status, conditions.READY)
        done = status.get("lastAppliedRevision") == revision and ready and ready["status"] == "True"
        return status if done else None

    return check


def _managed(k8s: Cluster) -> dict[ResourceKey, dict[str, Any]]:
    """Every nebula.dev object the test source applied, by key."""
    return {
        key: obj
        for kind in CRDS
        for key, obj in k8s.objects(kind).items()
        if obj["metadata"].get("labels", {}).get(SOURCE_LABEL) == SOURCE_ID
    }


def _schema_errors(k8s: Cluster) -> list[str]:
    """Every schema problem of every object applied and of every GitSource version written."""
    found = [
        f"{key}: {problem}"
        for key, obj in _managed(k8s).items()
        for problem in crds.errors(CRDS[key.kind], obj)
    ]
    for key in k8s.objects("GitSource"):
        for version in k8s.history(*key):
            found += [f"{key}: {problem}" for problem in crds.errors(CRDS["GitSource"], version)]
    return found


def _example_keys() -> set[ResourceKey]:
    return set(manifests.load_path(EXAMPLE, namespace="default").resources)


def test_a_new_git_source_applies_every_example_and_reports_ready(
    k8s: Cluster, running_operator: Operator, homelab_remote: GitRemote
) -> None:
    head = homelab_remote.commit("Nothing new")

    k8s.create(_git_source(homelab_remote.url, interval="1m"))

    status = _eventually(_applied(k8s, head))
    assert set(_managed(k8s)) == _example_keys()
    assert status["resources"] == len(_example_keys())
    assert status["lastSyncResult"] == "Applied"
    assert _condition(status, conditions.STALLED) is None
    assert _schema_errors(k8s) == []
    runs = History(running_operator.database).latest(SOURCE_ID)
    assert [(run.result, run.created, run.revision) for run in runs] == [
        ("applied", len(_example_keys()), head)
    ]

    def applied_events() -> list[dict[str, Any]]:
        """an Applied event was posted (right after the status)"""
        return [e for e in k8s.objects("v1/events").values() if e["reason"] == "Applied"]

    events = _eventually(applied_events)
    assert [e["involvedObject"]["name"] for e in events] == [SOURCE.name]
    assert events[0]["type"] == "Normal" and head[:12] in events[0]["message"]


def test_a_commit_that_deletes_a_file_prunes_exactly_its_objects(
    k8s: Cluster, running_operator: Operator, homelab_remote: GitRemote
) -> None:
    _started(k8s, homelab_remote)
    before = set(_managed(k8s))

    homelab_remote.remove("manifests/pipelines.yaml")
    _eventually(_applied(k8s, homelab_remote.commit("No more pipelines")))

    pipelines = {key for key in before if key.kind == "Pipeline"}
    assert len(pipelines) == 2
    assert set(_managed(k8s)) == before - pipelines
    assert k8s.objects("Pipeline") == {}
    runs = History(running_operator.database).latest(SOURCE_ID, limit=1)
    assert (runs[0].pruned, runs[0].created, runs[0].updated) == (2, 0, 0)


def test_deleting_the_git_source_prunes_what_it_applied_then_lets_it_go(
    k8s: Cluster, running_operator: Operator, homelab_remote: GitRemote
) -> None:
    _started(k8s, homelab_remote)
    applied = set(_managed(k8s))
    assert len(applied) > 20
    by_hand = ResourceKey("NebulaModel", "default", "by-hand")
    k8s.create(
        {
            "apiVersion": "nebula.dev/v1alpha1",
            "kind": "NebulaModel",
            "metadata": {"name": by_hand.name, "namespace": by_hand.namespace},
            "spec": {"provider": "ollama", "model": "qwen2.5:7b"},
        }
    )

    k8s.delete(SOURCE)

    def gone() -> bool:
        """the GitSource and everything it applied are gone"""
        return not _managed(k8s) and SOURCE not in k8s.objects("GitSource")

    _eventually(gone)
    assert by_hand in k8s.objects("NebulaModel")  # not the source's: left alone
    runs = History(running_operator.database).latest(SOURCE_ID, limit=1)
    assert runs[0].pruned == len(applied)
    assert runs[0].message is not None and "was deleted" in runs[0].message


def test_a_git_source_without_prune_leaves_what_it_applied_when_deleted(
    k8s: Cluster, running_operator: Operator, homelab_remote: GitRemote
) -> None:
    _started(k8s, homelab_remote)
    k8s.patch(SOURCE, {"spec": {"prune": False}})
    applied = set(_managed(k8s))

    k8s.delete(SOURCE)

    def gone() -> bool:
        """the GitSource is gone"""
        return SOURCE not in k8s.objects("GitSource")

    _eventually(gone)
    assert set(_managed(k8s)) == applied


def test_a_bad_file_applies_nothing_names_the_line_and_the_next_good_commit_recovers(
    k8s: Cluster, running_operator: Operator, homelab_remote: GitRemote
) -> None:
    first = _started(k8s, homelab_remote)
    postgres = ResourceKey("NebulaService", "default", "postgres")
    home = homelab_remote.read("manifests/services/home.yaml")
    homelab_remote.write("manifests/services/home.yaml", home.replace("16.4-alpine", "16.6-alpine"))
    homelab_remote.write("manifests/broken.yaml", BROKEN)
    bad = homelab_remote.commit("A newer postgres, and a typo")

    def stalled() -> dict[str, Any] | None:
        """the GitSource is Stalled on the bad revision"""
        status = _status(k8s)
        return status if status.get("lastAttemptedRevision") == bad else None

    status = _eventually(stalled)
    ready, stall = _condition(status, "Ready"), _condition(status, "Stalled")
    assert ready and (ready["status"], ready["reason"]) == ("False", "ValidationFailed")
    assert stall and (stall["status"], stall["reason"]) == ("True", "ValidationFailed")
    assert "manifests/broken.yaml:8:3" in ready["message"]
    assert status["lastAppliedRevision"] == first
    assert k8s.objects("NebulaService")[postgres]["spec"]["image"] == "postgres:16.4-alpine"

    homelab_remote.remove("manifests/broken.yaml")
    fixed = homelab_remote.commit("Fix the typo")

    status = _eventually(_applied(k8s, fixed))
    assert _condition(status, "Stalled") is None
    assert k8s.objects("NebulaService")[postgres]["spec"]["image"] == "postgres:16.6-alpine"
    assert _schema_errors(k8s) == []
    results = [run.result for run in History(running_operator.database).latest(SOURCE_ID)]
    assert results == ["applied", "failed", "applied"]


def test_a_sync_request_runs_at_once_instead_of_at_the_interval(
    k8s: Cluster, running_operator: Operator, homelab_remote: GitRemote
) -> None:
    _started(k8s, homelab_remote, interval="1h")
    homelab_remote.remove("manifests/workflows/upscale.yaml")
    pushed = homelab_remote.commit("No upscaling")

    kubernetes_store.KubernetesTrigger(k8s.api).request(SOURCE)

    status = _eventually(_applied(k8s, pushed), timeout=10)
    annotations = k8s.objects("GitSource")[SOURCE]["metadata"]["annotations"]
    assert status["requestedAt"] == annotations[REQUESTED_AT]
    assert ResourceKey("ComfyWorkflow", "default", "upscale") not in k8s.objects("ComfyWorkflow")


def test_a_change_of_the_spec_syncs_at_once(
    k8s: Cluster, running_operator: Operator, homelab_remote: GitRemote
) -> None:
    _started(k8s, homelab_remote, interval="1h")
    homelab_remote.remove("manifests/workflows/upscale.yaml")
    pushed = homelab_remote.commit("No upscaling")

    k8s.patch(SOURCE, {"spec": {"interval": "2h"}})

    status = _eventually(_applied(k8s, pushed), timeout=10)
    assert status["observedGeneration"] == 2


def test_a_spec_the_model_refuses_stalls_until_it_is_fixed(
    k8s: Cluster, running_operator: Operator, homelab_remote: GitRemote
) -> None:
    # The CRD lets any URL through; the model refuses credentials in it.
    head = homelab_remote.commit("Start")
    k8s.create(_git_source("https://ada:hunter2@example.com/homelab.git", interval="1h"))

    def refused() -> dict[str, Any] | None:
        """the GitSource is Stalled on its spec"""
        stalled = _condition(_status(k8s), conditions.STALLED)
        return stalled if stalled and stalled["reason"] == "InvalidSpec" else None

    stalled = _eventually(refused)
    assert "spec.url" in stalled["message"] and "use secretRef" in stalled["message"]
    assert _managed(k8s) == {}

    k8s.patch(SOURCE, {"spec": {"url": homelab_remote.url}})

    status = _eventually(_applied(k8s, head), timeout=10)
    assert _condition(status, conditions.STALLED) is None
    assert status["observedGeneration"] == 2
    assert _schema_errors(k8s) == []
