"""The printer columns of a kind, evaluated like ``kubectl get`` does, for the web UI's tables.

Pure data, no I/O. Only the JSONPath subset the kinds' columns use is understood: fields
(``.spec.role``), list items (``.spec.domains[0].host``) and one filter
(``.status.conditions[?(@.type=="Ready")].status``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from nebula.resources import base

__all__ = ["columns", "evaluate"]

_STEP_RE = re.compile(r'\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\[\?\(@\.(\w+)=="([^"]*)"\)\]')
_SHOWN_ELSEWHERE = {"Ready", "Status", "Age"}  # the UI has its own columns for these


def evaluate(path: str, document: Mapping[str, Any]) -> Any:
    """The value at a column's JSONPath, or None where the document has none."""
    value: Any = document
    for field, index, key, wanted in _STEP_RE.findall(path):
        if field:
            value = value.get(field) if isinstance(value, Mapping) else None
        elif index:
            position = int(index)
            value = value[position] if isinstance(value, list) and position < len(value) else None
        elif isinstance(value, list):
            matching = (v for v in value if isinstance(v, Mapping) and v.get(key) == wanted)
            value = next(matching, None)
        else:
            value = None
        if value is None:
            return None
    return value


def columns(
    info: base.KindInfo, document: Mapping[str, Any], status: Mapping[str, Any]
) -> list[tuple[str, str]]:
    """Each of the kind's own columns (not Ready, Status or Age) with its value as text."""
    whole = {**document, "status": status}
    shown = []
    for column in info.printer_columns:
        if column.name in _SHOWN_ELSEWHERE:
            continue
        value = evaluate(column.json_path, whole)
        shown.append((column.name, "" if value is None else str(value)))
    return shown
