"""Reading secrets by reference: resources name a Secret and a key, never hold the value.

Two sources of values, one interface: Kubernetes Secrets (on k3s, :class:`KubernetesSecrets`)
and, in the embedded runtime, environment variables named ``NEBULA_SECRET_<NAME>_<KEY>``
(:class:`EnvironmentSecrets`). Values are returned to the caller and never logged or stored.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import kubernetes.client

__all__ = ["EnvironmentSecrets", "KubernetesSecrets", "Secrets", "environment_variable"]


class Secrets(Protocol):
    """Looks up one key of a named secret."""

    def get(self, namespace: str, name: str, key: str) -> str | None:
        """The value, or None when the secret or the key does not exist."""
        ...


def environment_variable(name: str, key: str) -> str:
    """The variable that holds a secret's key in the embedded runtime.

    >>> environment_variable("discord-bot", "token")
    'NEBULA_SECRET_DISCORD_BOT_TOKEN'
    """
    return "NEBULA_SECRET_" + re.sub(r"[^A-Z0-9]", "_", f"{name}_{key}".upper())


class EnvironmentSecrets:
    """Secrets from the environment (``NEBULA_SECRET_<NAME>_<KEY>``), namespace ignored."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    def get(self, namespace: str, name: str, key: str) -> str | None:
        """The variable's value, or None when it is not set."""
        return self._environ.get(environment_variable(name, key))


class KubernetesSecrets:
    """Secrets from core/v1 Secrets through the API server (the kopf operator)."""

    def __init__(self, api_client: kubernetes.client.ApiClient) -> None:
        self._api_client = api_client

    def get(self, namespace: str, name: str, key: str) -> str | None:
        """The key's decoded value, or None when the Secret or the key does not exist.

        Raises :class:`~nebula.errors.StoreUnavailable` when the API server does not answer
        and :class:`~nebula.errors.ConfigurationError` when RBAC forbids reading Secrets.
        """
        # Imported here: the kubernetes client takes a third of a second to import, and the
        # embedded runtime and the CLI, which never read a Kubernetes Secret, import this module.
        from nebula.store import kubernetes as kubernetes_store

        values = kubernetes_store.read_secret(self._api_client, namespace, name)
        return None if values is None else values.get(key)
