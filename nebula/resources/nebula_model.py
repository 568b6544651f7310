"""``NebulaModel``: an AI model (an Ollama tag or a ComfyUI model file) and the nodes that hold it.

Pure data, no I/O. Provider-specific fields are checked against the provider, so a ComfyUI
checkpoint without a download URL or an Ollama tag with a folder is refused before anything runs.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator
from typing import ClassVar, Literal

import pydantic

from nebula.resources import base, conditions, fields

__all__ = [
    "COMFYUI_FOLDERS",
    "ModelPlacement",
    "NebulaModel",
    "NebulaModelSpec",
    "NebulaModelStatus",
]

ComfyFolder = Literal[
    "checkpoints", "loras", "vae", "controlnet", "upscale_models", "embeddings", "clip",
    "clip_vision", "unet", "diffusion_models", "text_encoders",
]  # fmt: skip
COMFYUI_FOLDERS: tuple[str, ...] = typing.get_args(ComfyFolder)
_OLLAMA_NAME_RE = re.compile(
    r"^[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)*(:[A-Za-z0-9._-]{1,128})?$"
)
_MODEL_FILE_RE = re.compile(r"^[^/\\\x00]+\.(safetensors|ckpt|pt|pth|bin|gguf|onnx)$")


class ModelPlacement(base.Model):
    """The nodes that should hold the model: named, selected by labels, or every ``ai`` node."""

    nodes: list[fields.DnsSubdomain] = pydantic.Field(default_factory=list)
    """NebulaNodes that should hold the model, by name."""
    node_selector: dict[fields.LabelKey, fields.LabelValue] = pydantic.Field(default_factory=dict)
    """Labels a NebulaNode's spec.labels must have to hold the model."""
    min_vram: fields.Quantity | None = None
    """Only nodes with at least this much VRAM, e.g. 8Gi; unset: no minimum."""


class NebulaModelSpec(base.Spec):
    """One model and where it should be present (or absent)."""

    provider: Literal["ollama", "comfyui"]
    """Who runs the model: ollama (pulled by tag) or comfyui (a downloaded file)."""
    model: str = pydantic.Field(min_length=1, max_length=255)
    """Ollama tag such as llama3.1:8b, or ComfyUI file name such as sdxl.safetensors."""
    folder: ComfyFolder | None = None
    """ComfyUI folder the file goes into, e.g. checkpoints or loras (comfyui only)."""
    url: fields.HttpUrl | None = None
    """Where the file is downloaded from (comfyui only)."""
    sha256: str | None = pydantic.Field(default=None, pattern=r"^[a-f0-9]{64}$")
    """Expected SHA-256 of the file, as 64 lowercase hex digits (comfyui only)."""
    size: fields.Quantity | None = None
    """Expected size on disk, e.g. 4.9G; used for planning and progress."""
    placement: ModelPlacement = pydantic.Field(default_factory=ModelPlacement)
    """Which nodes hold it: named, selected by labels, or (default) every ai node."""
    state: Literal["present", "absent"] = "present"
    """present (default) to have the model on the nodes, absent to remove it."""

    def issues(self) -> Iterator[base.Issue]:
        """The fields the provider needs, and no fields it does not understand."""
        if self.provider == "ollama":
            if not _OLLAMA_NAME_RE.match(self.model):
                yield base.Issue(
                    ("model",),
                    f"invalid Ollama model {self.model!r}: expected name[:tag] such as "
                    "'llama3.1:8b' or 'hf.co/org/repo:Q4_K_M'",
                )
            for name in ("folder", "url", "sha256"):
                if getattr(self, name) is not None:
                    yield base.Issue((name,), f"'{name}' is for ComfyUI models, not Ollama")
            return
        if not _MODEL_FILE_RE.match(self.model):
            yield base.Issue(
                ("model",),
                f"invalid ComfyUI model file {self.model!r}: expected a file name such as "
                "'sd_xl_base_1.0.safetensors' (no folders)",
            )
        if self.folder is None:
            yield base.Issue(("folder",), "a ComfyUI model needs its folder, e.g. 'checkpoints'")
        if self.url is None and self.state == "present":
            yield base.Issue(("url",), "a ComfyUI model needs the URL to download it from")


class NebulaModelStatus(conditions.Status):
    """Which nodes hold the model, with pull or download progress."""

    nodes: list[conditions.PlacementStatus] = pydantic.Field(default_factory=list)
    """Per node: whether the model is there, with pull or download progress."""
    present_on: int = 0
    """How many nodes hold the model."""


class NebulaModel(base.Resource):
    """An AI model of the homelab."""

    info: ClassVar[base.KindInfo] = base.KindInfo(
        plural="nebulamodels",
        scope="Namespaced",
        short_names=("nmodel",),
        description="An AI model (Ollama or ComfyUI) and the nodes that should hold it.",
        columns=(
            base.PrinterColumn("Provider", ".spec.provider"),
            base.PrinterColumn("Model", ".spec.model"),
            base.PrinterColumn("Size", ".spec.size"),
            base.PrinterColumn("State", ".spec.state", priority=1),
            base.PrinterColumn("Nodes", ".status.presentOn", "integer"),
        ),
    )

    kind: Literal["NebulaModel"] = "NebulaModel"
    spec: NebulaModelSpec
    status: NebulaModelStatus | None = None
