"""``ComfyWorkflow``: a ComfyUI API-format graph, its exposed parameters, the models it needs.

Pure data, no I/O. The graph is kept as ComfyUI writes it (``class_type``, ``inputs``, ``_meta``);
an input that is a two-item list ``[node_id, output_index]`` is a link. The checks here are the
ones that need no ComfyUI server: links point at nodes of the graph, the graph has no cycle, and
every exposed parameter names a real input. Checking node types against ``/object_info`` is the
controller's job.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Annotated, Any, ClassVar, Literal

import pydantic

from nebula.resources import base, conditions, fields

__all__ = [
    "ComfyWorkflow",
    "ComfyWorkflowSpec",
    "ComfyWorkflowStatus",
    "GraphNode",
    "WorkflowParameter",
    "find_cycle",
    "links_of",
]

MAX_NODES = 5000
"""Most nodes one graph may have; real workflows have tens, large ones a few hundred."""
ParameterType = Literal["string", "integer", "number", "boolean", "image"]
_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "image": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


def _is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str | int)
        and not isinstance(value[0], bool)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


def _normalise_graph(value: Any) -> Any:
    """Node ids as text: YAML reads ``4:`` and links written ``[4, 0]`` as numbers."""
    if not isinstance(value, dict):
        return value
    graph = {}
    for node_id, node in value.items():
        if isinstance(node, dict) and isinstance(node.get("inputs"), dict):
            inputs = {
                name: [str(v[0]), v[1]] if _is_link(v) else v for name, v in node["inputs"].items()
            }
            node = {**node, "inputs": inputs}
        graph[str(node_id) if isinstance(node_id, int) else node_id] = node
    return graph


class GraphNode(base.Model):
    """One node of an API-format graph, spelled as ComfyUI spells it."""

    class_type: str = pydantic.Field(alias="class_type", min_length=1)
    """ComfyUI node type, e.g. KSampler."""
    inputs: dict[str, Any] = pydantic.Field(default_factory=dict)
    """Inputs by name; a list [node_id, output_index] links to another node's output."""
    meta: dict[str, Any] | None = pydantic.Field(default=None, alias="_meta")
    """ComfyUI's own notes on the node, such as its title; kept as is."""


Graph = Annotated[
    dict[str, GraphNode],
    pydantic.BeforeValidator(_normalise_graph),
    pydantic.WithJsonSchema(
        {
            "type": "object",
            "minProperties": 1,
            "maxProperties": MAX_NODES,
            "x-kubernetes-preserve-unknown-fields": True,
        }
    ),
]


def links_of(graph: dict[str, GraphNode]) -> Iterator[tuple[str, str, str]]:
    """Every link as (node id, input name, source node id)."""
    for node_id, node in graph.items():
        for name, value in node.inputs.items():
            if _is_link(value):
                yield node_id, name, str(value[0])


def find_cycle(graph: dict[str, GraphNode]) -> list[str] | None:
    """A list of node ids forming a cycle (first id repeated at the end), or None."""
    sources: dict[str, list[str]] = {node_id: [] for node_id in graph}
    for node_id, _, source in links_of(graph):
        if source in graph:
            sources[node_id].append(source)
    return base.find_cycle(sources)


class WorkflowParameter(base.Model):
    """A value a caller (a person, a pipeline) may set: one input of one node."""

    name: str = pydantic.Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=63)
    """Name callers use, e.g. prompt or seed: lowercase letters, digits and _."""
    node: Annotated[str, pydantic.BeforeValidator(lambda v: str(v) if isinstance(v, int) else v)]
    """Id of the graph node whose input it sets, e.g. "6"."""
    input: str
    """Name of that node's input, e.g. text or seed."""
    type: ParameterType
    """Kind of value: string, integer, number, boolean or image."""
    description: str = ""
    """Free text shown to whoever sets the parameter."""
    default: Annotated[
        Any, pydantic.WithJsonSchema({"x-kubernetes-preserve-unknown-fields": True})
    ] = None
    """Value used when the caller gives none."""
    minimum: float | None = None
    """Lowest value allowed (integer and number parameters)."""
    maximum: float | None = None
    """Highest value allowed (integer and number parameters)."""
    choices: list[str] = pydantic.Field(default_factory=list)
    """Allowed values (string parameters only); empty: any value."""

    def issues(self) -> Iterator[base.Issue]:
        """A default of the wrong type, or bounds that make no sense."""
        expected = _PYTHON_TYPES[self.type]
        wrong_bool = isinstance(self.default, bool) and self.type != "boolean"
        if self.default is not None and (not isinstance(self.default, expected) or wrong_bool):
            yield base.Issue(("default",), f"default {self.default!r} is not a {self.type}")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            yield base.Issue(("minimum",), "minimum is larger than maximum")
        if self.choices and self.type != "string":
            yield base.Issue(("choices",), "choices are for string parameters")
        if self.choices and self.default is not None and self.default not in self.choices:
            yield base.Issue(("default",), f"default {self.default!r} is not one of the choices")


