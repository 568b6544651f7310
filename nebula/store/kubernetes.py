"""The Kubernetes resource store: ``nebula.dev`` custom resources through the API server (k3s).

Used by the kopf operator (``controllers/handlers.py``) where :mod:`nebula.store.postgres` serves
the embedded runtime, with the same behaviour wherever the API server allows it:

- **Writes** are server-side applies under the field manager :data:`FIELD_MANAGER`. The API
  server has no transactions, so a commit is not atomic: each write is idempotent instead, and a
  sync that failed half-way is finished by the next one.
- **The inventory** is the label :data:`~nebula.store.base.SOURCE_LABEL`; the hash of the
  document last applied is kept in the annotation :data:`APPLIED_HASH`.
- **Drift** is "the live object no longer holds what was applied": every field the desired
  document sets must still have that value (:func:`covers`). Fields the API server added
  (defaults, metadata) are not drift. It needs the desired documents, which the sync hands to
  :meth:`KubernetesStore.inventory`.
- **Errors** of the client become :mod:`nebula.errors`: no answer, 5xx and 429 are
  :class:`~nebula.errors.StoreUnavailable` (retry), 403 a
  :class:`~nebula.errors.ConfigurationError` naming the RBAC permission to grant, 422 a
  :class:`~nebula.errors.PermanentError` naming the object the API server refused.

Also here, because they speak to the same API server: :class:`KubernetesTrigger` (asks the
operator for a sync now), :func:`post_event` (core/v1 Events), and :func:`read_node_labels` with
:func:`label_node` (the labels of core/v1 Nodes, and the annotation naming those declared, which
the NebulaNode daemon keeps). This module
never decides what to apply or which labels a Node gets, never parses specs into models, never
imports kopf and never logs a Secret's value.
"""

from __future__ import annotations

import base64
import builtins
import collections
import contextlib
import copy
import datetime
import functools
import json
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal, TypeVar

import kubernetes.client
import kubernetes.client.exceptions
import kubernetes.config
import urllib3.exceptions

from nebula import errors
from nebula.resources import GROUP, KINDS, VERSION, ObjectMeta, ResourceKey
from nebula.store import base
from nebula.sync import triggers

__all__ = [
    "APPLIED_HASH",
    "FIELD_MANAGER",
    "KubernetesStore",
    "KubernetesTrigger",
    "NodeLabels",
    "api_errors",
    "connect",
    "covers",
    "label_node",
    "post_event",
    "read_node_labels",
    "read_secret",
    "resource_document",
]

APPLIED_HASH = "nebula.dev/applied-hash"
"""Annotation holding the hash of the document a sync applied (:func:`base.content_hash`)."""

FIELD_MANAGER = "nebula"
"""The field manager of every server-side apply the sync makes."""

_APPLY = "application/apply-patch+yaml"  # the body is JSON, which is YAML too
_JSON_PATCH = "application/json-patch+json"
_MERGE_PATCH = "application/merge-patch+json"
_TIMEOUT = 30.0  # seconds; a request that hangs longer is an unavailable API server
_EVENT_MESSAGE_LIMIT = 1024
_METADATA = frozenset(field.alias or name for name, field in ObjectMeta.model_fields.items())

T = TypeVar("T")


def connect(server: str | None = None) -> kubernetes.client.ApiClient:
    """A client for the API server: ``server`` as given (no credentials), else in-cluster, else
    the kubeconfig (``$KUBECONFIG``, ``~/.kube/config``).

    Raises :class:`~nebula.errors.ConfigurationError` when no configuration is found. The caller
    closes the client.
    """
    configuration = kubernetes.client.Configuration()
    if server:
        configuration.host = server.rstrip("/")
        return kubernetes.client.ApiClient(configuration)
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    # Not in a pod: the kubeconfig of whoever runs the command.
    except kubernetes.config.ConfigException:
        try:
            kubernetes.config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        # Neither a service account nor a kubeconfig: nothing says where the cluster is.
        except (kubernetes.config.ConfigException, OSError) as error:
            raise errors.ConfigurationError(
                f"no Kubernetes API server: not in a pod and no usable kubeconfig ({error})"
            ) from None
    return kubernetes.client.ApiClient(configuration)


