"""kmock's Kubernetes emulator, served over HTTP from its own thread, for kopf and store tests.

Used by ``tests/controllers/conftest.py`` (the ``k8s`` fixture) and by
``tests/nebula/test_kubernetes_store.py``. The emulator runs its own event loop, as a real API
server runs its own process: the blocking ``kubernetes`` client of the store can call it from the
test's thread, and kopf can run on the test's loop. Its state is read on its own loop
(:meth:`Cluster.call`), never from another thread while it changes.

What the emulator does not do (see ci-notes.md, section 5): no schema validation, no
server-side apply semantics (an apply is a merge, and a missing object answers 404), no label
selectors, no status isolation, no ``generateName``. :class:`Emulator` adds resourceVersion,
uid and generation, which kopf and the reconcilers depend on.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import jsonpatch  # type: ignore[import-untyped]
import kmock
import kubernetes.client

from nebula.resources import GROUP, KINDS, VERSION, ResourceKey
from nebula.store import kubernetes as kubernetes_store

T = TypeVar("T")
VERBS = {"get", "list", "watch", "create", "patch", "update", "delete"}
WRITES = {"POST", "PUT", "PATCH", "DELETE"}


class Emulator(kmock.KubernetesEmulator):
    """kmock's emulator, closer to an API server where the operator depends on it.

    - A create answers 201: the kubernetes client (37) reads the body of a custom-object create
      only from a 201 (kmock answers 200, and the client returns None).
    - Every write stamps a new ``resourceVersion``: kopf adds its finalizer with a JSON patch
      that first tests the resourceVersion, which fails on an object without one; a failed
      test answers 422 (kmock: 500), as kopf expects.
    - Creates get a ``uid`` and ``generation`` 1; a patch that changes the spec (outside the
      status subresource) increments ``generation``, so ``observedGeneration`` is exercised.
    """

    _versions = itertools.count(1)

    async def _handle(self, request: kmock.Request) -> Any:
        self._stamp(request)
        try:
            return await super()._handle(request)
        # A JSON patch whose test failed (kopf's resourceVersion check lost a race): the API
        # server answers 422 and kopf tries again with a fresh object; a 500 would make kopf
        # repeat the same stale patch for a minute.
        except jsonpatch.JsonPatchException as error:
            raise kmock.KubernetesError(status=422, reason="Invalid", message=str(error)) from None

    async def _serve_create(self, request: kmock.Request) -> kmock.Payload:
        return kmock.Response(status=201, payload=await super()._serve_create(request))

    def _stamp(self, request: kmock.Request) -> None:
        # The body is stamped before the emulator stores it (no await in between: the
        # emulator's lock cannot change hands, so the object read here is the one patched).
        version = str(next(self._versions))
        if request.resource is None:
            return
        if request.action == kmock.action.CREATE and isinstance(request.data, dict):
            metadata = request.data.setdefault("metadata", {})
            metadata.update(resourceVersion=version, uid=str(uuid.uuid4()), generation=1)
        elif request.action == kmock.action.UPDATE and request.name is not None:
            key = (request.resource, request.namespace, request.name)
            if key not in self.objects or self.objects[key].deleted:
                return  # answered 404 by the emulator
            current = self.objects[key].raw
            generation = int(current.get("metadata", {}).get("generation") or 0)
            if request.subresource != "status" and _changes_spec(current, request.data):
                generation += 1
            stamps = {"resourceVersion": version, "generation": generation}
            if isinstance(request.data, dict):
                request.data.setdefault("metadata", {}).update(stamps)
            elif isinstance(request.data, list):
                request.data.extend(
                    {"op": "add", "path": f"/metadata/{field}", "value": value}
                    for field, value in stamps.items()
                )


def _changes_spec(current: Mapping[str, Any], patch: Any) -> bool:
    """Whether a merge patch (or a JSON patch) would change the object's spec."""
    if isinstance(patch, list):
        return any(str(op.get("path", "")).startswith("/spec") for op in patch)
    if not isinstance(patch, dict) or "spec" not in patch:
        return False
    return not kubernetes_store.covers(current.get("spec") or {}, patch["spec"])


def declare(emulator: kmock.KubernetesEmulator) -> None:
    """The resources the operator needs: namespaces (kopf waits for them, even cluster-wide),
    events, secrets, nodes (the NebulaNode daemon labels them), CRDs, and every nebula.dev
    kind with its status subresource."""
    core = {"namespaces": ("Namespace", False), "events": ("Event", True)}
    core["secrets"] = ("Secret", True)
    core["nodes"] = ("Node", False)
    for plural, (kind, namespaced) in core.items():
        emulator.resources[f"v1/{plural}"] = kmock.ResourceInfo(
            kind=kind, namespaced=namespaced, verbs=VERBS
        )
    emulator.resources["apiextensions.k8s.io/v1/customresourcedefinitions"] = kmock.ResourceInfo(
        kind="CustomResourceDefinition", namespaced=False, verbs=VERBS
    )
    for kind, cls in KINDS.items():
        emulator.resources[f"{GROUP}/{VERSION}/{cls.info.plural}"] = kmock.ResourceInfo(
            kind=kind,
            namespaced=cls.info.scope == "Namespaced",
            verbs=VERBS,
            subresources={"status"},
        )


