"""Intents: the small, typed vocabulary of changes a person, a bot or a pipeline may propose.

Pure data, no I/O. Each intent names the resource it changes (:attr:`Intent.target`), says what
it does in one line (:meth:`Intent.title`) and edits that resource's document in place with the
round-trip editor (:meth:`Intent.edit`), so a commit shows only the lines that changed. The
vocabulary is introspectable (:data:`INTENTS`, :func:`schemas`): a chat bot or a model can be
offered exactly these, each with its JSON schema. :func:`parameters` and :func:`explain` read
that same schema to tell a person what each parameter takes and what was wrong with what they
gave. No intent touches secrets or credentials.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime
import difflib
from typing import Annotated, Any, ClassVar, Literal

import pydantic

from nebula import errors
from nebula.manifests import editing
from nebula.resources import ResourceKey, base, bot_config, fields

__all__ = [
    "INTENTS",
    "AddModelToNode",
    "AnyIntent",
    "Intent",
    "LabelNode",
    "Parameter",
    "RemoveModelFromNode",
    "RunPipeline",
    "ScaleService",
    "SetServiceImage",
    "ToggleBotFeature",
    "explain",
    "parameters",
    "parse",
    "schemas",
]


class Intent(base.Model, abc.ABC):
    """Base of every intent: which resource it changes and how."""

    intent: str
    kind: ClassVar[str]
    """The kind of resource the intent changes."""

    @property
    @abc.abstractmethod
    def target(self) -> ResourceKey:
        """The resource the intent edits."""

    @abc.abstractmethod
    def title(self) -> str:
        """What the change does, as the first line of its commit and its title."""

    @abc.abstractmethod
    def edit(self, document: editing.Document) -> None:
        """Changes the target's document in place; raises NothingToChange when already so."""


class _Namespaced(Intent):
    namespace: fields.DnsLabel = "default"
    """The namespace of the resource; default: default."""


class _ModelOnNode(_Namespaced):
    kind: ClassVar[str] = "NebulaModel"
    model: fields.DnsSubdomain
    """The NebulaModel."""
    node: fields.DnsSubdomain
    """The NebulaNode."""

    @property
    def target(self) -> ResourceKey:
        """The model."""
        return ResourceKey(self.kind, self.namespace, self.model)


class AddModelToNode(_ModelOnNode):
    """Place a model on one more node."""

    intent: Literal["add-model-to-node"] = "add-model-to-node"

    def title(self) -> str:
        """E.g. ``Add model llama3-1-8b to node windows-vm``."""
        return f"Add model {self.model} to node {self.node}"

    def edit(self, document: editing.Document) -> None:
        """Appends the node to ``spec.placement.nodes``."""
        if not editing.add_to_list(document, ["spec", "placement", "nodes"], self.node):
            raise errors.NothingToChange(f"model {self.model} is already placed on {self.node}")


class RemoveModelFromNode(_ModelOnNode):
    """Take a model off a node."""

    intent: Literal["remove-model-from-node"] = "remove-model-from-node"

    def title(self) -> str:
        """E.g. ``Remove model llama3-1-8b from node windows-vm``."""
        return f"Remove model {self.model} from node {self.node}"

    def edit(self, document: editing.Document) -> None:
        """Removes the node from ``spec.placement.nodes``."""
        try:
            removed = editing.remove_from_list(document, ["spec", "placement", "nodes"], self.node)
        # The model names no nodes at all.
        except errors.ResourceNotFound:
            removed = False
        if not removed:
            raise errors.NothingToChange(f"model {self.model} is not placed on {self.node}")


class SetServiceImage(_Namespaced):
    """Run a service from another image (a new version)."""

    intent: Literal["set-service-image"] = "set-service-image"
    kind: ClassVar[str] = "NebulaService"
    service: fields.DnsLabel
    """The NebulaService."""
    image: fields.ImageRef
    """The image to run, e.g. ghcr.io/acme/dashboard:1.5.0."""

    @property
    def target(self) -> ResourceKey:
        """The service."""
        return ResourceKey(self.kind, self.namespace, self.service)

    def title(self) -> str:
        """E.g. ``Set the image of dashboard to ghcr.io/acme/dashboard:1.5.0``."""
        return f"Set the image of {self.service} to {self.image}"

    def edit(self, document: editing.Document) -> None:
        """Sets ``spec.image``."""
        if document.get("spec", {}).get("image") == self.image:
            raise errors.NothingToChange(f"{self.service} already runs {self.image}")
        editing.set_path(document, ["spec", "image"], self.image)