def covers(live: Any, wanted: Any) -> bool:
    """True when every field ``wanted`` sets has the same value in ``live``.

    Mappings in ``live`` may hold more keys (defaults, server metadata, our label); a key
    ``wanted`` sets to null may be absent (applying null removes it). Lists must have the same
    length and match item by item. Iterative: a deep document cannot exhaust the stack.
    """
    stack: list[tuple[Any, Any]] = [(live, wanted)]
    while stack:
        have, want = stack.pop()
        if isinstance(want, Mapping):
            if not isinstance(have, Mapping):
                return False
            for key, value in want.items():
                if key in have:
                    stack.append((have[key], value))
                elif value is not None:
                    return False
        elif isinstance(want, list):
            if not isinstance(have, list) or len(have) != len(want):
                return False
            stack.extend(zip(have, want, strict=True))
        # bool is an int in Python; in JSON true and 1 differ.
        elif have != want or isinstance(have, bool) != isinstance(want, bool):
            return False
    return True


def resource_document(raw: Mapping[str, Any]) -> dict[str, Any]:
    """An object as the models read it: apiVersion, kind, spec, and the metadata ObjectMeta
    declares (the API server adds fields the models do not know, such as ``ownerReferences``).
    """
    metadata = raw.get("metadata") or {}
    return {
        "apiVersion": raw.get("apiVersion"),
        "kind": raw.get("kind"),
        "metadata": {k: copy.deepcopy(v) for k, v in metadata.items() if k in _METADATA},
        "spec": copy.deepcopy(raw.get("spec") or {}),
    }


# --- Errors ----------------------------------------------------------------------------------


@contextlib.contextmanager
def api_errors(verb: str, resource: str, what: str) -> Iterator[None]:
    """Turns the client's errors into :mod:`nebula.errors` for one request.

    ``verb`` and ``resource`` name the RBAC permission the request needs (``patch``,
    ``nebulanodes.nebula.dev``); ``what`` names the object for messages. 404 is left to the
    caller as :class:`kubernetes.client.exceptions.NotFoundException`: it means something else
    for each request (gone, not created yet, CRD not installed).
    """
    try:
        yield
    # Not found: the caller knows what that means here.
    except kubernetes.client.exceptions.NotFoundException:
        raise
    # The API server answered with an error status.
    except kubernetes.client.exceptions.ApiException as error:
        raise _translated(error, verb, resource, what) from None
    # No answer at all: refused, reset or timed out connections.
    except urllib3.exceptions.HTTPError as error:
        raise errors.StoreUnavailable(
            f"the Kubernetes API server did not answer ({verb} {what}): {error}"
        ) from None


class _Conflict(errors.TransientError):
    """409: the object exists already, or changed since it was read."""


def _translated(
    error: kubernetes.client.exceptions.ApiException, verb: str, resource: str, what: str
) -> errors.NebulaError:
    status = int(error.status or 0)
    message = _message(error)
    if status == 0 or status >= 500 or status == 429:
        delay = _retry_after(error) or 10.0
        return errors.StoreUnavailable(
            f"the Kubernetes API server failed to {verb} {what} ({status or 'no answer'}): "
            f"{message}",
            delay=delay,
        )
    if status == 401:
        return errors.ConfigurationError(
            f"the Kubernetes API server refused the operator's credentials ({verb} {what})"
        )
    if status == 403:
        return errors.ConfigurationError(
            f"forbidden to {verb} {what}: grant the operator's service account the verb "
            f"{verb!r} on {resource!r} in its ClusterRole ({message})"
        )
    if status == 409:
        # An object created meanwhile, or changed since it was read: a race the next try settles.
        return _Conflict(f"conflict on {what} ({verb}): {message}", delay=1.0)
    if status == 422:
        return errors.PermanentError(f"the API server rejected {what}: {message}")
    return errors.PermanentError(f"the API server refused to {verb} {what} ({status}): {message}")


