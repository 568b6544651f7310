"""The committed CRDs match the models, break no API-server rule, and validate like a server."""

from __future__ import annotations

import copy
import io
import pathlib
import subprocess
from typing import Any

import pytest
import ruamel.yaml

from nebula import crds, resources
from nebula.crds import generating, structural, validating
from nebula.resources import NebulaNode

CRDS = pathlib.Path(__file__).resolve().parents[2] / "crds"
SCHEMA = "spec.versions[0].schema.openAPIV3Schema"


def _node_crd() -> dict[str, Any]:
    return crds.crd(NebulaNode)


def _node() -> dict[str, Any]:
    """A NebulaNode as its agent reports it: a GPU box with a Ready condition."""
    return {
        "apiVersion": "nebula.dev/v1alpha1",
        "kind": "NebulaNode",
        "metadata": {"name": "gpu-box", "labels": {"nebula.dev/role": "ai"}},
        "spec": {
            "role": "ai",
            "runtime": "k3s",
            "addresses": [{"type": "tailscale", "address": "gpu-box.tail1234.ts.net"}],
            "hardware": {"gpu": {"vendor": "nvidia", "minVram": "8Gi"}},
        },
        "status": {
            "observedGeneration": 1,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "HardwareMatches",
                    "message": "",
                    "lastTransitionTime": "2024-05-01T10:00:00Z",
                }
            ],
            "hardware": {
                "cpu": {"model": "Ryzen 7 5800X", "cores": 16},
                "memory": "64Gi",
                "gpus": [{"vendor": "nvidia", "model": "RTX 3060", "vramTotal": "12Gi"}],
            },
            "gpu": "RTX 3060",
            "vram": "12Gi",
            "vramTier": "8Gi+",
        },
    }


# --- The committed folder --------------------------------------------------------------------


def test_committed_crds_are_byte_identical_to_freshly_generated_ones(
    tmp_path: pathlib.Path,
) -> None:
    generating.write(tmp_path)
    fresh = {path.name: path.read_bytes() for path in tmp_path.glob("*.yaml")}
    committed = {path.name: path.read_bytes() for path in CRDS.glob("*.yaml")}
    stale = sorted(
        name for name in fresh.keys() | committed.keys() if fresh.get(name) != committed.get(name)
    )
    assert not stale, (
        f"crds/ does not match nebula/resources ({', '.join(stale)}): run `nebula crds` "
        "(or write(pathlib.Path('crds')) from nebula.crds) and commit the result"
    )
    assert crds.diff(CRDS) == [], "crds/ is out of date: run `nebula crds`"


def test_write_updates_only_what_differs_and_removes_stale_kinds(tmp_path: pathlib.Path) -> None:
    (tmp_path / "README.md").write_text("not generated\n")
    (tmp_path / "nebula.dev_oldkinds.yaml").write_text("stale\n")
    assert "nebula.dev_oldkinds.yaml" in crds.write(tmp_path)
    assert crds.write(tmp_path) == []
    (tmp_path / "nebula.dev_pipelines.yaml").write_text("edited by hand\n")
    (tmp_path / "nebula.dev_gitsources.yaml").unlink()
    assert crds.diff(tmp_path) == ["nebula.dev_gitsources.yaml", "nebula.dev_pipelines.yaml"]
    assert crds.write(tmp_path) == ["nebula.dev_gitsources.yaml", "nebula.dev_pipelines.yaml"]
    assert crds.diff(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*generating.all_crds(), generating.KUSTOMIZATION, "README.md"]
    )


def test_every_file_starts_with_the_do_not_edit_header() -> None:
    for path in CRDS.glob("*.yaml"):
        assert path.read_text().startswith(generating.HEADER), path.name


def test_kustomize_builds_all_seven_crds_exactly_as_generated() -> None:
    # `kubectl apply --dry-run=client` needs an API server even with --validate=false (it asks
    # for the API group list); `kubectl kustomize` parses every file with Go's YAML offline.
    built = subprocess.run(
        ["kubectl", "kustomize", str(CRDS)], capture_output=True, text=True, check=True, timeout=60
    )
    documents = list(ruamel.yaml.YAML(typ="safe", pure=True).load_all(io.StringIO(built.stdout)))
    assert [d["kind"] for d in documents] == ["CustomResourceDefinition"] * 7
    by_name = {d["metadata"]["name"]: d for d in documents}
    expected = {d["metadata"]["name"]: d for d in generating.all_crds().values()}
    assert by_name == expected


