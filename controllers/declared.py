"""The kinds Nebula stores and checks but does not run yet: NebulaService, NebulaModel,
ComfyWorkflow and Pipeline, until their own reconcilers replace them here (one line in
``kinds.py`` each).

Run by both runtimes like every kind, so each object still gets a status saying the truth: a
spec the model refuses stalls with the field path (the runner's parse, as a sync would check
it, which matters for objects applied by hand with kubectl); a valid one is
``Ready=Unknown`` with reason :data:`NOT_RUN_YET` and says that nothing runs it yet, so
``kubectl wait`` and the pages never suggest it runs. It reads and changes nothing else.
"""

from __future__ import annotations

import datetime
from typing import Any, Generic, TypeVar

from controllers import reconciling
from nebula.resources import Resource, conditions
from nebula.resources.comfy_workflow import ComfyWorkflow, ComfyWorkflowStatus
from nebula.resources.nebula_model import NebulaModel, NebulaModelStatus
from nebula.resources.nebula_service import NebulaService, NebulaServiceStatus
from nebula.resources.pipeline import Pipeline, PipelineStatus

__all__ = [
    "NOT_RUN_YET",
    "ComfyWorkflowKind",
    "DeclaredKind",
    "NebulaModelKind",
    "NebulaServiceKind",
    "PipelineKind",
    "not_run_yet",
]

NOT_RUN_YET = "NotRunYet"
"""Ready's reason for an object that is valid and stored, of a kind nothing runs yet."""

R = TypeVar("R", bound=Resource)
S = TypeVar("S", bound=conditions.Status)


def not_run_yet(kind: str) -> str:
    """Ready's message for a valid object of ``kind`` that nothing runs yet."""
    return f"checked and stored; nothing runs a {kind} on the machines yet"


class DeclaredKind(reconciling.Kind[R, S, None], Generic[R, S]):
    """A kind checked and stored, not run: Ready=Unknown, NotRunYet, once per generation."""

    def reconcile(
        self,
        resource: R,
        observed: None,
        *,
        previous: S | None,
        now: datetime.datetime,
        attempt: int,
        progress: reconciling.Progress,
    ) -> reconciling.Result[S]:
        """The status that says so; looked at again only when the object changes."""
        status = previous or self.status_model()
        generation = resource.metadata.generation
        found = conditions.set_condition(
            list(status.conditions), type_=conditions.READY, status="Unknown",
            reason=NOT_RUN_YET, message=not_run_yet(type(resource).__name__), now=now,
            generation=generation,
        )  # fmt: skip
        # The verdict of a spec the model refused earlier is moot now that it parses.
        found = [c for c in found if c.type not in (conditions.STALLED, conditions.RECONCILING)]
        update: dict[str, Any] = {"conditions": found}
        if generation is not None:
            update["observed_generation"] = generation
        return reconciling.Result(status.model_copy(update=update), None)


class NebulaServiceKind(DeclaredKind[NebulaService, NebulaServiceStatus]):
    """NebulaServices: checked and stored, until their reconciler runs them."""

    model = NebulaService
    status_model = NebulaServiceStatus


class NebulaModelKind(DeclaredKind[NebulaModel, NebulaModelStatus]):
    """NebulaModels: checked and stored, until their reconciler pulls them."""

    model = NebulaModel
    status_model = NebulaModelStatus


class ComfyWorkflowKind(DeclaredKind[ComfyWorkflow, ComfyWorkflowStatus]):
    """ComfyWorkflows: checked and stored, until their reconciler checks them on ComfyUI."""

    model = ComfyWorkflow
    status_model = ComfyWorkflowStatus


class PipelineKind(DeclaredKind[Pipeline, PipelineStatus]):
    """Pipelines: checked and stored, until their reconciler runs them."""

    model = Pipeline
    status_model = PipelineStatus
