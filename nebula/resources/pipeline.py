"""``Pipeline``: steps (LLM, ComfyUI, approval gate, post, deploy) as a DAG on a schedule.

Pure data, no I/O. Steps name the steps they ``needs``; text fields may use templates
``{{ params.<name> }}`` and ``{{ steps.<step>.output }}``. The checks here make sure every name
a step refers to exists, that a step only reads outputs of steps it (transitively) needs, and that
the steps form no cycle. References to other resources are checked across the whole set.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator
from typing import Annotated, ClassVar, Literal

import pydantic

from nebula.resources import base, conditions, fields

__all__ = [
    "ApprovalAction",
    "ComfyAction",
    "DeployAction",
    "LlmAction",
    "Pipeline",
    "PipelineParameter",
    "PipelineSpec",
    "PipelineStatus",
    "PostAction",
    "Step",
    "template_refs",
]

MAX_STEPS = 200
"""Most steps one pipeline may have; more is a mistake or an attack, not a pipeline."""
ACTIONS = ("llm", "comfyui", "approval", "post", "deploy")
_TEMPLATE_RE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_REF_RE = re.compile(r"^(params\.[a-z][a-z0-9_]*|steps\.[a-z0-9-]+\.[a-z_]+|run\.[a-z_]+)$")

Scalar = Annotated[
    str | int | float | bool,
    pydantic.WithJsonSchema({"x-kubernetes-preserve-unknown-fields": True}),
]


def template_refs(text: str) -> Iterator[str]:
    """The expressions between ``{{`` and ``}}`` in a text, stripped."""
    for match in _TEMPLATE_RE.finditer(text):
        yield match.group(1)


class LlmAction(base.Model):
    """Prompt an Ollama model (a NebulaModel of provider ollama)."""

    model: fields.DnsSubdomain
    """The NebulaModel (provider ollama) to prompt, by name."""
    prompt: str = pydantic.Field(min_length=1)
    """What to ask; templates such as {{ params.topic }} are filled in."""
    system: str = ""
    """System prompt; templates allowed; empty: none."""
    temperature: float | None = pydantic.Field(default=None, ge=0, le=2)
    """Sampling temperature, 0-2: higher is more varied; unset: the model's default."""
    max_tokens: int | None = pydantic.Field(default=None, ge=1)
    """Longest answer, in tokens; unset: the model's default."""


class ComfyAction(base.Model):
    """Run a ComfyWorkflow with values for its exposed parameters."""

    workflow: fields.DnsSubdomain
    """The ComfyWorkflow to run, by name."""
    parameters: dict[str, Scalar] = pydantic.Field(default_factory=dict)
    """Values for the workflow's exposed parameters, by name; text may use templates."""


class ApprovalAction(base.Model):
    """Wait until a person approves in the web UI."""

    message: str = pydantic.Field(min_length=1)
    """What the approver is asked; templates allowed."""
    approvers: list[str] = pydantic.Field(default_factory=list)
    """Usernames or roles who may approve; empty: anyone with the approver role."""
    timeout: fields.Duration | None = None
    """How long to wait, e.g. 24h; unset: wait as long as it takes."""


class PostAction(base.Model):
    """Post a message (and images of earlier steps) through a bot."""

    bot_config: fields.DnsSubdomain
    """The BotConfig whose bot posts, by name."""
    to: Literal["discord", "twitch", "youtube", "kick"] = "discord"
    """Where to post: discord (default), twitch, youtube or kick."""
    channel: str = pydantic.Field(min_length=1)
    """Channel to post in; for discord, a channel id."""
    message: str = pydantic.Field(min_length=1)
    """Text to post; templates such as {{ steps.write-caption.output }} allowed."""
    attach: list[fields.DnsLabel] = pydantic.Field(default_factory=list)
    """Steps whose outputs are attached; each must be one this step needs."""


class DeployAction(base.Model):
    """Open a change request that sets a service's image (it waits for approval like any other)."""

    service: fields.DnsLabel
    """The NebulaService whose image is set, by name."""
    image: str = pydantic.Field(min_length=1)
    """An image reference, e.g. ghcr.io/acme/dashboard:1.5.0; templates allowed."""

    @pydantic.field_validator("image")
    @classmethod
    def _image_or_template(cls, value: str) -> str:
        if "{{" not in value:
            fields.check_image(value)
        return value