def _message(error: kubernetes.client.exceptions.ApiException) -> str:
    """The ``message`` of the Status the API server answered, else the HTTP reason."""
    try:
        body = json.loads(error.body or "")
    # Not a JSON Status (a proxy's HTML page, an empty body).
    except ValueError:
        return str(error.reason or "")
    return str(body.get("message") or error.reason or "") if isinstance(body, dict) else ""


def _retry_after(error: kubernetes.client.exceptions.ApiException) -> float | None:
    value = (error.headers or {}).get("Retry-After")
    try:
        return float(value) if value is not None else None
    # An HTTP date instead of seconds: fall back to the default delay.
    except ValueError:
        return None


def _call(call: Callable[[], T], *, verb: str, resource: str, what: str) -> T | None:
    """Runs one request; None when the API server answers 404."""
    try:
        with api_errors(verb, resource, what):
            return call()
    # The object (or its namespace, or its CRD) does not exist.
    except kubernetes.client.exceptions.NotFoundException:
        return None


def _as_object(raw: object) -> dict[str, Any]:
    # The client types custom objects as `object`; they are decoded JSON objects.
    if not isinstance(raw, dict):
        raise errors.StoreUnavailable(f"the Kubernetes API server answered {type(raw).__name__}")
    return raw


# --- The store -------------------------------------------------------------------------------


class _Kind:
    """Where a kind's objects live in the API: plural, scope, RBAC resource name."""

    def __init__(self, kind: str) -> None:
        info = KINDS[kind].info
        self.kind = kind
        self.plural = info.plural
        self.namespaced = info.scope == "Namespaced"
        self.resource = f"{info.plural}.{GROUP}"


