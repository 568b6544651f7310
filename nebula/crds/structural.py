"""Check a CRD against the rules the API server enforces on ``apiextensions.k8s.io/v1`` CRDs.

Called by the tests, on every generated CRD, so a CRD that a real cluster would refuse (or accept
and then prune to nothing) fails here instead of at install time; the emulator the other tests
use accepts any CRD. It implements the structural-schema rules
(https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#specifying-a-structural-schema)
and the v1 restrictions on keywords, names and printer columns, plus two checks a cluster would
not make but a reader wants: printer columns must point at declared fields, and an object must
not be declared in a way that prunes all its fields. It only reads the CRD and never fixes it:
every violation is reported, each message starting with the path of the offending node in the
API server's own notation (``spec.versions[0].schema.openAPIV3Schema.properties[spec]...``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from nebula.crds import validating

__all__ = ["FORBIDDEN_KEYS", "SCHEMA_KEYS", "violations"]

SCHEMA_KEYS = frozenset(
    {
        "id", "$schema", "$ref", "description", "type", "format", "title", "default", "maximum",
        "exclusiveMaximum", "minimum", "exclusiveMinimum", "maxLength", "minLength", "pattern",
        "maxItems", "minItems", "uniqueItems", "multipleOf", "enum", "maxProperties",
        "minProperties", "required", "items", "allOf", "oneOf", "anyOf", "not", "properties",
        "additionalProperties", "patternProperties", "dependencies", "additionalItems",
        "definitions", "externalDocs", "example", "nullable",
        "x-kubernetes-preserve-unknown-fields", "x-kubernetes-embedded-resource",
        "x-kubernetes-int-or-string", "x-kubernetes-list-map-keys", "x-kubernetes-list-type",
        "x-kubernetes-map-type", "x-kubernetes-validations",
    }
)  # fmt: skip
"""Every field of ``JSONSchemaProps`` in apiextensions v1: any other key is unknown."""

FORBIDDEN_KEYS = frozenset(
    {"id", "$schema", "$ref", "definitions", "patternProperties", "dependencies", "additionalItems"}
)
"""Fields of ``JSONSchemaProps`` that a v1 CRD may not use (``uniqueItems: true`` neither)."""

_TYPES = frozenset({"object", "array", "string", "integer", "number", "boolean"})
_COLUMN_TYPES = frozenset({"integer", "number", "string", "boolean", "date"})
_JUNCTORS = ("allOf", "anyOf", "oneOf", "not")
# Inside a junctor only value validations may appear, no shape: these keys are forbidden there.
_NOT_IN_JUNCTOR = ("description", "type", "default", "additionalProperties", "nullable")
_INT_OR_STRING_ANY_OF = [{"type": "integer"}, {"type": "string"}]
_DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# RE2, the API server's regular expressions, has no lookaround and no backreferences.
_NOT_RE2 = re.compile(r"\(\?<?[=!]|\\[1-9]")
_JSON_PATH_STEP = re.compile(r"\.([^.\[]+)|\[[^\]]*\]")


def violations(crd: Mapping[str, Any]) -> list[str]:
    """Every rule the CRD breaks, one ``<path>: <problem>`` message each; empty when it is fine."""
    found = list(_names(crd))
    versions = crd.get("spec", {}).get("versions") or []
    if sum(1 for version in versions if version.get("storage") is True) != 1:
        found.append("spec.versions: Invalid value: exactly one version must be the storage one")
    for index, version in enumerate(versions):
        path = f"spec.versions[{index}]"
        schema = version.get("schema", {}).get("openAPIV3Schema")
        if not isinstance(schema, Mapping):
            found.append(f"{path}.schema.openAPIV3Schema: Required value")
            continue
        found.extend(_root(schema, f"{path}.schema.openAPIV3Schema"))
        found.extend(_columns(version.get("additionalPrinterColumns") or [], schema, path))
    return found


def _names(crd: Mapping[str, Any]) -> Iterator[str]:
    spec = crd.get("spec", {})
    names = spec.get("names", {})
    for key in ("plural", "singular"):
        if not _DNS_1035_LABEL.match(str(names.get(key, ""))):
            yield f"spec.names.{key}: Invalid value: {names.get(key)!r}: must be a lowercase label"
    for key in ("shortNames", "categories"):
        for index, name in enumerate(names.get(key) or []):
            if not _DNS_1035_LABEL.match(str(name)):
                yield f"spec.names.{key}[{index}]: Invalid value: {name!r}: must be lowercase"
    for key in ("kind", "listKind"):
        if not names.get(key):
            yield f"spec.names.{key}: Required value"
    expected = f"{names.get('plural')}.{spec.get('group')}"
    if crd.get("metadata", {}).get("name") != expected:
        yield f"metadata.name: Invalid value: must be spec.names.plural+'.'+spec.group ({expected})"
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        yield f"spec.scope: Unsupported value: {spec.get('scope')!r}"


def _root(schema: Mapping[str, Any], path: str) -> Iterator[str]:
    if schema.get("type") != "object":
        yield f"{path}.type: Invalid value: the root must be of type object"
    if "additionalProperties" in schema:
        yield f"{path}.additionalProperties: Forbidden: not allowed at the root"
    if schema.get("nullable") is True:
        yield f"{path}.nullable: Forbidden: the root cannot be null"
    properties = schema.get("properties", {})
    for name in ("apiVersion", "kind"):
        if name in properties and properties[name].get("type") != "string":
            yield f"{path}.properties[{name}].type: Invalid value: must be string"
    rest = dict(schema)
    if "metadata" in properties:
        yield from _metadata(properties["metadata"], f"{path}.properties[metadata]")
        rest["properties"] = {k: v for k, v in properties.items() if k != "metadata"}
    yield from _node(rest, path, require_type=True)


def _metadata(schema: Mapping[str, Any], path: str) -> Iterator[str]:
    """metadata is the API server's ObjectMeta: a CRD may only restrict name and generateName."""
    if schema.get("type", "object") != "object":
        yield f"{path}.type: Invalid value: must be object"
    for key in schema:
        if key not in ("type", "properties"):
            yield f"{path}.{key}: Forbidden: metadata may only restrict name and generateName"
    for name, sub in schema.get("properties", {}).items():
        if name not in ("name", "generateName"):
            yield f"{path}.properties[{name}]: Forbidden: only name and generateName may be set"
        else:
            yield from _node(sub, f"{path}.properties[{name}]", require_type=False)