class Cluster:
    """The emulator, its URL, and a client for it."""

    def __init__(self, emulator: Emulator, loop: asyncio.AbstractEventLoop, url: str) -> None:
        self.emulator = emulator
        self.url = url
        self.api = kubernetes.client.ApiClient(kubernetes.client.Configuration(host=url))
        self.objects_api = kubernetes.client.CustomObjectsApi(self.api)
        self._loop = loop

    def call(self, fn: Callable[[Emulator], T]) -> T:
        """Runs ``fn`` on the emulator's loop, where its state is safe to read and change."""

        async def run() -> T:
            return fn(self.emulator)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=10)

    def objects(self, kind: str) -> dict[ResourceKey, dict[str, Any]]:
        """A copy of every existing object of a nebula.dev kind (or ``v1/<plural>``)."""
        cls = KINDS.get(kind)
        resource = f"{GROUP}/{VERSION}/{cls.info.plural}" if cls else kind

        def read(emulator: Emulator) -> dict[ResourceKey, dict[str, Any]]:
            return {
                ResourceKey(kind, namespace, name): copy.deepcopy(obj.raw)
                for (found, namespace, name), obj in emulator.objects.items()
                if found == resource and not obj.deleted
            }

        return self.call(read)

    def history(self, kind: str, namespace: str | None, name: str) -> list[dict[str, Any]]:
        """Every version an object had, oldest first (deletions left out)."""
        resource = f"{GROUP}/{VERSION}/{KINDS[kind].info.plural}"
        return self.call(
            lambda emulator: [
                copy.deepcopy(version.raw)
                for version in emulator.objects[resource, namespace, name].history
                if version is not None
            ]
        )

    def requests(self) -> list[tuple[str, str, Any]]:
        """Every request served so far: method, path and decoded body."""
        return self.call(
            lambda emulator: [
                # kmock's method is an enum (Method.POST); its name is the HTTP verb.
                (
                    str(getattr(r.method, "name", r.method)).upper(),
                    r.url.path,
                    copy.deepcopy(r.data),
                )
                for r in emulator
            ]
        )

    def writes(self, *, since: int = 0) -> list[tuple[str, str]]:
        """The writes to nebula.dev objects among the requests from index ``since`` on."""
        return [
            (method, path)
            for method, path, _ in self.requests()[since:]
            if method in WRITES and path.startswith(f"/apis/{GROUP}/")
        ]

    def react(self, method: str, path: str, status: int, message: str) -> None:
        """Answers every ``method`` on ``path`` with an error Status from now on.

        The emulator still applies a write it answers with an error: check the answer, not
        the state.
        """
        body = {
            "apiVersion": "v1",
            "kind": "Status",
            "status": "Failure",
            "code": status,
            "message": message,
        }

        def add(emulator: Emulator) -> None:
            emulator[f"{method.lower()} {path}"] << kmock.Response(status=status, payload=body)

        self.call(add)

    def create(self, document: Mapping[str, Any]) -> None:
        """Creates a nebula.dev object through the API, as ``kubectl create`` would."""
        kind = KINDS[document["kind"]].info
        namespace = document["metadata"].get("namespace")
        if namespace:
            self.objects_api.create_namespaced_custom_object(
                GROUP, VERSION, namespace, kind.plural, dict(document)
            )
        else:
            self.objects_api.create_cluster_custom_object(
                GROUP, VERSION, kind.plural, dict(document)
            )

    def patch(self, key: ResourceKey, patch: Mapping[str, Any]) -> None:
        """Merge-patches an object through the API, as ``kubectl patch`` or an edit would."""
        plural = KINDS[key.kind].info.plural
        if key.namespace:
            self.objects_api.patch_namespaced_custom_object(
                GROUP, VERSION, key.namespace, plural, key.name, dict(patch)
            )
        else:
            self.objects_api.patch_cluster_custom_object(
                GROUP, VERSION, plural, key.name, dict(patch)
            )

    def delete(self, key: ResourceKey) -> None:
        """Deletes a namespaced nebula.dev object through the API, as ``kubectl delete`` would:
        with finalizers, it only gets a deletionTimestamp until they are removed."""
        plural = KINDS[key.kind].info.plural
        assert key.namespace is not None
        self.objects_api.delete_namespaced_custom_object(
            GROUP, VERSION, key.namespace, plural, key.name
        )


@contextlib.contextmanager
def serve() -> Iterator[Cluster]:
    """An emulator with every resource declared, served on a random local port until exit."""
    started = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        try:
            async with Emulator() as emulator, kmock.Server(emulator) as server:
                declare(emulator)
                stop = asyncio.Event()
                box.update(
                    emulator=emulator,
                    loop=asyncio.get_running_loop(),
                    url=str(server.url).rstrip("/"),
                    stop=stop,
                )
                started.set()
                await stop.wait()
        except BaseException as error:
            box["error"] = error
            raise
        finally:
            started.set()

    thread = threading.Thread(target=asyncio.run, args=(main(),), name="kmock", daemon=True)
    thread.start()
    started.wait(timeout=10)
    if "url" not in box:
        raise RuntimeError(f"the emulator did not start: {box.get('error')!r}")
    cluster = Cluster(box["emulator"], box["loop"], box["url"])
    try:
        yield cluster
    finally:
        cluster.api.close()
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(timeout=10)
