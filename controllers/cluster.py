"""The change requests of a GitSource on a cluster: ``nebula serve`` and the bots on k3s.

The GitSource is read from the cluster's store as it is declared now; its mirror for change
branches lives under the process's state folder. ``controllers.local`` is the same for the
embedded runtime.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable

from controllers import embedded, git_source
from nebula import errors
from nebula.changes import ChangeService
from nebula.resources import ResourceKey
from nebula.resources.git_source import GitSource
from nebula.secrets import Secrets
from nebula.sources import Mirror
from nebula.store import ResourceStore

__all__ = ["change_service", "source_key"]


def source_key(text: str, *, option: str = "--changes-source") -> ResourceKey:
    """The GitSource ``NAMESPACE/NAME`` names; ConfigurationError (naming ``option``) otherwise."""
    namespace, slash, name = text.partition("/")
    if not slash or not namespace or not name or "/" in name:
        raise errors.ConfigurationError(
            f"{option} {text!r}: expected NAMESPACE/NAME of a GitSource"
        )
    return ResourceKey("GitSource", namespace, name)


def change_service(
    store: ResourceStore,
    database_url: str,
    key: ResourceKey,
    *,
    secrets: Secrets,
    state_dir: pathlib.Path,
    merged: Callable[[GitSource], None] | None = None,
) -> ChangeService:
    """The change requests of the GitSource ``key``, as the cluster declares it now.

    ``merged`` hears of each merge (``nebula serve`` asks the operator for a sync). Raises
    ResourceNotFound when the cluster has no such GitSource, and ConfigurationError when it
    follows a tag or a commit (nothing to merge into).
    """
    stored = store.get(key)
    if stored is None:
        raise errors.ResourceNotFound(f"the cluster has no {key} to take change requests for")
    source = GitSource.model_validate(embedded.resource_of(stored))
    return ChangeService(
        conninfo=database_url,
        source=source,
        mirror=Mirror(state_dir / "changes" / f"{key.namespace}.{key.name}.git"),
        credentials=git_source.credentials(source, secrets),
        merged=merged,
    )