class Step(base.Model):
    """One step: exactly one action, the steps it needs, and how often to retry it."""

    name: fields.DnsLabel
    """Name of the step, unique in the pipeline."""
    needs: list[fields.DnsLabel] = pydantic.Field(default_factory=list)
    """Steps that must finish first; only their outputs are readable in templates."""
    llm: LlmAction | None = None
    """Prompt an Ollama model (a NebulaModel of provider ollama)."""
    comfyui: ComfyAction | None = None
    """Run a ComfyWorkflow with values for its exposed parameters."""
    approval: ApprovalAction | None = None
    """Wait until a person approves in the web UI."""
    post: PostAction | None = None
    """Post a message (and images of earlier steps) through a bot."""
    deploy: DeployAction | None = None
    """Open a change request that sets a service's image; it waits for approval like any other."""
    timeout: fields.Duration | None = None
    """Time limit for the step, e.g. 10m; unset: none of its own."""
    retries: int = pydantic.Field(default=0, ge=0, le=10)
    """How many times to retry the step when it fails (0-10, default 0)."""

    @pydantic.model_validator(mode="after")
    def _one_action(self) -> Step:
        chosen = [name for name in ACTIONS if getattr(self, name) is not None]
        if len(chosen) != 1:
            found = ", ".join(chosen) if chosen else "none"
            raise ValueError(f"a step has exactly one of {', '.join(ACTIONS)} (found: {found})")
        return self

    @property
    def action(self) -> str:
        """Which action the step runs (``llm``, ``comfyui``, ...)."""
        return next(name for name in ACTIONS if getattr(self, name) is not None)

    def texts(self) -> Iterator[tuple[base.FieldPath, str]]:
        """Every text of the step that may hold templates, with its path inside the step."""
        if self.llm:
            yield ("llm", "prompt"), self.llm.prompt
            yield ("llm", "system"), self.llm.system
        if self.comfyui:
            for name, value in self.comfyui.parameters.items():
                if isinstance(value, str):
                    yield ("comfyui", "parameters", name), value
        if self.approval:
            yield ("approval", "message"), self.approval.message
        if self.post:
            yield ("post", "message"), self.post.message
        if self.deploy:
            yield ("deploy", "image"), self.deploy.image


class PipelineParameter(base.Model):
    """An input of a run, with a default for scheduled runs."""

    name: str = pydantic.Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=63)
    """Name used in templates as {{ params.<name> }}."""
    default: str | None = None
    """Value for scheduled runs, and when the one starting a run gives none."""
    description: str = ""
    """Free text shown to whoever starts a run."""