class KubernetesStore:
    """The ``nebula.dev`` custom resources of one cluster; safe to share between threads."""

    def __init__(self, api_client: kubernetes.client.ApiClient, *, timeout: float = _TIMEOUT):
        self._api = kubernetes.client.CustomObjectsApi(api_client)
        self._timeout = timeout

    # --- reading ---

    def inventory(
        self, source: str, desired: Mapping[ResourceKey, base.Desired] | None = None
    ) -> dict[ResourceKey, base.AppliedState]:
        """Every object ``source`` applied, with its applied hash and whether it drifted.

        Drift is judged only for objects whose applied hash equals their ``desired`` one (an
        object about to be updated anyway needs no verdict): drifted when the live object no
        longer :func:`covers` the desired document. Without ``desired``, nothing is drifted.
        """
        wanted = desired or {}
        found: dict[ResourceKey, base.AppliedState] = {}
        for kind in KINDS:
            for raw in self._list(_Kind(kind), selector=f"{base.SOURCE_LABEL}={source}"):
                metadata = raw.get("metadata") or {}
                if (metadata.get("labels") or {}).get(base.SOURCE_LABEL) != source:
                    continue  # a label selector the server ignored (or a race with a relabel)
                key = ResourceKey(kind, metadata.get("namespace"), metadata["name"])
                applied = (metadata.get("annotations") or {}).get(APPLIED_HASH)
                target = wanted.get(key)
                drifted = (
                    target is not None
                    and applied == target.hash
                    and not covers(raw, target.document)
                )
                found[key] = base.AppliedState(hash=applied, drifted=drifted)
        return found

    def get(self, key: ResourceKey) -> base.StoredObject | None:
        """One object, or None when it does not exist."""
        raw = self._read(_Kind(key.kind), key)
        return _stored(key.kind, raw) if raw is not None else None

    def list(self, kind: str) -> list[base.StoredObject]:
        """Every object of a kind in every namespace, sorted by namespace and name."""
        stored = [_stored(kind, raw) for raw in self._list(_Kind(kind))]
        return sorted(stored, key=lambda s: (s.key.namespace or "", s.key.name))

    # --- writing ---

    def commit(self, source: str, plan: base.Plan) -> None:
        """Carries a plan out: applies in dependency order, then prunes.

        Not atomic (the API server has no transactions); every step is idempotent, so running
        the plan again after a failure finishes it. Raises
        :class:`~nebula.errors.OwnershipConflict` before writing anything when an object
        belongs to another source; objects without the label are taken over.
        """
        writes, prunes = plan.ordered()
        if not writes and not prunes:
            return
        self._refuse_takeovers(source, writes)
        for desired in writes:
            self._apply(source, desired)
        for key in prunes:
            self._prune(source, key)

    def write_status(self, key: ResourceKey, status: Mapping[str, Any]) -> None:
        """Replaces the status (the status subresource): keys not in ``status`` are removed.

        Raises :class:`~nebula.errors.ResourceNotFound` when the object is gone.
        """
        kind = _Kind(key.kind)
        # A JSON patch replaces the whole status; a merge patch would keep stale keys.
        body = [{"op": "add", "path": "/status", "value": dict(status)}]
        options: dict[str, Any] = {"_content_type": _JSON_PATCH, "_request_timeout": self._timeout}
        call: Callable[[], object]
        if kind.namespaced:
            call = functools.partial(
                self._api.patch_namespaced_custom_object_status,
                GROUP, VERSION, key.namespace or "", kind.plural, key.name, body, **options,
            )  # fmt: skip
        else:
            call = functools.partial(
                self._api.patch_cluster_custom_object_status,
                GROUP, VERSION, kind.plural, key.name, body, **options,
            )  # fmt: skip
        if _call(call, verb="patch", resource=f"{kind.resource}/status", what=str(key)) is None:
            raise errors.ResourceNotFound(f"{key} does not exist")

    # --- steps of a commit ---

    def _refuse_takeovers(self, source: str, writes: Sequence[base.Desired]) -> None:
        """One list per kind written: the objects labelled with another source."""
        by_kind: dict[str, set[ResourceKey]] = collections.defaultdict(set)
        for desired in writes:
            by_kind[desired.key.kind].add(desired.key)
        taken: list[tuple[ResourceKey, str]] = []
        for kind, keys in by_kind.items():
            selector = f"{base.SOURCE_LABEL},{base.SOURCE_LABEL}!={source}"
            for raw in self._list(_Kind(kind), selector=selector):
                metadata = raw.get("metadata") or {}
                owner = (metadata.get("labels") or {}).get(base.SOURCE_LABEL)
                key = ResourceKey(kind, metadata.get("namespace"), metadata["name"])
                if owner and owner != source and key in keys:
                    taken.append((key, owner))
        if taken:
            listed = ", ".join(f"{key} ({owner})" for key, owner in sorted(taken)[:5])
            raise errors.OwnershipConflict(
                f"{len(taken)} object(s) belong to another GitSource: {listed}"
            )

    def _apply(self, source: str, desired: base.Desired) -> None:
        """Server-side apply of one object, created when the API server will not apply it."""
        kind = _Kind(desired.key.kind)
        document = _labelled(desired, source)
        key = desired.key
        if self._write(kind, key, document, apply=True) is not None:
            return
        # A real API server creates a missing object on apply; the emulator the tests use (and
        # an aggregated API) answers 404 instead. Create it, and if someone else did in the
        # meantime, apply once more.
        try:
            created = self._write(kind, key, document, apply=False)
        # Created between the apply and the create: applying now updates it.
        except _Conflict:
            created = self._write(kind, key, document, apply=True)
        if created is None:
            raise errors.PermanentError(
                f"cannot create {key}: its namespace or the CRD {kind.resource} does not exist"
            )

    def _write(
        self, kind: _Kind, key: ResourceKey, document: dict[str, Any], *, apply: bool
    ) -> object | None:
        """One apply (PATCH) or create (POST); None on 404."""
        options: dict[str, Any] = {
            "field_manager": FIELD_MANAGER,
            "_request_timeout": self._timeout,
        }
        namespace = key.namespace or ""
        call: Callable[[], object]
        if apply:
            options |= {"force": True, "_content_type": _APPLY}
            if kind.namespaced:
                call = functools.partial(
                    self._api.patch_namespaced_custom_object,
                    GROUP, VERSION, namespace, kind.plural, key.name, document, **options,
                )  # fmt: skip
            else:
                call = functools.partial(
                    self._api.patch_cluster_custom_object,
                    GROUP, VERSION, kind.plural, key.name, document, **options,
                )  # fmt: skip
        elif kind.namespaced:
            call = functools.partial(
                self._api.create_namespaced_custom_object,
                GROUP, VERSION, namespace, kind.plural, document, **options,
            )  # fmt: skip
        else:
            call = functools.partial(
                self._api.create_cluster_custom_object,
                GROUP, VERSION, kind.plural, document, **options,
            )  # fmt: skip
        verb = "patch" if apply else "create"
        return _call(call, verb=verb, resource=kind.resource, what=str(key))

    def _prune(self, source: str, key: ResourceKey) -> None:
        """Deletes an object if it still carries ``source``'s label; gone already is fine."""
        kind = _Kind(key.kind)
        raw = self._read(kind, key)
        if raw is None:
            return
        metadata = raw.get("metadata") or {}
        if (metadata.get("labels") or {}).get(base.SOURCE_LABEL) != source:
            return  # relabelled or taken over since the inventory: no longer ours to delete
        # Preconditions make the check and the delete one step on a real API server: if the
        # object changed in between, the delete fails (409) and the next sync looks again.
        preconditions = {
            field: metadata[field] for field in ("uid", "resourceVersion") if metadata.get(field)
        }
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": preconditions}
        options: dict[str, Any] = {"body": body, "_request_timeout": self._timeout}
        call: Callable[[], object]
        if kind.namespaced:
            call = functools.partial(
                self._api.delete_namespaced_custom_object,
                GROUP, VERSION, key.namespace or "", kind.plural, key.name, **options,
            )  # fmt: skip
        else:
            call = functools.partial(
                self._api.delete_cluster_custom_object,
                GROUP, VERSION, kind.plural, key.name, **options,
            )  # fmt: skip
        _call(call, verb="delete", resource=kind.resource, what=str(key))

    # --- requests ---

    def _read(self, kind: _Kind, key: ResourceKey) -> dict[str, Any] | None:
        call: Callable[[], object]
        if kind.namespaced:
            call = functools.partial(
                self._api.get_namespaced_custom_object,
                GROUP, VERSION, key.namespace or "", kind.plural, key.name,
                _request_timeout=self._timeout,
            )  # fmt: skip
        else:
            call = functools.partial(
                self._api.get_cluster_custom_object,
                GROUP, VERSION, kind.plural, key.name, _request_timeout=self._timeout,
            )  # fmt: skip
        raw = _call(call, verb="get", resource=kind.resource, what=str(key))
        return _as_object(raw) if raw is not None else None

    def _list(self, kind: _Kind, *, selector: str | None = None) -> builtins.list[dict[str, Any]]:
        """Every object of a kind in every namespace (for a namespaced kind, too)."""

        call = functools.partial(
            self._api.list_cluster_custom_object,
            GROUP, VERSION, kind.plural, label_selector=selector, _request_timeout=self._timeout,
        )  # fmt: skip
        answer = _call(call, verb="list", resource=kind.resource, what=kind.resource)
        if answer is None:
            raise errors.ConfigurationError(
                f"the API server does not serve {kind.resource}: install the CRDs"
                " (`nebula crds`, then `kubectl apply -f crds/`)"
            )
        items = _as_object(answer).get("items") or []
        return [_as_object(item) for item in items]


