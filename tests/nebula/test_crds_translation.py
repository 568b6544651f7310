"""Each pydantic schema construct becomes its structural CRD form, or fails loudly.

A model here is made up to hold one construct per field; the real kinds are covered through the
example objects at the end, which both the model and the generated CRD must accept.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Annotated, Any, ClassVar, Literal

import pydantic
import pytest

from nebula import crds, resources
from nebula.resources import base, conditions, fields


class Circle(base.Model):
    """A round shape."""

    radius: float = pydantic.Field(gt=0)


class Square(base.Model):
    """A square shape."""

    side: float = pydantic.Field(gt=0, le=100)
    label: str = ""


class OddSpec(base.Spec):
    """Every construct the generator translates."""

    mode: Literal["only"] = "only"
    ratio: float = pydantic.Field(default=0.5, gt=0, lt=1)
    tags: set[str] = pydantic.Field(default_factory=set)
    extras: dict[str, Any] = pydantic.Field(default_factory=dict)
    sizes: dict[str, fields.Quantity] = pydantic.Field(default_factory=dict)
    anything: str | int | float | bool | None = None
    port: int | str = 80
    bounded: (
        Annotated[int, pydantic.Field(ge=1)] | Annotated[str, pydantic.Field(pattern="^[a-z]+$")]
    )
    shape: Circle | Square | None = None
    name: str = pydantic.Field(default="", min_length=1)
    every: datetime.timedelta | None = None
    origin: Circle = Circle(radius=1)
    described: int = pydantic.Field(default=0, description="A field with its own description.")


class Odd(base.Resource):
    """A made-up kind holding one construct per field."""

    info: ClassVar[base.KindInfo] = base.KindInfo(
        plural="odds", scope="Namespaced", short_names=("odd",), columns=(), description="Odd."
    )
    kind: Literal["Odd"] = "Odd"
    spec: OddSpec
    status: conditions.Status | None = None


def _spec(cls: type[base.Resource]) -> dict[str, Any]:
    schema = crds.crd(cls)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec: dict[str, Any] = schema["properties"]["spec"]
    return spec


@pytest.fixture(scope="module")
def odd() -> dict[str, Any]:
    """The translated properties of OddSpec."""
    properties: dict[str, Any] = _spec(Odd)["properties"]
    return properties


def test_a_single_literal_becomes_a_one_value_enum_with_its_default(odd: dict[str, Any]) -> None:
    assert odd["mode"] == {"default": "only", "enum": ["only"], "type": "string"}


def test_exclusive_bounds_become_openapi_booleans(odd: dict[str, Any]) -> None:
    assert odd["ratio"] == {
        "default": 0.5,
        "exclusiveMaximum": True,
        "exclusiveMinimum": True,
        "maximum": 1,
        "minimum": 0,
        "type": "number",
    }


def test_a_set_of_scalars_becomes_a_list_of_type_set(odd: dict[str, Any]) -> None:
    assert odd["tags"] == {
        "items": {"type": "string"},
        "type": "array",
        "x-kubernetes-list-type": "set",
    }


def test_a_dict_of_anything_preserves_unknown_fields(odd: dict[str, Any]) -> None:
    assert odd["extras"] == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def test_a_typed_dict_becomes_additional_properties(odd: dict[str, Any]) -> None:
    assert odd["sizes"] == {
        "additionalProperties": {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": fields.QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
        },
        "type": "object",
    }


def test_a_union_of_scalars_is_free_form_and_nullable(odd: dict[str, Any]) -> None:
    assert odd["anything"] == {"nullable": True, "x-kubernetes-preserve-unknown-fields": True}


def test_int_or_str_becomes_int_or_string_with_member_constraints_outside(
    odd: dict[str, Any],
) -> None:
    int_or_string = {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    assert odd["port"] == {**int_or_string, "default": 80, "x-kubernetes-int-or-string": True}
    assert odd["bounded"] == {
        **int_or_string,
        "minimum": 1,
        "pattern": "^[a-z]+$",
        "x-kubernetes-int-or-string": True,
    }


def test_a_union_of_models_becomes_one_object_with_every_field(odd: dict[str, Any]) -> None:
    shape = odd["shape"]
    assert shape["type"] == "object" and shape["nullable"] is True
    assert sorted(shape["properties"]) == ["label", "radius", "side"]
    assert "required" not in shape  # no field is required by both members
    assert "anyOf" not in shape


def test_a_default_the_schema_refuses_is_dropped(odd: dict[str, Any]) -> None:
    assert odd["name"] == {"minLength": 1, "type": "string"}


def test_pydantic_iso_durations_lose_the_format_kubernetes_reads_as_go_durations(
    odd: dict[str, Any],
) -> None:
    assert odd["every"] == {"nullable": True, "type": "string"}


def test_a_model_default_is_inlined_with_the_model_and_its_docstring(odd: dict[str, Any]) -> None:
    assert odd["origin"]["default"] == {"radius": 1.0}
    assert odd["origin"]["description"] == "A round shape."
    assert odd["origin"]["required"] == ["radius"]


def test_field_descriptions_are_kept_and_titles_dropped(odd: dict[str, Any]) -> None:
    assert odd["described"] == {
        "default": 0,
        "description": "A field with its own description.",
        "type": "integer",
    }
    assert not any("title" in schema for schema in odd.values())


def test_the_made_up_kind_is_structural() -> None:
    assert crds.violations(crds.crd(Odd)) == []


class PairSpec(base.Spec):
    """A tuple, which a CRD cannot express."""

    pair: tuple[int, int]


class Pair(base.Resource):
    """A kind the generator must refuse."""

    info: ClassVar[base.KindInfo] = base.KindInfo(
        plural="pairs", scope="Namespaced", short_names=(), columns=(), description="Pairs."
    )
    kind: Literal["Pair"] = "Pair"
    spec: PairSpec


class Tree(base.Model):
    """A recursive model, which a structural schema cannot express."""

    children: list[Tree] = pydantic.Field(default_factory=list)


class Forest(base.Resource):
    """Another kind the generator must refuse."""

    info: ClassVar[base.KindInfo] = base.KindInfo(
        plural="forests", scope="Namespaced", short_names=(), columns=(), description="Trees."
    )
    kind: Literal["Forest"] = "Forest"
    spec: Tree


@pytest.mark.parametrize(
    ("cls", "message"),
    [(Pair, "spec.pair: tuples have no CRD equivalent"), (Forest, "recursive model 'Tree'")],
)
def test_a_construct_without_crd_form_fails_and_names_the_field(
    cls: type[base.Resource], message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        crds.crd(cls)


# --- The real kinds ----------------------------------------------------------------------------

API = {"apiVersion": "nebula.dev/v1alpha1"}
EXAMPLES: dict[str, dict[str, Any]] = {
    "NebulaNode": {
        "metadata": {"name": "vps"},
        "spec": {
            "role": "control",
            "runtime": "docker",
            "addresses": [{"type": "public", "address": "203.0.113.7"}],
            "labels": {"region": "eu"},
            "agent": {"port": 9460},
        },
        "status": {"hardware": {"cpu": {"cores": 4}, "memory": 8589934592}, "gpu": None},
    },
    "NebulaService": {
        "metadata": {"name": "dashboard", "namespace": "nebula"},
        "spec": {
            "image": "ghcr.io/acme/dashboard:1.4.2",
            "ports": [{"name": "http", "port": 8080}],
            "env": [
                {"name": "LOG_LEVEL", "value": "info"},
                {"name": "API_TOKEN", "secretRef": {"name": "dash", "key": "token"}},
            ],
            "placement": {"gpu": True, "minVram": 4294967296},
            "resources": {"cpu": "500m", "memory": "512Mi"},
            "healthCheck": {"http": {"path": "/healthz", "port": "http"}},
            "domains": [{"host": "dash.example.com", "port": 8080}],
            "volumes": [{"name": "data", "mountPath": "/data", "size": "1Gi"}],
        },
        "status": {
            "nodes": [{"node": "gpu-box", "ready": True, "progress": None}],
            "readyReplicas": 1,
            "url": "http://dashboard.nebula.svc:8080",
        },
    },
    "NebulaModel": {
        "metadata": {"name": "llama3", "namespace": "nebula"},
        "spec": {
            "provider": "ollama",
            "model": "llama3.1:8b",
            "size": "4.7G",
            "placement": {"nodeSelector": {"gpu": "nvidia"}},
        },
        "status": {"presentOn": 0, "nodes": [{"node": "gpu-box", "progress": 42}]},
    },
    "ComfyWorkflow": {
        "metadata": {"name": "sdxl-portrait", "namespace": "nebula"},
        "spec": {
            "service": "comfyui",
            "graph": {
                "3": {"class_type": "KSampler", "inputs": {"seed": 1, "model": ["4", 0]}},
                "4": {
                    "class_type": "CheckpointLoaderSimple",
                    "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"},
                    "_meta": {"title": "Load Checkpoint"},
                },
            },
            "parameters": [
                {"name": "seed", "node": "3", "input": "seed", "type": "integer", "default": 1}
            ],
            "models": ["sdxl"],
            "outputs": ["3"],
        },
        "status": {"missingNodeTypes": [], "lastRunTime": "2024-05-01T10:00:00+02:00"},
    },
    "BotConfig": {
        "metadata": {"name": "bots", "namespace": "nebula"},
        "spec": {
            "discord": {
                "tokenSecretRef": {"name": "discord", "key": "token"},
                "guilds": [
                    {
                        "id": "123456789012345678",
                        "features": {"welcome": {"enabled": True, "channel": "123456789012345679"}},
                    }
                ],
            },
            "stream": {"platforms": [{"platform": "twitch", "channel": "acme"}]},
        },
        "status": {"bots": [{"bot": "discord", "connected": True}], "guilds": 1},
    },
    "Pipeline": {
        "metadata": {"name": "weekly-post", "namespace": "nebula"},
        "spec": {
            "schedule": "0 9 * * 1",
            "parameters": [{"name": "topic", "default": "gpus"}],
            "steps": [
                {"name": "write", "llm": {"model": "llama3", "prompt": "About {{ params.topic }}"}},
                {
                    "name": "render",
                    "needs": ["write"],
                    "comfyui": {
                        "workflow": "sdxl-portrait",
                        "parameters": {"seed": 7, "prompt": "{{ steps.write.output }}"},
                    },
                },
            ],
        },
        "status": {"lastRunResult": "WaitingForApproval"},
    },
    "GitSource": {
        "metadata": {"name": "homelab", "namespace": "nebula"},
        "spec": {
            "url": "https://github.com/acme/homelab.git",
            "path": "clusters/home",
            "secretRef": {"name": "git"},
        },
        "status": {
            "resources": 26,
            "lastSyncResult": "Applied",
        },
    },
}


@pytest.mark.parametrize("kind", sorted(resources.KINDS))
def test_an_example_and_its_model_dump_both_pass_the_kinds_crd(kind: str) -> None:
    document = {**API, "kind": kind, **EXAMPLES[kind]}
    cls = resources.KINDS[kind]
    crd = crds.crd(cls)
    assert crds.errors(crd, document) == []
    dumped = cls.model_validate(document).model_dump(mode="json", by_alias=True)
    assert crds.errors(crd, dumped) == []


def _free_form(schema: dict[str, Any], path: str) -> Iterator[str]:
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        yield path
        return
    for name, sub in schema.get("properties", {}).items():
        yield from _free_form(sub, f"{path}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _free_form(schema["additionalProperties"], f"{path}.*")
    if "items" in schema:
        yield from _free_form(schema["items"], f"{path}[]")


def test_only_the_deliberately_free_form_fields_escape_the_schema() -> None:
    # Each of these says so in the model (WithJsonSchema); anything else loosening a CRD is a bug.
    found = sorted(
        f"{cls.__name__}:{path}"
        for cls in resources.KINDS.values()
        for path in _free_form(_spec(cls), "spec")
    )
    assert found == [
        "ComfyWorkflow:spec.graph",
        "ComfyWorkflow:spec.parameters[].default",
        "Pipeline:spec.steps[].comfyui.parameters.*",
    ]