class PipelineSpec(base.Spec):
    """Steps, schedule and concurrency of a pipeline."""

    description: str = ""
    """Free text for people about what the pipeline does."""
    schedule: fields.Cron | None = None
    """Cron schedule such as "0 9 * * 1-5" or @daily; unset: by hand or a change only."""
    timezone: fields.Timezone = "UTC"
    """IANA time zone of the schedule, e.g. Europe/Berlin (default UTC)."""
    concurrency: Literal["Allow", "Forbid", "Replace"] = "Forbid"
    """If a run is due while one is going: Allow, Forbid (default) or Replace it."""
    suspend: bool = False
    """When true, the schedule starts no new runs."""
    parameters: list[PipelineParameter] = pydantic.Field(default_factory=list)
    """Inputs of a run, read in templates as {{ params.<name> }}."""
    steps: list[Step] = pydantic.Field(min_length=1, max_length=MAX_STEPS)
    """The steps, each run once the steps it needs are done."""
    history_limit: int = pydantic.Field(default=20, ge=1, le=1000)
    """How many finished runs to keep (default 20)."""

    def issues(self) -> Iterator[base.Issue]:
        """Unknown or cyclic ``needs``, and templates reading what a step cannot see."""
        names = [step.name for step in self.steps]
        yield from base.unique(names, "steps", "step name")
        yield from base.unique([p.name for p in self.parameters], "parameters", "parameter")
        known = set(names)
        for index, step in enumerate(self.steps):
            for j, need in enumerate(step.needs):
                if need not in known:
                    yield base.Issue(("steps", index, "needs", j), f"no step is named {need!r}")
                elif need == step.name:
                    yield base.Issue(("steps", index, "needs", j), "a step cannot need itself")
        cycle = base.find_cycle({s.name: [n for n in s.needs if n in known] for s in self.steps})
        if cycle and len(cycle) > 2:
            yield base.Issue(
                ("steps", names.index(cycle[0]), "needs"),
                "the steps have a cycle: " + " -> ".join(cycle),
            )
        if not cycle:
            yield from self._template_issues()

    def _template_issues(self) -> Iterator[base.Issue]:
        params = {p.name for p in self.parameters}
        upstream = self._upstream()
        for index, step in enumerate(self.steps):
            for j, attached in enumerate(step.post.attach if step.post else []):
                if attached not in upstream[step.name]:
                    yield base.Issue(
                        ("steps", index, "post", "attach", j),
                        f"step {attached!r} is not among the steps this step needs",
                    )
            for path, text in step.texts():
                for ref in template_refs(text):
                    problem = _template_problem(ref, params, upstream[step.name])
                    if problem:
                        yield base.Issue(("steps", index, *path), problem)

    def _upstream(self) -> dict[str, set[str]]:
        """For each step, every step it needs directly or through others (the DAG is acyclic)."""
        needs = {step.name: [n for n in step.needs if n != step.name] for step in self.steps}
        result: dict[str, set[str]] = {}
        # Depth-first without recursion: a long chain of steps must not exhaust the stack.
        for start in needs:
            todo = [start]
            while todo:
                name = todo[-1]
                waiting = [n for n in needs.get(name, ()) if n in needs and n not in result]
                if name in result or not waiting:
                    if name not in result:
                        known = [{n} | result.get(n, set()) for n in needs.get(name, ())]
                        result[name] = set().union(*known)
                    todo.pop()
                else:
                    todo.extend(waiting)
        return result


def _template_problem(ref: str, params: set[str], upstream: set[str]) -> str | None:
    if not _REF_RE.match(ref):
        return (
            f"invalid template {{{{ {ref} }}}}: use {{{{ params.<name> }}}}, "
            "{{ steps.<step>.output }} or {{ run.<field> }}"
        )
    root, name = ref.split(".")[:2]
    if root == "params" and name not in params:
        return f"template {{{{ {ref} }}}}: no parameter is named {name!r}"
    if root == "steps" and name not in upstream:
        return f"template {{{{ {ref} }}}}: step {name!r} is not among the steps this step needs"
    return None


class PipelineStatus(conditions.Status):
    """The last runs of the pipeline (runs themselves live in PostgreSQL)."""

    last_run_id: str | None = None
    """Id of the latest run."""
    last_run_time: datetime.datetime | None = None
    """When the latest run started."""
    last_run_result: Literal["Succeeded", "Failed", "Running", "WaitingForApproval"] | None = None
    """Outcome of the latest run: Succeeded, Failed, Running or WaitingForApproval."""
    next_run_time: datetime.datetime | None = None
    """When the schedule starts the next run."""


class Pipeline(base.Resource):
    """A content or automation pipeline of the homelab."""

    info: ClassVar[base.KindInfo] = base.KindInfo(
        plural="pipelines",
        scope="Namespaced",
        short_names=("npl",),
        description="Steps (LLM, ComfyUI, approval, post, deploy) as a DAG with a cron schedule.",
        columns=(
            base.PrinterColumn("Schedule", ".spec.schedule"),
            base.PrinterColumn("Suspend", ".spec.suspend", "boolean"),
            base.PrinterColumn("Last Run", ".status.lastRunTime", "date"),
            base.PrinterColumn("Result", ".status.lastRunResult"),
        ),
    )

    kind: Literal["Pipeline"] = "Pipeline"
    spec: PipelineSpec
    status: PipelineStatus | None = None