# --- Structural rules --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(resources.KINDS))
def test_generated_crd_breaks_no_structural_rule(kind: str) -> None:
    assert crds.violations(crds.crd(resources.KINDS[kind])) == []


def _tiny_crd(spec: dict[str, Any], **root: Any) -> dict[str, Any]:
    """A minimal valid CRD whose spec schema (and root keywords) a test replaces."""
    schema = {"type": "object", "properties": {"metadata": {"type": "object"}, "spec": spec}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.nebula.dev"},
        "spec": {
            "group": "nebula.dev",
            "names": {
                "kind": "Widget",
                "listKind": "WidgetList",
                "plural": "widgets",
                "singular": "widget",
                "shortNames": ["wd"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1alpha1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {**schema, **root}},
                    "additionalPrinterColumns": [
                        {"name": "Size", "type": "string", "jsonPath": ".spec.size"}
                    ],
                }
            ],
        },
    }


GOOD_SPEC: dict[str, Any] = {
    "type": "object",
    "properties": {
        "size": {"type": "string"},
        "port": {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": True,
        },
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "graph": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
        "ratio": {"type": "number", "minimum": 0, "exclusiveMinimum": True},
    },
    "anyOf": [{"required": ["size"]}, {"required": ["port"]}],
}


def _with(path: str, value: Any) -> dict[str, Any]:
    """GOOD_SPEC with the node at a dotted path (``properties.size``) replaced or added."""
    spec = copy.deepcopy(GOOD_SPEC)
    *parents, last = path.split(".")
    node = spec
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[last] = value
    return spec


def test_the_structural_checker_accepts_the_good_patterns_it_is_tested_against() -> None:
    # Control for the cases below: each breaks exactly one rule of this otherwise valid CRD.
    assert crds.violations(_tiny_crd(GOOD_SPEC)) == []


SPEC = f"{SCHEMA}.properties[spec]"


