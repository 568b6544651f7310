"""The Kubernetes store against kmock's emulator: apply, inventory, ownership, prune, status, drift.

The emulator is served over HTTP from its own thread (``tests/controllers/emulator.py``), so the
store's blocking ``kubernetes`` client talks to it as it would to an API server. Requests are
counted on the emulator's side.
"""

from __future__ import annotations

import datetime
import pathlib
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from nebula import errors, manifests
from nebula.resources import ResourceKey
from nebula.secrets import KubernetesSecrets
from nebula.store import SOURCE_LABEL, Desired, Plan
from nebula.store import kubernetes as kubernetes_store
from nebula.sync import REQUESTED_AT, planning
from tests.controllers import emulator

EXAMPLE = pathlib.Path(__file__).parent.parent.parent / "manifests"
SOURCE = "default.homelab"
NOW = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=datetime.UTC)
NODE = ResourceKey("NebulaNode", None, "home-ubuntu")
SERVICE = ResourceKey("NebulaService", "default", "postgres")


@pytest.fixture
def k8s() -> Iterator[emulator.Cluster]:
    """The emulator, serving every resource the store uses."""
    with emulator.serve() as cluster:
        yield cluster


@pytest.fixture
def store(k8s: emulator.Cluster) -> kubernetes_store.KubernetesStore:
    """The store under test, through the emulator's client."""
    return kubernetes_store.KubernetesStore(k8s.api)


@pytest.fixture(scope="module")
def example() -> dict[ResourceKey, Desired]:
    """The desired documents of the example homelab."""
    loaded = manifests.load_path(EXAMPLE, namespace="default")
    loaded.raise_for_errors()
    return {key: planning.desired(resource) for key, resource in loaded.resources.items()}


def _applied(
    store: kubernetes_store.KubernetesStore, wanted: dict[ResourceKey, Desired], source: str
) -> Plan:
    """Plans against what the source applied, then commits: one sync, without git."""
    plan = planning.plan(wanted.values(), store.inventory(source, wanted))
    store.commit(source, plan)
    return plan


def test_commit_creates_every_object_labelled_and_annotated_with_what_was_applied(
    k8s: emulator.Cluster,
    store: kubernetes_store.KubernetesStore,
    example: dict[ResourceKey, Desired],
) -> None:
    plan = _applied(store, example, SOURCE)

    assert len(plan.create) == len(example)
    for key, desired in example.items():
        live = k8s.objects(key.kind)[key]
        assert live["metadata"]["labels"][SOURCE_LABEL] == SOURCE
        assert live["metadata"]["annotations"][kubernetes_store.APPLIED_HASH] == desired.hash
        assert live["spec"] == desired.document["spec"]
    assert "namespace" not in k8s.objects("NebulaNode")[NODE]["metadata"]  # cluster-scoped


def test_a_second_sync_of_the_same_documents_plans_nothing_and_writes_nothing(
    k8s: emulator.Cluster,
    store: kubernetes_store.KubernetesStore,
    example: dict[ResourceKey, Desired],
) -> None:
    _applied(store, example, SOURCE)
    before = len(k8s.requests())

    again = _applied(store, example, SOURCE)

    assert again.empty and again.unchanged == len(example)
    assert k8s.writes(since=before) == []


def test_committing_the_same_plan_twice_leaves_the_same_objects(
    k8s: emulator.Cluster,
    store: kubernetes_store.KubernetesStore,
    example: dict[ResourceKey, Desired],
) -> None:
    # A sync that failed half-way runs its plan again: every write must be safe to repeat.
    plan = planning.plan(example.values(), {})
    store.commit(SOURCE, plan)
    first = _essence(k8s.objects("NebulaService"))

    store.commit(SOURCE, plan)

    assert _essence(k8s.objects("NebulaService")) == first  # generation included