def _node(schema: Mapping[str, Any], path: str, *, require_type: bool) -> Iterator[str]:
    """The rules for one schema node outside any junctor, then for everything below it."""
    yield from _keys(schema, path)
    preserve = schema.get("x-kubernetes-preserve-unknown-fields")
    int_or_string = schema.get("x-kubernetes-int-or-string") is True
    kind = schema.get("type")
    if kind is not None and kind not in _TYPES:
        yield f"{path}.type: Unsupported value: {kind!r}"
    if require_type and not kind and not int_or_string and preserve is not True:
        yield f"{path}.type: Required value: must not be empty for specified fields"
    if int_or_string and kind:
        yield f"{path}.type: Forbidden: must be empty with x-kubernetes-int-or-string"
    if preserve is not None and preserve is not True:
        yield f"{path}.x-kubernetes-preserve-unknown-fields: Invalid value: must be true or absent"
    if "nullable" in schema and not isinstance(schema["nullable"], bool):
        yield f"{path}.nullable: Invalid value: must be a boolean"
    yield from _bounds(schema, path)
    yield from _shape(schema, path)
    yield from _value_checks(schema, path)
    for key in _JUNCTORS:
        if key in schema:
            members = schema[key] if key != "not" else [schema[key]]
            for index, member in enumerate(members):
                where = f"{path}.{key}[{index}]" if key != "not" else f"{path}.not"
                skip = _int_or_string_pattern(schema, key, index)
                yield from _junctor(member, where, key, outside=schema, int_or_string=skip)
    for name, sub in (schema.get("properties") or {}).items():
        yield from _node(sub, f"{path}.properties[{name}]", require_type=True)
    if isinstance(schema.get("additionalProperties"), Mapping):
        yield from _node(
            schema["additionalProperties"], f"{path}.additionalProperties", require_type=True
        )
    if isinstance(schema.get("items"), Mapping):
        yield from _node(schema["items"], f"{path}.items", require_type=True)


def _keys(schema: Mapping[str, Any], path: str) -> Iterator[str]:
    for key in schema:
        if key not in SCHEMA_KEYS:
            yield f"{path}.{key}: Forbidden: unknown field (not in JSONSchemaProps)"
        elif key in FORBIDDEN_KEYS:
            yield f"{path}.{key}: Forbidden: not allowed in a v1 CRD"
    if schema.get("uniqueItems") is True:
        yield f"{path}.uniqueItems: Forbidden: use x-kubernetes-list-type: set"


def _bounds(schema: Mapping[str, Any], path: str) -> Iterator[str]:
    for bound in ("Minimum", "Maximum"):
        flag = f"exclusive{bound}"
        if flag in schema and not isinstance(schema[flag], bool):
            yield (
                f"{path}.{flag}: Invalid value: must be a boolean (OpenAPI v3.0), with the bound "
                f"in {bound.lower()}"
            )
        elif schema.get(flag) is True and bound.lower() not in schema:
            yield f"{path}.{flag}: Invalid value: needs {bound.lower()} to be set"


def _shape(schema: Mapping[str, Any], path: str) -> Iterator[str]:
    """Objects and arrays: what they hold must be declared, and declared one way only."""
    extra = schema.get("additionalProperties")
    if extra is False:
        yield f"{path}.additionalProperties: Forbidden: must not be false (fields are pruned)"
    elif extra is not None and "properties" in schema:
        yield f"{path}.additionalProperties: Forbidden: must not be used together with properties"
    if schema.get("type") == "object" and not (
        schema.get("properties")
        or isinstance(extra, Mapping)
        or schema.get("x-kubernetes-preserve-unknown-fields") is True
        or schema.get("x-kubernetes-embedded-resource") is True
        or schema.get("maxProperties") == 0
    ):
        yield (
            f"{path}: Invalid value: an object with neither properties, additionalProperties nor "
            "x-kubernetes-preserve-unknown-fields is pruned to {}"
        )
    if schema.get("type") == "array":
        if "items" not in schema:
            yield f"{path}.items: Required value: must be specified for arrays"
        elif not isinstance(schema["items"], Mapping):
            yield f"{path}.items: Invalid value: must be one schema, not a list"
    list_type = schema.get("x-kubernetes-list-type")
    if list_type is not None and list_type not in ("atomic", "set", "map"):
        yield f"{path}.x-kubernetes-list-type: Unsupported value: {list_type!r}"