@pytest.mark.parametrize(
    ("crd", "expected"),
    [
        pytest.param(
            _tiny_crd({"$ref": "#/definitions/Spec"}),
            f"{SPEC}.$ref: Forbidden",
            id="ref",
        ),
        pytest.param(
            _tiny_crd(_with("properties.size", {"maxLength": 3})),
            f"{SPEC}.properties[size].type: Required value",
            id="missing-type",
        ),
        pytest.param(
            _tiny_crd(_with("additionalProperties", {"type": "string"})),
            f"{SPEC}.additionalProperties: Forbidden: must not be used together with properties",
            id="additional-properties-with-properties",
        ),
        pytest.param(
            _tiny_crd(_with("properties.labels.additionalProperties", False)),
            f"{SPEC}.properties[labels].additionalProperties: Forbidden: must not be false",
            id="additional-properties-false",
        ),
        pytest.param(
            _tiny_crd(_with("anyOf.0.description", "either")),
            f"{SPEC}.anyOf[0].description: Forbidden",
            id="description-inside-any-of",
        ),
        pytest.param(
            _tiny_crd(_with("anyOf.1.type", "object")),
            f"{SPEC}.anyOf[1].type: Forbidden",
            id="type-inside-any-of",
        ),
        pytest.param(
            _tiny_crd(_with("anyOf.1.properties", {"color": {"pattern": "^#"}})),
            f"{SPEC}.anyOf[1].properties[color]: Required value: must be declared outside",
            id="field-only-inside-any-of",
        ),
        pytest.param(
            _tiny_crd(
                GOOD_SPEC,
                properties={
                    "metadata": {"type": "object", "properties": {"labels": {"type": "object"}}},
                    "spec": GOOD_SPEC,
                },
            ),
            f"{SCHEMA}.properties[metadata].properties[labels]: Forbidden",
            id="metadata-restricted-beyond-name",
        ),
        pytest.param(
            _tiny_crd(
                GOOD_SPEC,
                properties={
                    "metadata": {"type": "object", "required": ["name"]},
                    "spec": GOOD_SPEC,
                },
            ),
            f"{SCHEMA}.properties[metadata].required: Forbidden",
            id="metadata-with-required",
        ),
        pytest.param(
            _tiny_crd(_with("propertyNames", {"pattern": "^[a-z]+$"})),
            f"{SPEC}.propertyNames: Forbidden: unknown field",
            id="unknown-key",
        ),
        pytest.param(
            _tiny_crd(_with("properties.ratio.exclusiveMinimum", 0)),
            f"{SPEC}.properties[ratio].exclusiveMinimum: Invalid value: must be a boolean",
            id="numeric-exclusive-minimum",
        ),
        pytest.param(
            _tiny_crd(_with("properties.extra", {"type": "object"})),
            f"{SPEC}.properties[extra]: Invalid value: an object with neither properties",
            id="object-without-properties",
        ),
        pytest.param(
            _tiny_crd(_with("properties.tags.uniqueItems", True)),
            f"{SPEC}.properties[tags].uniqueItems: Forbidden",
            id="unique-items",
        ),
        pytest.param(
            _tiny_crd(_with("properties.tags", {"type": "array"})),
            f"{SPEC}.properties[tags].items: Required value",
            id="array-without-items",
        ),
        pytest.param(
            _tiny_crd(_with("properties.port.anyOf", [{"type": "string"}, {"type": "integer"}])),
            f"{SPEC}.properties[port].anyOf[0].type: Forbidden",
            id="int-or-string-in-the-wrong-order",
        ),
        pytest.param(
            _tiny_crd(_with("properties.size.default", 3)),
            f"{SPEC}.properties[size].default: Invalid value",
            id="default-of-the-wrong-type",
        ),
        pytest.param(
            _tiny_crd(_with("properties.size.pattern", "^(?!x)")),
            f"{SPEC}.properties[size].pattern: Invalid value: lookaround",
            id="pattern-not-re2",
        ),
        pytest.param(
            _tiny_crd(_with("properties.size.definitions", {})),
            f"{SPEC}.properties[size].definitions: Forbidden: not allowed in a v1 CRD",
            id="definitions",
        ),
        pytest.param(
            _tiny_crd(GOOD_SPEC, additionalProperties={"type": "string"}),
            f"{SCHEMA}.additionalProperties: Forbidden",
            id="additional-properties-at-the-root",
        ),
    ],
)
def test_the_structural_checker_reports_each_broken_rule_at_its_path(
    crd: dict[str, Any], expected: str
) -> None:
    found = crds.violations(crd)
    assert any(message.startswith(expected) for message in found), found


def test_the_structural_checker_reports_bad_names_and_printer_columns() -> None:
    crd = _tiny_crd(GOOD_SPEC)
    crd["spec"]["names"]["shortNames"] = ["WD"]
    crd["spec"]["names"]["plural"] = "Widgets"
    version = crd["spec"]["versions"][0]
    version["additionalPrinterColumns"] = [
        {"name": "Size", "type": "string", "jsonPath": "spec.size"},
        {"name": "Color", "type": "string", "jsonPath": ".spec.color"},
        {"name": "Count", "type": "int", "jsonPath": ".spec.size"},
    ]
    found = crds.violations(crd)
    columns = "spec.versions[0].additionalPrinterColumns"
    for expected in (
        "spec.names.shortNames[0]: Invalid value: 'WD'",
        "spec.names.plural: Invalid value: 'Widgets'",
        "metadata.name: Invalid value",  # no longer <plural>.<group>
        f"{columns}[0].jsonPath: Invalid value: 'spec.size': must start with '.'",
        f"{columns}[1].jsonPath: Invalid value: '.spec.color' names no declared field",
        f"{columns}[2].type: Unsupported value: 'int'",
    ):
        assert any(message.startswith(expected) for message in found), (expected, found)


# --- Names and printer columns ---------------------------------------------------------------


def test_nebula_node_is_cluster_scoped_with_short_name_nn_and_its_columns() -> None:
    crd = _node_crd()
    assert crd["metadata"]["name"] == "nebulanodes.nebula.dev"
    assert crd["spec"]["scope"] == "Cluster"
    assert crd["spec"]["names"] == {
        "categories": ["nebula"],
        "kind": "NebulaNode",
        "listKind": "NebulaNodeList",
        "plural": "nebulanodes",
        "shortNames": ["nn"],
        "singular": "nebulanode",
    }
    columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    default_view = [c["name"].upper() for c in columns if c.get("priority", 0) == 0]
    assert default_view == ["ROLE", "GPU", "VRAM", "READY", "AGE"]


