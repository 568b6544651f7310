"""Reading secrets by reference: resources name a Secret and a key, never hold the value.

Two sources of values, one interface: Kubernetes Secrets (on k3s) and, in the embedded runtime,
environment variables named ``NEBULA_SECRET_<NAME>_<KEY>``. Values are returned to the caller
and never logged or stored.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Protocol

__all__ = ["EnvironmentSecrets", "Secrets", "environment_variable"]


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