def test_inventory_finds_what_a_source_applied_and_only_that(
    k8s: emulator.Cluster,
    store: kubernetes_store.KubernetesStore,
    example: dict[ResourceKey, Desired],
) -> None:
    mine = {k: d for k, d in example.items() if k.kind == "NebulaNode"}
    theirs = {k: d for k, d in example.items() if k.kind == "NebulaModel"}
    _applied(store, mine, SOURCE)
    _applied(store, theirs, "default.other")
    k8s.create(_service("by-hand"))

    found = store.inventory(SOURCE, mine)

    assert set(found) == set(mine)
    assert all(state.hash == mine[key].hash and not state.drifted for key, state in found.items())


def test_an_object_of_another_source_refuses_the_commit_before_any_write(
    k8s: emulator.Cluster,
    store: kubernetes_store.KubernetesStore,
    example: dict[ResourceKey, Desired],
) -> None:
    _applied(store, {SERVICE: example[SERVICE]}, "default.other")
    before = len(k8s.requests())

    with pytest.raises(errors.OwnershipConflict, match=r"NebulaService/default/postgres"):
        _applied(store, example, SOURCE)

    assert k8s.writes(since=before) == []
    assert k8s.objects("NebulaService")[SERVICE]["metadata"]["labels"][SOURCE_LABEL] == (
        "default.other"
    )


def test_an_object_without_a_source_is_taken_over(
    k8s: emulator.Cluster,
    store: kubernetes_store.KubernetesStore,
    example: dict[ResourceKey, Desired],
) -> None:
    k8s.create({**example[SERVICE].document, "spec": {"image": "postgres:15"}})

    _applied(store, {SERVICE: example[SERVICE]}, SOURCE)

    live = k8s.objects("NebulaService")[SERVICE]
    assert live["metadata"]["labels"][SOURCE_LABEL] == SOURCE
    assert live["spec"]["image"] == example[SERVICE].document["spec"]["image"]


def test_prune_deletes_the_objects_gone_from_the_documents_and_nothing_else(
    k8s: emulator.Cluster,
    store: kubernetes_store.KubernetesStore,
    example: dict[ResourceKey, Desired],
) -> None:
    _applied(store, example, SOURCE)
    k8s.create(_service("by-hand"))
    kept = {k: d for k, d in example.items() if k.kind != "NebulaModel"}

    plan = _applied(store, kept, SOURCE)

    models = {k for k in example if k.kind == "NebulaModel"}
    assert set(plan.prune) == models
    assert k8s.objects("NebulaModel") == {}
    assert ResourceKey("NebulaService", "default", "by-hand") in k8s.objects("NebulaService")
    assert set(store.inventory(SOURCE)) == set(kept)


def test_a_prune_of_an_object_already_gone_or_taken_over_deletes_nothing(
    k8s: emulator.Cluster,
    store: kubernetes_store.KubernetesStore,
    example: dict[ResourceKey, Desired],
) -> None:
    _applied(store, {NODE: example[NODE], SERVICE: example[SERVICE]}, SOURCE)
    # Relabelled after the inventory was taken: no longer this source's to delete.
    k8s.patch(SERVICE, {"metadata": {"labels": {SOURCE_LABEL: "default.other"}}})
    before = len(k8s.requests())

    store.commit(SOURCE, Plan(prune=[SERVICE, ResourceKey("NebulaModel", "default", "gone")]))

    assert SERVICE in k8s.objects("NebulaService")
    assert [method for method, _ in k8s.writes(since=before)] == []


def test_write_status_replaces_the_whole_status(
    k8s: emulator.Cluster,
    store: kubernetes_store.KubernetesStore,
    example: dict[ResourceKey, Desired],
) -> None:
    _applied(store, {SERVICE: example[SERVICE]}, SOURCE)
    store.write_status(SERVICE, {"observedGeneration": 1, "conditions": [], "stale": "yes"})

    store.write_status(SERVICE, {"observedGeneration": 2})

    assert k8s.objects("NebulaService")[SERVICE]["status"] == {"observedGeneration": 2}
    assert store.get(SERVICE) is not None
    assert store.get(SERVICE).status == {"observedGeneration": 2}  # type: ignore[union-attr]


