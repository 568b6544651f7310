"""The resource model: the seven kinds of ``nebula.dev/v1alpha1`` as pydantic models.

Pure data, no I/O. Each kind lives in its own module (``nebula_node``, ``git_source``, ...) with
its spec, status and CRD facts; :data:`KINDS` maps kind names to their classes. Later kinds plug
in by adding a module and one line to :data:`KINDS`.
"""

from nebula.resources import columns, conditions, fields, references
from nebula.resources.base import (
    API_VERSION,
    GROUP,
    VERSION,
    Issue,
    KindInfo,
    ObjectMeta,
    PrinterColumn,
    Resource,
    ResourceKey,
    SecretKeyRef,
)
from nebula.resources.bot_config import BotConfig
from nebula.resources.comfy_workflow import ComfyWorkflow
from nebula.resources.git_source import GitSource
from nebula.resources.nebula_model import NebulaModel
from nebula.resources.nebula_node import NebulaNode
from nebula.resources.nebula_service import NebulaService
from nebula.resources.pipeline import Pipeline

__all__ = [
    "API_VERSION",
    "GROUP",
    "KINDS",
    "VERSION",
    "BotConfig",
    "ComfyWorkflow",
    "GitSource",
    "Issue",
    "KindInfo",
    "NebulaModel",
    "NebulaNode",
    "NebulaService",
    "ObjectMeta",
    "Pipeline",
    "PrinterColumn",
    "Resource",
    "ResourceKey",
    "SecretKeyRef",
    "columns",
    "conditions",
    "fields",
    "references",
]

KINDS: dict[str, type[Resource]] = {
    cls.__name__: cls
    for cls in (
        NebulaNode,
        NebulaService,
        NebulaModel,
        ComfyWorkflow,
        BotConfig,
        Pipeline,
        GitSource,
    )
}
"""Every kind, in the order a sync applies them (nodes before what is placed on them)."""