def _labelled(desired: base.Desired, source: str) -> dict[str, Any]:
    """The document to apply: the desired one, with the inventory label and the applied hash."""
    document = copy.deepcopy(dict(desired.document))
    metadata = document.setdefault("metadata", {})
    metadata["name"] = desired.key.name
    if desired.key.namespace is not None:
        metadata["namespace"] = desired.key.namespace
    metadata["labels"] = {**(metadata.get("labels") or {}), base.SOURCE_LABEL: source}
    metadata["annotations"] = {**(metadata.get("annotations") or {}), APPLIED_HASH: desired.hash}
    return document


def _stored(kind: str, raw: Mapping[str, Any]) -> base.StoredObject:
    metadata = raw.get("metadata") or {}
    generation = metadata.get("generation")
    return base.StoredObject(
        key=ResourceKey(kind, metadata.get("namespace"), metadata["name"]),
        document=resource_document(raw),
        status=copy.deepcopy(raw.get("status") or {}),
        generation=int(generation) if generation is not None else None,
        source=(metadata.get("labels") or {}).get(base.SOURCE_LABEL),
        version=metadata.get("resourceVersion"),
    )


# --- Secrets ---------------------------------------------------------------------------------


def read_secret(
    api_client: kubernetes.client.ApiClient, namespace: str, name: str, *, timeout: float = _TIMEOUT
) -> dict[str, str] | None:
    """A core/v1 Secret's keys and decoded values, or None when it does not exist.

    ``stringData`` is merged under ``data`` (an API server folds it into ``data``; a Secret
    written to an emulator may still hold it). Never log the result.
    """
    core = kubernetes.client.CoreV1Api(api_client)
    what = f"Secret {namespace}/{name}"
    call = functools.partial(core.read_namespaced_secret, name, namespace, _request_timeout=timeout)
    secret = _call(call, verb="get", resource="secrets", what=what)
    if secret is None:
        return None
    values = dict(secret.string_data or {})
    for key, encoded in (secret.data or {}).items():
        try:
            values[key] = base64.b64decode(encoded).decode()
        # Broken base64, or binary data that is not text: such a key cannot be a credential.
        except ValueError:
            continue
    return values