def test_write_status_of_a_missing_object_is_resource_not_found(
    store: kubernetes_store.KubernetesStore,
) -> None:
    with pytest.raises(errors.ResourceNotFound, match="NebulaService/default/postgres"):
        store.write_status(SERVICE, {})


def test_an_object_edited_behind_the_syncs_back_is_drifted_and_the_next_sync_restores_it(
    k8s: emulator.Cluster,
    store: kubernetes_store.KubernetesStore,
    example: dict[ResourceKey, Desired],
) -> None:
    _applied(store, example, SOURCE)
    k8s.patch(SERVICE, {"spec": {"image": "postgres:99"}})

    found = store.inventory(SOURCE, example)
    plan = _applied(store, example, SOURCE)

    assert [key for key, state in found.items() if state.drifted] == [SERVICE]
    assert [d.key for d in plan.update] == [SERVICE]
    assert k8s.objects("NebulaService")[SERVICE]["spec"]["image"] == "postgres:16.4-alpine"


def test_fields_the_api_server_adds_are_not_drift(
    k8s: emulator.Cluster,
    store: kubernetes_store.KubernetesStore,
    example: dict[ResourceKey, Desired],
) -> None:
    _applied(store, example, SOURCE)
    # What a real API server adds: CRD defaults in the spec, and its own metadata.
    k8s.patch(
        NODE,
        {
            "metadata": {"uid": "1234", "generation": 3, "labels": {"team": "ops"}},
            "spec": {"hardware": {"minDisk": "1Ti"}},
        },
    )

    found = store.inventory(SOURCE, example)

    assert not any(state.drifted for state in found.values())


def test_covers_compares_what_the_desired_document_sets_and_only_that() -> None:
    live = {"a": 1, "b": {"c": [1, {"d": 2, "e": 3}]}, "f": "x"}

    assert kubernetes_store.covers(live, {"b": {"c": [1, {"d": 2}]}})
    assert kubernetes_store.covers(live, {"gone": None})  # applying null removes a field
    assert not kubernetes_store.covers(live, {"b": {"c": [1]}})  # a list is whole
    assert not kubernetes_store.covers(live, {"a": True})  # true is not 1
    assert not kubernetes_store.covers(live, {"b": {"c": [1, {"d": 3}]}})
    assert not kubernetes_store.covers(live, {"missing": 1})


def test_get_and_list_return_documents_status_and_source(
    k8s: emulator.Cluster,
    store: kubernetes_store.KubernetesStore,
    example: dict[ResourceKey, Desired],
) -> None:
    _applied(store, example, SOURCE)
    k8s.create(_service("by-hand"))

    stored = store.get(SERVICE)
    listed = store.list("NebulaService")

    assert stored is not None
    assert stored.source == SOURCE and stored.generation == 1
    assert stored.document["spec"] == example[SERVICE].document["spec"]
    assert [s.key.name for s in listed] == sorted(s.key.name for s in listed)
    assert {s.key.name: s.source for s in listed}["by-hand"] is None
    assert store.get(ResourceKey("NebulaService", "default", "nope")) is None


def test_a_sync_request_stamps_the_git_source_annotation(k8s: emulator.Cluster) -> None:
    source = ResourceKey("GitSource", "default", "homelab")
    k8s.create(
        {
            "apiVersion": "nebula.dev/v1alpha1",
            "kind": "GitSource",
            "metadata": {"name": "homelab", "namespace": "default"},
            "spec": {"url": "https://example.com/homelab.git"},
        }
    )
    trigger = kubernetes_store.KubernetesTrigger(k8s.api, clock=lambda: NOW)

    trigger.request(source)

    annotations = k8s.objects("GitSource")[source]["metadata"]["annotations"]
    assert annotations == {REQUESTED_AT: NOW.isoformat()}
    with pytest.raises(errors.ResourceNotFound):
        trigger.request(ResourceKey("GitSource", "default", "nope"))