class ScaleService(_Namespaced):
    """Run more or fewer copies of a service."""

    intent: Literal["scale-service"] = "scale-service"
    kind: ClassVar[str] = "NebulaService"
    service: fields.DnsLabel
    """The NebulaService."""
    replicas: int = pydantic.Field(ge=0, le=50)
    """How many copies to run (0 stops it)."""

    @property
    def target(self) -> ResourceKey:
        """The service."""
        return ResourceKey(self.kind, self.namespace, self.service)

    def title(self) -> str:
        """E.g. ``Scale dashboard to 2 replicas``."""
        return f"Scale {self.service} to {self.replicas} replica{'s' if self.replicas != 1 else ''}"

    def edit(self, document: editing.Document) -> None:
        """Sets ``spec.replicas``."""
        if document.get("spec", {}).get("replicas", 1) == self.replicas:
            raise errors.NothingToChange(f"{self.service} already runs {self.replicas}")
        editing.set_path(document, ["spec", "replicas"], self.replicas)


_FEATURES: list[pydantic.JsonValue] = list(bot_config.FEATURES)


class ToggleBotFeature(_Namespaced):
    """Switch a Discord bot feature on or off, in one guild or all of them."""

    intent: Literal["toggle-bot-feature"] = "toggle-bot-feature"
    kind: ClassVar[str] = "BotConfig"
    bot_config: fields.DnsSubdomain
    """The BotConfig."""
    # The enum is for the schema (what a bot, a model or `nebula change intents` offers); the
    # validator below refuses anything else with a message that lists the same names.
    feature: str = pydantic.Field(json_schema_extra={"enum": _FEATURES})
    """The feature as written in YAML, e.g. streamNotifications."""
    enabled: bool
    """On or off."""
    guild: fields.Snowflake | None = None
    """Only this guild; without one: every guild of the bot."""

    @pydantic.field_validator("feature")
    @classmethod
    def _known_feature(cls, value: str) -> str:
        if value not in bot_config.FEATURES:
            raise ValueError(f"unknown feature {value!r}: one of {', '.join(bot_config.FEATURES)}")
        return value

    @property
    def target(self) -> ResourceKey:
        """The bot configuration."""
        return ResourceKey(self.kind, self.namespace, self.bot_config)

    def title(self) -> str:
        """E.g. ``Turn tickets on in guild 123…`` or ``… in every guild``."""
        where = f"in guild {self.guild}" if self.guild else "in every guild"
        return f"Turn {self.feature} {'on' if self.enabled else 'off'} {where}"

    def edit(self, document: editing.Document) -> None:
        """Sets ``features.<feature>.enabled`` of the chosen guilds."""
        guilds = document.get("spec", {}).get("discord", {}).get("guilds") or []
        chosen = [i for i, g in enumerate(guilds) if self.guild in (None, str(g.get("id")))]
        if not chosen:
            raise errors.ResourceNotFound(f"{self.bot_config} serves no guild {self.guild}")
        changed = False
        for index in chosen:
            path: list[str | int] = [
                "spec", "discord", "guilds", index, "features", self.feature, "enabled"
            ]  # fmt: skip
            feature = guilds[index].get("features", {}).get(self.feature, {})
            if bool(feature.get("enabled", False)) != self.enabled:
                editing.set_path(document, path, self.enabled)
                changed = True
        if not changed:
            state = "on" if self.enabled else "off"
            raise errors.NothingToChange(f"{self.feature} is already {state} there")