def _value_checks(schema: Mapping[str, Any], path: str) -> Iterator[str]:
    """Patterns the API server can compile, defaults it would accept."""
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        try:
            re.compile(pattern)
        # Not even a Python regular expression: certainly not an RE2 one.
        except re.error as error:
            yield f"{path}.pattern: Invalid value: {error}"
        else:
            if _NOT_RE2.search(pattern):
                yield f"{path}.pattern: Invalid value: lookaround and backreferences are not RE2"
    if "default" in schema:
        without = {k: v for k, v in schema.items() if k != "default"}
        for problem in validating.schema_errors(without, schema["default"]):
            yield f"{path}.default: Invalid value: {problem}"


def _int_or_string_pattern(schema: Mapping[str, Any], key: str, index: int) -> bool:
    """Whether this junctor member is one of the two int-or-string forms the server allows."""
    if schema.get("x-kubernetes-int-or-string") is not True:
        return False
    if key == "anyOf":
        return bool(schema["anyOf"] == _INT_OR_STRING_ANY_OF)
    return key == "allOf" and index == 0 and schema["allOf"][0] == {"anyOf": _INT_OR_STRING_ANY_OF}


def _junctor(
    member: Any, path: str, junctor: str, *, outside: Mapping[str, Any], int_or_string: bool
) -> Iterator[str]:
    """A member of allOf/anyOf/oneOf/not: value validations only, on fields declared outside."""
    if not isinstance(member, Mapping):
        yield f"{path}: Invalid value: must be a schema"
        return
    if int_or_string:
        return
    yield from _keys(member, path)
    for key in member:
        if key in _NOT_IN_JUNCTOR or key.startswith("x-kubernetes-"):
            yield f"{path}.{key}: Forbidden: must not be used inside {junctor}"
    for name, sub in (member.get("properties") or {}).items():
        declared = (outside.get("properties") or {}).get(name)
        if declared is None:
            yield f"{path}.properties[{name}]: Required value: must be declared outside it too"
        else:
            where = f"{path}.properties[{name}]"
            yield from _junctor(sub, where, junctor, outside=declared, int_or_string=False)
    if isinstance(member.get("items"), Mapping):
        if not isinstance(outside.get("items"), Mapping):
            yield f"{path}.items: Required value: must be declared outside it too"
        else:
            items, where = member["items"], f"{path}.items"
            yield from _junctor(
                items, where, junctor, outside=outside["items"], int_or_string=False
            )
    for key in _JUNCTORS:
        if key in member:
            nested = member[key] if key != "not" else [member[key]]
            for index, sub in enumerate(nested):
                where = f"{path}.{key}[{index}]" if key != "not" else f"{path}.not"
                yield from _junctor(sub, where, key, outside=outside, int_or_string=False)


def _columns(columns: list[Any], schema: Mapping[str, Any], path: str) -> Iterator[str]:
    for index, column in enumerate(columns):
        where = f"{path}.additionalPrinterColumns[{index}]"
        if not column.get("name"):
            yield f"{where}.name: Required value"
        if column.get("type") not in _COLUMN_TYPES:
            yield f"{where}.type: Unsupported value: {column.get('type')!r}"
        priority = column.get("priority", 0)
        if not isinstance(priority, int) or priority < 0:
            yield f"{where}.priority: Invalid value: must be a non-negative integer"
        json_path = str(column.get("jsonPath", ""))
        if not json_path.startswith("."):
            yield f"{where}.jsonPath: Invalid value: {json_path!r}: must start with '.'"
        elif not _resolves(schema, json_path):
            yield f"{where}.jsonPath: Invalid value: {json_path!r} names no declared field"


def _resolves(schema: Mapping[str, Any], json_path: str) -> bool:
    """Whether a simple JSONPath (fields, indices, filters) leads to a declared field."""
    steps = [m.group(1) for m in _JSON_PATH_STEP.finditer(json_path)]
    if steps[:1] == ["metadata"]:
        return True  # ObjectMeta: the API server's, not declared in the CRD
    node: Mapping[str, Any] = schema
    for step in steps:
        if node.get("x-kubernetes-preserve-unknown-fields") is True:
            return True
        if step is None:  # an index or a filter: one item of a list
            node = node.get("items") or {}
        elif step in (node.get("properties") or {}):
            node = node["properties"][step]
        elif isinstance(node.get("additionalProperties"), Mapping):
            node = node["additionalProperties"]
        else:
            return False
    return True