def test_an_event_names_the_object_its_reason_and_its_message(k8s: emulator.Cluster) -> None:
    source = ResourceKey("GitSource", "default", "homelab")

    for reason in ("Applied", "ValidationFailed"):
        kubernetes_store.post_event(
            k8s.api, key=source, type="Normal", reason=reason, message="x" * 2000, now=NOW
        )

    events = list(k8s.objects("v1/events").values())
    assert [e["reason"] for e in events] == ["Applied", "ValidationFailed"]
    assert events[0]["involvedObject"] == {
        "apiVersion": "nebula.dev/v1alpha1",
        "kind": "GitSource",
        "name": "homelab",
        "namespace": "default",
    }
    assert events[0]["metadata"]["name"].startswith("homelab.")
    assert len(events[0]["message"]) == 1024
    assert datetime.datetime.fromisoformat(events[0]["lastTimestamp"]) == NOW


def test_secrets_are_read_decoded_and_missing_ones_are_none(k8s: emulator.Cluster) -> None:
    core = emulator.kubernetes.client.CoreV1Api(k8s.api)
    core.create_namespaced_secret(
        "default",
        {  # type: ignore[arg-type]  # a dict is validated into V1Secret
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "github-token", "namespace": "default"},
            "data": {"token": "c2VjcmV0"},
        },
    )
    secrets = KubernetesSecrets(k8s.api)

    assert secrets.get("default", "github-token", "token") == "secret"
    assert secrets.get("default", "github-token", "password") is None
    assert secrets.get("default", "missing", "token") is None


def test_an_unreachable_api_server_is_store_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"  # closed once the block ends
    with kubernetes_store.connect(url) as api:
        store = kubernetes_store.KubernetesStore(api, timeout=2)

        with pytest.raises(errors.StoreUnavailable, match="did not answer"):
            store.inventory(SOURCE)


def test_a_forbidden_request_names_the_permission_to_grant(
    k8s: emulator.Cluster, store: kubernetes_store.KubernetesStore
) -> None:
    k8s.react("get", "/apis/nebula.dev/v1alpha1/nebulanodes", 403, "nebulanodes is forbidden")

    with pytest.raises(errors.ConfigurationError) as raised:
        store.inventory(SOURCE)

    assert "'list' on 'nebulanodes.nebula.dev'" in str(raised.value)


def test_an_object_the_api_server_rejects_is_a_permanent_error_naming_it(
    k8s: emulator.Cluster,
    store: kubernetes_store.KubernetesStore,
    example: dict[ResourceKey, Desired],
) -> None:
    # The emulator answers 404 to applying a missing object, so the store creates it.
    path = "/apis/nebula.dev/v1alpha1/namespaces/default/nebulaservices"
    k8s.react("post", path, 422, 'spec.image: Invalid value: "": must not be empty')

    with pytest.raises(errors.PermanentError) as raised:
        _applied(store, {SERVICE: example[SERVICE]}, SOURCE)

    assert not isinstance(raised.value, errors.TransientError)
    assert "rejected NebulaService/default/postgres: spec.image" in str(raised.value)


def test_an_overloaded_api_server_is_store_unavailable_with_its_delay(
    k8s: emulator.Cluster, store: kubernetes_store.KubernetesStore
) -> None:
    k8s.react("get", "/apis/nebula.dev/v1alpha1/nebulanodes", 503, "etcd is down")

    with pytest.raises(errors.StoreUnavailable, match="etcd is down"):
        store.list("NebulaNode")


def _essence(objects: dict[ResourceKey, dict[str, Any]]) -> dict[ResourceKey, object]:
    """What a write can change in an object, without the resourceVersion every write bumps."""
    return {
        key: (obj["spec"], obj["metadata"]["labels"], obj["metadata"]["generation"])
        for key, obj in objects.items()
    }


def _service(name: str) -> dict[str, object]:
    return {
        "apiVersion": "nebula.dev/v1alpha1",
        "kind": "NebulaService",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"image": "busybox:1"},
    }
