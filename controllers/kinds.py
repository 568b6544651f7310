"""Every kind a runtime reconciles, in one list: both runtimes loop over :data:`KINDS`.

A new kind is a module in ``controllers/`` with a :class:`~controllers.reconciling.Kind`, one
line here, and its tests; neither runtime changes. The order is the order objects are first
looked at when a runtime starts (sources first: they make the others).
"""

from __future__ import annotations

from typing import Any

from controllers import bot_config, declared, git_source, nebula_node, reconciling

__all__ = ["KINDS", "RUN", "Factory", "build"]

Factory = type[reconciling.Kind[Any, Any, Any]]
"""A kind's class: built once per runtime with the runtime's services (``Kind(services)``)."""

KINDS: tuple[Factory, ...] = (
    git_source.GitSourceKind,
    nebula_node.NebulaNodeKind,
    bot_config.BotConfigKind,
    # Checked and stored, not run yet (each says so in its status): until their reconcilers.
    declared.NebulaServiceKind,
    declared.NebulaModelKind,
    declared.ComfyWorkflowKind,
    declared.PipelineKind,
)
"""Every kind, with what reconciles it."""

RUN: frozenset[str] = frozenset(
    kind.model.__name__ for kind in KINDS if not issubclass(kind, declared.DeclaredKind)
)
"""The kinds whose objects something runs on the machines (the others are only checked)."""


def build(
    services: reconciling.Services,
    kinds: tuple[Factory, ...] = KINDS,
) -> dict[str, reconciling.Kind[Any, Any, Any]]:
    """Each kind of ``kinds`` built over ``services``, by kind name (``GitSource``)."""
    built = [make(services) for make in kinds]
    return {kind.model.__name__: kind for kind in built}