class LabelNode(Intent):
    """Set or remove a label of a node (placement selects nodes by label)."""

    intent: Literal["label-node"] = "label-node"
    kind: ClassVar[str] = "NebulaNode"
    node: fields.DnsSubdomain
    """The NebulaNode."""
    key: fields.LabelKey
    """The label's key."""
    value: fields.LabelValue | None = None
    """The label's value; without one, the label is removed."""

    @property
    def target(self) -> ResourceKey:
        """The node (cluster-scoped)."""
        return ResourceKey(self.kind, None, self.node)

    def title(self) -> str:
        """E.g. ``Label node home-ubuntu gpu=rtx-3090`` or ``Remove label gpu from …``."""
        if self.value is None:
            return f"Remove label {self.key} from node {self.node}"
        return f"Label node {self.node} {self.key}={self.value}"

    def edit(self, document: editing.Document) -> None:
        """Sets or deletes ``spec.labels.<key>``."""
        labels = document.get("spec", {}).get("labels") or {}
        if labels.get(self.key) == self.value:
            raise errors.NothingToChange(f"node {self.node} already has {self.key}={self.value}")
        if self.value is None:
            del labels[self.key]
        else:
            editing.set_path(document, ["spec", "labels", self.key], self.value)


class RunPipeline(_Namespaced):
    """Ask for a run of a pipeline, with parameters (the runner starts it once applied)."""

    intent: Literal["run-pipeline"] = "run-pipeline"
    kind: ClassVar[str] = "Pipeline"
    pipeline: fields.DnsSubdomain
    """The Pipeline."""
    parameters: dict[str, str] = pydantic.Field(default_factory=dict)
    """Values for the pipeline's parameters."""
    requested_at: str = pydantic.Field(default_factory=lambda: _now())
    """When the run was asked for (ISO 8601); a new value is a new run. Default: now."""

    @property
    def target(self) -> ResourceKey:
        """The pipeline."""
        return ResourceKey(self.kind, self.namespace, self.pipeline)

    def title(self) -> str:
        """E.g. ``Run pipeline daily-content (topic=GPUs)``."""
        given = ", ".join(f"{k}={v}" for k, v in sorted(self.parameters.items()))
        return f"Run pipeline {self.pipeline}" + (f" ({given})" if given else "")

    def edit(self, document: editing.Document) -> None:
        """Stamps the run request as annotations of the pipeline."""
        editing.set_path(
            document, ["metadata", "annotations", "nebula.dev/run-requested-at"], self.requested_at
        )
        for name, value in sorted(self.parameters.items()):
            editing.set_path(document, ["metadata", "annotations", f"nebula.dev/run.{name}"], value)


AnyIntent = Annotated[
    AddModelToNode
    | RemoveModelFromNode
    | SetServiceImage
    | ScaleService
    | ToggleBotFeature
    | LabelNode
    | RunPipeline,
    pydantic.Field(discriminator="intent"),
]
"""Any intent, told apart by its ``intent`` field."""

INTENTS: dict[str, type[Intent]] = {
    cls.model_fields["intent"].default: cls
    for cls in (
        AddModelToNode,
        RemoveModelFromNode,
        SetServiceImage,
        ScaleService,
        ToggleBotFeature,
        LabelNode,
        RunPipeline,
    )
}
"""Every intent by name, in the order they are offered."""

_ADAPTER: pydantic.TypeAdapter[AnyIntent] = pydantic.TypeAdapter(AnyIntent)


def parse(data: Any) -> Intent:
    """An intent from JSON-like data (``{"intent": "scale-service", ...}``).

    Raises pydantic's ValidationError naming the field when the data does not fit.
    """
    found: Intent = _ADAPTER.validate_python(data)
    return found


def schemas() -> dict[str, dict[str, Any]]:
    """Every intent's JSON schema, by name: what a bot or a model may be offered as tools."""
    return {name: cls.model_json_schema(by_alias=True) for name, cls in INTENTS.items()}


