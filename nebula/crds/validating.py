"""Check objects against a CRD's schema the way a strict API server would, without a cluster.

Called by the tests (every example manifest, every status a controller writes) and by
:mod:`nebula.crds.generating` to keep only defaults the API server would accept. The emulator the
tests run kopf against checks no schema, so this is where an undeclared field (which a real API
server silently prunes), a null in a field that is not nullable (pruned as well) or a value of the
wrong type shows up. It reads CRDs and never writes anything; it must never loosen what the CRD
says: when in doubt it reports.

The OpenAPI v3 dialect of CRDs is translated into JSON Schema 2020-12 for ``jsonschema``:
``nullable`` becomes a ``null`` type, ``x-kubernetes-int-or-string`` an integer-or-string type,
boolean ``exclusiveMinimum``/``exclusiveMaximum`` their numeric JSON Schema forms, and every object
that declares its fields and does not preserve unknown ones refuses any other field.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import jsonschema  # type: ignore[import-untyped, unused-ignore]  # no stubs in the venv

__all__ = ["Validator", "errors", "schema_errors", "to_json_schema", "validator"]

Schema = dict[str, Any]

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
# Keywords of the CRD dialect that JSON Schema does not know, or knows with another meaning;
# each is translated (or deliberately ignored) by _translate.
_KUBERNETES_ONLY = frozenset(
    {
        "nullable",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-int-or-string",
        "x-kubernetes-embedded-resource",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-map-type",
        "x-kubernetes-validations",  # CEL rules: not evaluated here
        "exclusiveMinimum",
        "exclusiveMaximum",
        "example",
        "externalDocs",
    }
)
# ObjectMeta is validated by the API server itself, not by the CRD schema; these are the parts
# a manifest commonly gets wrong.
_OBJECT_META: Schema = {
    "type": "object",
    "properties": {
        # JSON null decodes to the zero value in ObjectMeta, so null is accepted everywhere.
        "name": {"type": ["string", "null"]},
        "generateName": {"type": ["string", "null"]},
        "namespace": {"type": ["string", "null"]},
        "labels": {"type": ["object", "null"], "additionalProperties": {"type": "string"}},
        "annotations": {"type": ["object", "null"], "additionalProperties": {"type": "string"}},
    },
}


class Validator(Protocol):
    """The part of a ``jsonschema`` validator the callers use."""

    def iter_errors(self, instance: Any) -> Iterable[Any]: ...


def validator(crd: Mapping[str, Any], version: str | None = None) -> Validator:
    """A validator for whole objects of this CRD's kind (the storage version unless named).

    Raises KeyError when the CRD has no such version. Build it once and reuse it: every call
    translates the schema again.
    """
    schema = to_json_schema(_openapi_schema(crd, version), root=True)
    return _validator(schema)


def errors(crd: Mapping[str, Any], obj: Any, version: str | None = None) -> list[str]:
    """Every problem of ``obj`` as ``<field path>: <message>``, sorted; empty when it is valid."""
    return _messages(validator(crd, version), obj)


def schema_errors(schema: Mapping[str, Any], value: Any) -> list[str]:
    """Every problem of ``value`` against one node of a CRD schema (e.g. a field's default)."""
    return _messages(_validator(to_json_schema(schema)), value)


def to_json_schema(schema: Mapping[str, Any], *, root: bool = False) -> Schema:
    """The JSON Schema 2020-12 equivalent of a CRD OpenAPI v3 schema node, stricter on fields.

    ``root``: the node is a CRD's ``openAPIV3Schema``, whose ``metadata`` is the API server's
    ObjectMeta, not the (empty) object the CRD declares.
    """
    result = _translate(schema)
    if root:
        result.setdefault("properties", {})["metadata"] = _OBJECT_META
    return result


def _openapi_schema(crd: Mapping[str, Any], version: str | None) -> Mapping[str, Any]:
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version or (version is None and entry.get("storage")):
            schema: Mapping[str, Any] = entry["schema"]["openAPIV3Schema"]
            return schema
    raise KeyError(f"{crd['metadata']['name']} has no version {version or '(storage)'}")


def _translate(node: Mapping[str, Any]) -> Schema:
    out: Schema = {k: v for k, v in node.items() if k not in _KUBERNETES_ONLY}
    for key in ("anyOf", "oneOf", "allOf"):
        if key in node:
            out[key] = [_translate(member) for member in node[key]]
    if "not" in node:
        out["not"] = _translate(node["not"])
    if "properties" in node:
        out["properties"] = {name: _translate(sub) for name, sub in node["properties"].items()}
    if isinstance(node.get("additionalProperties"), Mapping):
        out["additionalProperties"] = _translate(node["additionalProperties"])
    if "items" in node:
        out["items"] = _translate(node["items"])
    preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
    if node.get("type") == "object" and not preserve and "additionalProperties" not in node:
        # The API server prunes what the schema does not declare; report it instead.
        out["additionalProperties"] = False
    if node.get("x-kubernetes-int-or-string") is True and "anyOf" not in node:
        out["type"] = ["integer", "string"]
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    for bound in ("Minimum", "Maximum"):
        if node.get(f"exclusive{bound}") is True and bound.lower() in node:
            out[f"exclusive{bound}"] = out.pop(bound.lower())
    if node.get("nullable") is True:
        out = _nullable(out)
    return out


def _nullable(schema: Schema) -> Schema:
    """The same schema with null allowed too (OpenAPI's ``nullable``, JSON Schema's type null)."""
    if any(key in schema for key in ("anyOf", "oneOf", "allOf", "not")):
        # A junctor would still refuse null: allow it beside the whole schema.
        return {"anyOf": [{"type": "null"}, schema]}
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        schema["type"] = [*types, "null"]
        if "enum" in schema:
            schema["enum"] = [*schema["enum"], None]
    return schema  # without a type, null is allowed already


def _date_time(value: object) -> bool:
    """RFC 3339, as Kubernetes checks ``format: date-time`` (jsonschema alone would not check)."""
    if not isinstance(value, str):
        return True
    if not _RFC3339.match(value):
        return False
    try:
        datetime.datetime.fromisoformat(value.replace("z", "Z").replace("t", "T"))
    # A well-formed string naming an impossible time (month 13, hour 25).
    except ValueError:
        return False
    return True


def _validator(schema: Schema) -> Validator:
    checker = jsonschema.FormatChecker(formats=())
    checker.checks("date-time")(_date_time)
    cls = jsonschema.Draft202012Validator
    cls.check_schema(schema)
    result: Validator = cls(schema, format_checker=checker)
    return result


def _messages(check: Validator, value: Any) -> list[str]:
    found: list[str] = []
    for error in check.iter_errors(value):
        path = _path(error.absolute_path)
        if error.validator == "additionalProperties" and error.validator_value is False:
            declared = error.schema.get("properties", {})
            for name in sorted(set(error.instance) - set(declared)):
                where = f"{path}.{name}" if path else name
                found.append(f"{where}: not declared in the schema (the API server prunes it)")
        else:
            found.append(f"{path or '(root)'}: {error.message}")
    return sorted(found)


def _path(parts: Iterable[str | int]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text