class ComfyWorkflowSpec(base.Spec):
    """An API-format graph, its exposed parameters, the models it needs and where it runs."""

    description: str = ""
    """Free text for people about what the workflow makes."""
    service: fields.DnsLabel
    """The NebulaService running ComfyUI, by name."""
    graph: Graph = pydantic.Field(min_length=1, max_length=MAX_NODES)
    """The graph as ComfyUI exports it in API format, keyed by node id."""
    parameters: list[WorkflowParameter] = pydantic.Field(default_factory=list)
    """Inputs a person or a pipeline may set when running the workflow."""
    models: list[fields.DnsSubdomain] = pydantic.Field(default_factory=list)
    """NebulaModels that must be present, by name."""
    outputs: list[str] = pydantic.Field(default_factory=list)
    """Ids of the nodes whose results are the workflow's results."""

    def issues(self) -> Iterator[base.Issue]:
        """Dangling links, cycles, and parameters or outputs naming what is not in the graph."""
        for node_id, name, source in links_of(self.graph):
            if source not in self.graph:
                yield base.Issue(
                    ("graph", node_id, "inputs", name),
                    f"links to node {source!r}, which is not in the graph",
                )
        cycle = find_cycle(self.graph)
        if cycle:
            yield base.Issue(("graph", cycle[0]), "the graph has a cycle: " + " -> ".join(cycle))
        yield from base.unique([p.name for p in self.parameters], "parameters", "parameter")
        yield from base.issues_of(self.parameters, "parameters")
        for index, parameter in enumerate(self.parameters):
            yield from self._parameter_target(index, parameter)
        yield from base.unique(self.models, "models", "model")
        for index, output in enumerate(self.outputs):
            if output not in self.graph:
                yield base.Issue(("outputs", index), f"node {output!r} is not in the graph")

    def _parameter_target(self, index: int, parameter: WorkflowParameter) -> Iterator[base.Issue]:
        node = self.graph.get(parameter.node)
        if node is None:
            yield base.Issue(
                ("parameters", index, "node"), f"node {parameter.node!r} is not in the graph"
            )
        elif parameter.input not in node.inputs:
            known = ", ".join(sorted(node.inputs)) or "none"
            yield base.Issue(
                ("parameters", index, "input"),
                f"node {parameter.node!r} ({node.class_type}) has no input "
                f"{parameter.input!r} (inputs: {known})",
            )
        elif _is_link(node.inputs[parameter.input]):
            yield base.Issue(
                ("parameters", index, "input"),
                f"input {parameter.input!r} of node {parameter.node!r} is a link, not a value",
            )


class ComfyWorkflowStatus(conditions.Status):
    """Whether the target ComfyUI can run the graph, and the last job."""

    missing_node_types: list[str] = pydantic.Field(default_factory=list)
    """Node class types the ComfyUI server does not know (custom nodes to install)."""
    last_job_id: str | None = None
    """ComfyUI's id of the last run."""
    last_run_time: datetime.datetime | None = None
    """When the workflow last ran."""


class ComfyWorkflow(base.Resource):
    """A ComfyUI workflow of the homelab."""

    info: ClassVar[base.KindInfo] = base.KindInfo(
        plural="comfyworkflows",
        scope="Namespaced",
        short_names=("cwf",),
        description="A ComfyUI API-format workflow, its parameters and the models it needs.",
        columns=(
            base.PrinterColumn("Service", ".spec.service"),
            base.PrinterColumn("Description", ".spec.description", priority=1),
            base.PrinterColumn("Last Run", ".status.lastRunTime", "date"),
        ),
    )

    kind: Literal["ComfyWorkflow"] = "ComfyWorkflow"
    spec: ComfyWorkflowSpec
    status: ComfyWorkflowStatus | None = None