# --- Nodes ----------------------------------------------------------------------------------


def read_node_labels(
    api_client: kubernetes.client.ApiClient, name: str, *, timeout: float = _TIMEOUT
) -> tuple[dict[str, str], dict[str, str]] | None:
    """The labels and annotations of the core/v1 Node ``name``, or None when there is no such
    Node.

    Needs the RBAC verb ``get`` on ``nodes``.
    """
    core = kubernetes.client.CoreV1Api(api_client)
    call = functools.partial(core.read_node, name, _request_timeout=timeout)
    node = _call(call, verb="get", resource="nodes", what=f"Node {name}")
    if node is None:
        return None
    metadata = node.metadata
    labels = (metadata.labels if metadata else None) or {}
    annotations = (metadata.annotations if metadata else None) or {}
    return dict(labels), dict(annotations)


def label_node(
    api_client: kubernetes.client.ApiClient,
    name: str,
    labels: Mapping[str, str | None],
    *,
    annotations: Mapping[str, str | None] | None = None,
    timeout: float = _TIMEOUT,
) -> None:
    """Sets the given labels (and annotations) of the core/v1 Node ``name`` and removes those
    given as None.

    One merge patch of ``metadata``: every label not named is left as it is, and repeating the
    call changes nothing. Needs the RBAC verb ``patch`` on ``nodes`` (a 403 raises
    :class:`~nebula.errors.ConfigurationError` saying so); raises
    :class:`~nebula.errors.ResourceNotFound` when there is no such Node.
    """
    core = kubernetes.client.CoreV1Api(api_client)
    metadata: dict[str, Any] = {"labels": dict(labels)}
    if annotations:
        metadata["annotations"] = dict(annotations)
    call = functools.partial(
        core.patch_node, name, {"metadata": metadata}, _content_type=_MERGE_PATCH,
        _request_timeout=timeout,
    )  # fmt: skip
    if _call(call, verb="patch", resource="nodes", what=f"Node {name}") is None:
        raise errors.ResourceNotFound(f"Node {name} does not exist")