def _now() -> str:
    """The time a run is asked for when none is given, as RunPipeline stamps it."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclasses.dataclass(frozen=True)
class Parameter:
    """One parameter of an intent as its JSON schema declares it, in words for a person."""

    name: str  # as written: botConfig, not bot_config
    accepts: str  # e.g. "a whole number from 0 to 50", "one of tickets, welcome"
    required: bool
    default: str | None  # the default as text; None when there is none to show
    description: str
    schema: dict[str, Any]  # the property's own JSON schema, as the tools are offered it


def parameters(intent: str) -> list[Parameter]:
    """The parameters of the intent named ``intent`` (a key of :data:`INTENTS`), in order.

    Read from :func:`schemas`, so a person is told what a bot or a model is offered.
    """
    schema = INTENTS[intent].model_json_schema(by_alias=True)
    required = set(schema.get("required", ()))
    found = []
    for name, field in schema.get("properties", {}).items():
        if name == "intent":
            continue  # the discriminator: named by the intent itself
        default = field.get("default")
        found.append(
            Parameter(
                name=name,
                accepts=_accepts(field),
                required=name in required,
                default=None if default is None else _text(default),
                description=field.get("description", ""),
                schema=field,
            )
        )
    return found


# Words for the patterns of the field types intents use; any other pattern is left unsaid
# (a validator's message says what it wants when a value does not fit).
_PATTERNS = {
    fields.DNS_LABEL_PATTERN: "a name of at most 63 lowercase letters, digits and '-'",
    fields.DNS_SUBDOMAIN_PATTERN: "a name of lowercase letters, digits, '-' and '.'",
    "^[0-9]{15,21}$": "a Discord id of 15 to 21 digits",
    fields.IMAGE_PATTERN: "an image reference, [registry/]name[:tag][@digest]",
}


def _accepts(field: dict[str, Any]) -> str:
    """What a value of a JSON-schema property must be, in words."""
    if "enum" in field:
        return "one of " + ", ".join(map(_text, field["enum"]))
    if "anyOf" in field:
        kinds = [_accepts(branch) for branch in field["anyOf"] if branch.get("type") != "null"]
        return " or ".join(kinds)
    kind = field.get("type")
    if kind == "boolean":
        return "true or false"
    if kind in ("integer", "number"):
        low, high = field.get("minimum"), field.get("maximum")
        what = "a whole number" if kind == "integer" else "a number"
        if low is not None and high is not None:
            return f"{what} from {low} to {high}"
        if low is not None:
            return f"{what} of at least {low}"
        return f"{what} of at most {high}" if high is not None else what
    if kind == "object":
        return f"a mapping of names to {_accepts(field.get('additionalProperties') or {})}"
    if kind == "string":
        return _PATTERNS.get(field.get("pattern", ""), "text")
    return "anything"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def explain(error: pydantic.ValidationError) -> str:
    """One line saying, for each parameter :func:`parse` refused, what was wrong and what it takes.

    For people (``nebula change open``); the API answers pydantic's own list instead.
    """
    problems: list[str] = []
    intent = ""
    # A misspelt parameter first: the "required" that follows from it is the same mistake.
    found = sorted(error.errors(include_url=False), key=lambda e: e["type"] != "extra_forbidden")
    for item in found:
        loc = tuple(str(part) for part in item["loc"])
        # No such intent, or none named: the discriminator is the whole problem.
        if item["type"] in ("union_tag_invalid", "union_tag_not_found"):
            given = item.get("ctx", {}).get("tag")
            what = f"unknown intent {given!r}" if given else "no intent named"
            return f"{what}: one of {', '.join(INTENTS)}"
        intent, path = loc[0], loc[1:]
        problems.append(_problem(intent, path, item))
    return f"{intent}: " + "; ".join(problems)


def _problem(intent: str, path: tuple[str, ...], item: Any) -> str:
    known = {parameter.name: parameter for parameter in parameters(intent)}
    name = ".".join(path)
    parameter = known.get(path[0]) if path else None
    if item["type"] == "extra_forbidden" or parameter is None:
        close = difflib.get_close_matches(path[0] if path else "", list(known), n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        return f"{name} is not a parameter of {intent} ({hint}it takes {', '.join(known)})"
    if item["type"] == "missing":
        return f"{name} is required: {parameter.accepts} ({parameter.description.rstrip('.')})"
    # A validator's own message names the value and what it accepts.
    if item["type"] == "value_error":
        return f"{name}: {item['ctx']['error']}"
    return f"{name}: {item.get('input')!r} is not {parameter.accepts}"
