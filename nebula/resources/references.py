"""Checks across a whole desired set: every name a resource refers to must exist in the set.

Pure data, no I/O. Called by the manifest loader after each resource passed its own checks; a
reference to something that is not declared is an error in the referring resource, at the field
that names it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Set

from nebula.resources import base
from nebula.resources.comfy_workflow import ComfyWorkflow
from nebula.resources.nebula_model import NebulaModel
from nebula.resources.nebula_service import NebulaService
from nebula.resources.pipeline import Pipeline, Step

__all__ = ["check"]

Resources = Mapping[base.ResourceKey, base.Resource]


def check(
    resources: Resources,
    *,
    declared: Set[base.ResourceKey] = frozenset(),
    complete: bool = True,
) -> Iterator[tuple[base.ResourceKey, base.Issue]]:
    """Every dangling reference, as the referring resource's key and the issue at its field.

    ``declared`` names resources that exist but are not in ``resources`` (they failed their own
    checks); references to them are not dangling. ``complete`` is False when part of the set
    could not be read (a file that did not parse): then no name is reported as missing, since
    it may be declared there; what a found resource says of the reference is still checked
    (an ollama model where a ComfyUI one is needed, a parameter a workflow does not expose).
    """
    scopes: dict[str | None, _Scope] = {}
    for key, resource in resources.items():
        # Only these kinds refer to others; nodes, bot configs and sources refer to nothing.
        if not isinstance(resource, _REFERRING):
            continue
        namespace = key.namespace
        scope = scopes.get(namespace) or scopes.setdefault(
            namespace, _Scope(resources, declared, namespace, complete)
        )
        for issue in scope.references_of(resource):
            yield key, issue


_REFERRING = (NebulaService, NebulaModel, ComfyWorkflow, Pipeline)


@dataclasses.dataclass(frozen=True)
class _Scope:
    """Looks names up as the referring resource sees them: in its namespace, or cluster-wide."""

    resources: Resources
    declared: Set[base.ResourceKey]
    namespace: str | None
    # False: a name not found may be declared in a file that could not be read.
    complete: bool

    def exists(self, key: base.ResourceKey) -> bool:
        return key in self.resources or key in self.declared or not self.complete

    def references_of(self, resource: base.Resource) -> Iterator[base.Issue]:
        if isinstance(resource, NebulaService):
            placement = resource.spec.placement
            if placement.node:
                yield from self.node(placement.node, ("spec", "placement", "node"))
            for index, name in enumerate(resource.spec.uses):
                yield from self.named("NebulaService", name, ("spec", "uses", index))
        elif isinstance(resource, NebulaModel):
            for index, name in enumerate(resource.spec.placement.nodes):
                yield from self.node(name, ("spec", "placement", "nodes", index))
        elif isinstance(resource, ComfyWorkflow):
            yield from self.named("NebulaService", resource.spec.service, ("spec", "service"))
            for index, name in enumerate(resource.spec.models):
                yield from self.model(name, "comfyui", ("spec", "models", index))
        elif isinstance(resource, Pipeline):
            for index, step in enumerate(resource.spec.steps):
                for issue in self.step(step):
                    yield issue.under("spec", "steps", index)

    def step(self, step: Step) -> Iterator[base.Issue]:
        if step.llm:
            yield from self.model(step.llm.model, "ollama", ("llm", "model"))
        if step.comfyui:
            name = step.comfyui.workflow
            workflow = self.resources.get(base.ResourceKey("ComfyWorkflow", self.namespace, name))
            if not isinstance(workflow, ComfyWorkflow):
                yield from self.named("ComfyWorkflow", name, ("comfyui", "workflow"))
            else:
                exposed = {p.name for p in workflow.spec.parameters}
                for parameter in step.comfyui.parameters:
                    if parameter not in exposed:
                        yield base.Issue(
                            ("comfyui", "parameters", parameter),
                            f"ComfyWorkflow {name!r} exposes no parameter {parameter!r} "
                            f"(it exposes: {', '.join(sorted(exposed)) or 'none'})",
                        )
        if step.post:
            yield from self.named("BotConfig", step.post.bot_config, ("post", "botConfig"))
        if step.deploy:
            yield from self.named("NebulaService", step.deploy.service, ("deploy", "service"))

    def named(self, kind: str, name: str, path: base.FieldPath) -> Iterator[base.Issue]:
        if not self.exists(base.ResourceKey(kind, self.namespace, name)):
            yield base.Issue(path, f"no {kind} named {name!r} in namespace {self.namespace!r}")

    def node(self, name: str, path: base.FieldPath) -> Iterator[base.Issue]:
        if not self.exists(base.ResourceKey("NebulaNode", None, name)):
            yield base.Issue(path, f"no NebulaNode named {name!r}")

    def model(self, name: str, provider: str, path: base.FieldPath) -> Iterator[base.Issue]:
        model = self.resources.get(base.ResourceKey("NebulaModel", self.namespace, name))
        if not isinstance(model, NebulaModel):
            yield from self.named("NebulaModel", name, path)
        elif model.spec.provider != provider:
            yield base.Issue(
                path, f"NebulaModel {name!r} is a {model.spec.provider} model, not {provider}"
            )