class NodeLabels:
    """:func:`read_node_labels` and :func:`label_node` over one API client, as the NebulaNode
    reconciler reaches the labels of its k3s Node."""

    def __init__(self, api_client: kubernetes.client.ApiClient) -> None:
        self._api = api_client

    def read(self, name: str) -> tuple[dict[str, str], dict[str, str]] | None:
        """See :func:`read_node_labels`."""
        return read_node_labels(self._api, name)

    def write(
        self,
        name: str,
        labels: Mapping[str, str | None],
        *,
        annotations: Mapping[str, str | None] | None = None,
    ) -> None:
        """See :func:`label_node`."""
        label_node(self._api, name, labels, annotations=annotations)


# --- Triggers and events ---------------------------------------------------------------------


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class KubernetesTrigger:
    """Asks the operator for a sync now: sets the GitSource's ``nebula.dev/requested-at``.

    The webhook and ``nebula sync`` call it on k3s; the operator notices the change of the
    annotation and wakes the source's sync loop.
    """

    def __init__(
        self,
        api_client: kubernetes.client.ApiClient,
        *,
        clock: Callable[[], datetime.datetime] = _utcnow,
        timeout: float = _TIMEOUT,
    ) -> None:
        self._api = kubernetes.client.CustomObjectsApi(api_client)
        self._clock = clock
        self._timeout = timeout

    def request(self, source: ResourceKey) -> None:
        """Stamps the annotation with the current time; raises ResourceNotFound when the
        GitSource does not exist. Repeated requests within the same microsecond merge."""
        kind = _Kind("GitSource")
        stamp = self._clock().isoformat()
        body = {"metadata": {"annotations": {triggers.REQUESTED_AT: stamp}}}
        call = functools.partial(
            self._api.patch_namespaced_custom_object,
            GROUP, VERSION, source.namespace or "default", kind.plural, source.name, body,
            _request_timeout=self._timeout,
        )  # fmt: skip
        if _call(call, verb="patch", resource=kind.resource, what=str(source)) is None:
            raise errors.ResourceNotFound(f"{source} does not exist")


EventType = Literal["Normal", "Warning"]


def post_event(
    api_client: kubernetes.client.ApiClient,
    *,
    key: ResourceKey,
    type: EventType,
    reason: str,
    message: str,
    uid: str | None = None,
    now: datetime.datetime | None = None,
    timeout: float = _TIMEOUT,
) -> None:
    """Creates a core/v1 Event about the object ``key`` (``kubectl describe`` shows it).

    The name is ``<object name>.<random hex>``, made here because not every server honours
    ``generateName``. Events of cluster-scoped objects go to ``default``. Raises the store's
    errors; callers treat a lost event as a lost log line, not as a failed sync.
    """
    namespace = key.namespace or "default"
    stamp = (now or _utcnow()).strftime("%Y-%m-%dT%H:%M:%SZ")
    involved: dict[str, str] = {"apiVersion": f"{GROUP}/{VERSION}", "kind": key.kind}
    involved["name"] = key.name
    if key.namespace:
        involved["namespace"] = key.namespace
    if uid:
        involved["uid"] = uid
    if len(message) > _EVENT_MESSAGE_LIMIT:
        message = message[: _EVENT_MESSAGE_LIMIT - 1] + "…"
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{key.name}.{secrets.token_hex(8)}", "namespace": namespace},
        "involvedObject": involved,
        "type": type,
        "reason": reason,
        "message": message,
        "source": {"component": "nebula-operator"},
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
    core = kubernetes.client.CoreV1Api(api_client)
    call = functools.partial(
        core.create_namespaced_event,
        namespace, body, _request_timeout=timeout,  # type: ignore[arg-type]  # a dict is validated into CoreV1Event
    )  # fmt: skip
    # None: the namespace is gone, and the object with it; there is nobody to tell.
    _call(call, verb="create", resource="events", what=f"an event about {key}")
