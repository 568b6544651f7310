"""Every kind a runtime reconciles, in one list: both runtimes loop over :data:`KINDS`.

A new kind is a module in ``controllers/`` with a :class:`~controllers.reconciling.Kind`, one
line here, and its tests; neither runtime changes. The order is the order objects are first
looked at when a runtime starts (sources first: they make the others).
"""

from __future__ import annotations

from typing import Any

from controllers import bot_config, git_source, nebula_node, reconciling

__all__ = ["KINDS", "Factory", "build"]

Factory = type[reconciling.Kind[Any, Any, Any]]
"""A kind's class: built once per runtime with the runtime's services (``Kind(services)``)."""

KINDS: tuple[Factory, ...] = (
    git_source.GitSourceKind,
    nebula_node.NebulaNodeKind,
    bot_config.BotConfigKind,
)
"""Every kind that has a reconciler; the kinds not listed are stored and shown, not run."""


def build(
    services: reconciling.Services,
    kinds: tuple[Factory, ...] = KINDS,
) -> dict[str, reconciling.Kind[Any, Any, Any]]:
    """Each kind of ``kinds`` built over ``services``, by kind name (``GitSource``)."""
    built = [make(services) for make in kinds]
    return {kind.model.__name__: kind for kind in built}