@pytest.mark.parametrize("kind", sorted(resources.KINDS))
def test_every_kind_has_ready_and_age_columns_the_nebula_category_and_a_status(kind: str) -> None:
    crd = crds.crd(resources.KINDS[kind])
    (version,) = crd["spec"]["versions"]
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Age"] == {
        "jsonPath": ".metadata.creationTimestamp",
        "name": "Age",
        "type": "date",
    }
    assert crd["spec"]["names"]["categories"] == ["nebula"]
    assert version["subresources"] == {"status": {}}
    assert (version["served"], version["storage"]) == (True, True)
    root = version["schema"]["openAPIV3Schema"]
    assert root["properties"]["metadata"] == {"type": "object"}
    assert root["required"] == ["spec"]


# --- The validator -----------------------------------------------------------------------------


def test_a_valid_nebula_node_passes_the_validator() -> None:
    NebulaNode.model_validate(_node())  # the example is one the model accepts
    assert crds.errors(_node_crd(), _node()) == []


def test_what_the_model_writes_for_a_node_passes_the_validator() -> None:
    # Controllers write model dumps: every default and every null of an optional field included.
    dumped = NebulaNode.model_validate(_node()).model_dump(mode="json", by_alias=True)
    assert crds.errors(_node_crd(), dumped) == []


def test_an_undeclared_status_field_is_reported_as_pruned() -> None:
    # kopf stores handler results under status.<handler>; a real API server drops them.
    node = _node()
    node["status"]["on_create"] = {"message": "done"}
    node["status"]["hardware"]["gpus"][0]["fanSpeed"] = 40
    assert crds.errors(_node_crd(), node) == [
        "status.hardware.gpus[0].fanSpeed: not declared in the schema (the API server prunes it)",
        "status.on_create: not declared in the schema (the API server prunes it)",
    ]


def test_null_passes_in_a_nullable_field_and_is_reported_elsewhere() -> None:
    node = _node()
    node["spec"]["kubernetesNodeName"] = None
    node["spec"]["hardware"]["gpu"]["minVram"] = None  # nullable int-or-string
    node["status"]["vramTier"] = None  # nullable enum
    assert crds.errors(_node_crd(), node) == []
    node["spec"]["role"] = None
    assert crds.errors(_node_crd(), node) == [
        "spec.role: None is not of type 'string'",
        "spec.role: None is not one of ['control', 'worker', 'ai', 'storage']",
    ]


def test_a_quantity_passes_as_an_int_or_a_string_but_not_as_a_float() -> None:
    node = _node()
    node["status"]["hardware"]["memory"] = 68719476736
    node["spec"]["hardware"]["gpu"]["minVram"] = "8Gi"
    assert crds.errors(_node_crd(), node) == []
    node["status"]["hardware"]["memory"] = 1.5  # the API server refuses it too
    (message,) = crds.errors(_node_crd(), node)
    assert message.startswith("status.hardware.memory: 1.5 is not valid under any")


def test_the_validator_checks_date_times_like_the_api_server() -> None:
    node = _node()
    node["status"]["lastHeartbeat"] = "yesterday"
    assert crds.errors(_node_crd(), node) == [
        "status.lastHeartbeat: 'yesterday' is not a 'date-time'"
    ]


def test_the_validator_turns_boolean_exclusive_bounds_back_into_numbers() -> None:
    schema = {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": 1}
    assert validating.to_json_schema(schema) == {
        "type": "number",
        "exclusiveMinimum": 0,
        "maximum": 1,
    }
    assert validating.schema_errors(schema, 0) == [
        "(root): 0 is less than or equal to the minimum of 0"
    ]
    assert validating.schema_errors(schema, 0.5) == []


# --- The package ------------------------------------------------------------------------------


@pytest.mark.parametrize("module", [crds, generating, structural, validating])
def test_public_names_are_sorted_and_exist(module: Any) -> None:
    assert module.__all__ == sorted(module.__all__)
    for name in module.__all__:
        assert hasattr(module, name), name
