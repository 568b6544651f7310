"""Round-trip editing of manifests: change one document, keep the rest of the file byte for byte.

Called by the change-request core (intents → commits). Only the edited document is re-written,
with ruamel.yaml's round-trip mode: comments, key order, quotes, flow style and the document's
own indentation are kept, so the diff shows only the lines that changed. Documents are found by
kind, namespace and name; this module never reads or writes files itself.
"""

from __future__ import annotations

import io
import itertools
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import ruamel.yaml
import ruamel.yaml.comments

from nebula import errors
from nebula.manifests import parsing
from nebula.resources import KINDS, ResourceKey

__all__ = [
    "Document",
    "add_to_list",
    "append_document",
    "documents",
    "edit",
    "remove_document",
    "remove_from_list",
    "set_path",
]

Document = ruamel.yaml.comments.CommentedMap
"""A document as round-trip mode loads it: a dict that remembers comments and formatting."""

_MARKER_RE = re.compile(r"^---(?:[ \t].*)?$", re.MULTILINE)
_KEY_LINE_RE = re.compile(r"^( *)[^\s#-][^\n]*:[ \t]*(#.*)?$")


def _chunks(text: str) -> list[tuple[str, str]]:
    """The file as (header, body) per document; a header is the ``---`` line and what precedes it.

    Text before the first ``---`` that is only comments belongs to the first document's header.
    """
    chunks: list[tuple[str, str]] = []
    start = 0
    header = ""
    for match in _MARKER_RE.finditer(text):
        end = min(match.end() + 1, len(text))
        before = text[start : match.start()]
        if chunks or _has_content(before):
            chunks.append((header, before))
            header = text[match.start() : end]
        else:
            header = before + text[match.start() : end]
        start = end
    chunks.append((header, text[start:]))
    return chunks


def _has_content(text: str) -> bool:
    return any(line.strip() and not line.lstrip().startswith("#") for line in text.splitlines())


def _key_of(body: str, namespace: str) -> ResourceKey | None:
    try:
        parsed = parsing.parse(body)
    # A document we cannot read is not the one being edited; editing it is refused below.
    except parsing.ParseError:
        return None
    data = parsed[0].data if parsed else None
    if not isinstance(data, dict) or data.get("kind") not in KINDS:
        return None
    metadata = data.get("metadata")
    if not isinstance(metadata, dict):
        metadata = {}
    cluster = KINDS[data["kind"]].info.scope == "Cluster"
    return ResourceKey(
        data["kind"],
        None if cluster else str(metadata.get("namespace") or namespace),
        str(metadata.get("name")),
    )


def documents(text: str, *, namespace: str = "default") -> Iterator[ResourceKey]:
    """The key of every resource declared in a file's text, in order."""
    for _, body in _chunks(text):
        key = _key_of(body, namespace)
        if key is not None:
            yield key


def _guess_indent(body: str) -> tuple[int, int, int]:
    """(mapping indent, sequence indent, dash offset) as the document itself writes them."""
    lines = [
        line for line in body.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    mapping, sequence = None, None
    for line, following in itertools.pairwise(lines):
        opener = _KEY_LINE_RE.match(line)
        if not opener:
            continue
        depth = len(opener[1])
        child = len(following) - len(following.lstrip(" "))
        if child <= depth:
            continue
        if following.lstrip(" ").startswith("- "):
            sequence = sequence or (child - depth, child - depth + 2)
        else:
            mapping = mapping or child - depth
        if mapping and sequence:
            break
    offset, seq = sequence or (0, 2)
    return mapping or 2, seq, offset


def _yaml(body: str) -> ruamel.yaml.YAML:
    yaml = ruamel.yaml.YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap a long line the user wrote on one line
    mapping, sequence, offset = _guess_indent(body)
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    return yaml


def _dump(yaml: ruamel.yaml.YAML, data: Any) -> str:
    stream = io.StringIO()
    yaml.dump(data, stream)
    return stream.getvalue()


def edit(
    text: str,
    key: ResourceKey,
    change: Callable[[Document], None],
    *,
    namespace: str = "default",
) -> str:
    """The text with ``change`` applied to the document declaring ``key``; other documents intact.

    Raises :class:`~nebula.errors.ResourceNotFound` when the file does not declare ``key``.
    """
    chunks = _chunks(text)
    for index, (header, body) in enumerate(chunks):
        if _key_of(body, namespace) != key:
            continue
        yaml = _yaml(body)
        document = yaml.load(body)
        change(document)
        chunks[index] = (header, _dump(yaml, document))
        return "".join(h + b for h, b in chunks)
    raise errors.ResourceNotFound(f"{key} is not declared in this file")


def append_document(text: str, data: dict[str, Any]) -> str:
    """The text with a new document added at the end, indented like the file's first document."""
    chunks = _chunks(text)
    yaml = _yaml(chunks[0][1])
    separator = "" if not text or text.endswith("\n") else "\n"
    return f"{text}{separator}---\n{_dump(yaml, data)}" if _has_content(text) else _dump(yaml, data)


def remove_document(text: str, key: ResourceKey, *, namespace: str = "default") -> str:
    """The text without the document declaring ``key`` (and its ``---`` line)."""
    chunks = _chunks(text)
    kept = [(h, b) for h, b in chunks if _key_of(b, namespace) != key]
    if len(kept) == len(chunks):
        raise errors.ResourceNotFound(f"{key} is not declared in this file")
    # Comments that open the file stay even when the first document goes.
    opening = chunks[0][0].split("---", 1)[0] if kept[:1] != chunks[:1] else ""
    return opening + "".join(h + b for h, b in kept)


# --- Changes to a document (what intents are made of) --------------------------------------


def _parent(document: Document, path: Sequence[str | int], *, create: bool) -> Any:
    node: Any = document
    for part in path[:-1]:
        if isinstance(node, dict) and part not in node:
            if not create:
                raise errors.ResourceNotFound(f"{'.'.join(map(str, path))}: not set")
            node[part] = ruamel.yaml.comments.CommentedMap()
        node = node[part]
    return node


def set_path(document: Document, path: Sequence[str | int], value: Any) -> None:
    """Sets a field, creating the mappings on the way; an equal value is left untouched."""
    parent = _parent(document, path, create=True)
    if parent.get(path[-1], object()) != value:
        parent[path[-1]] = value


def add_to_list(document: Document, path: Sequence[str | int], value: Any) -> bool:
    """Appends a value to a list field (created if missing) unless present; True if it was added."""
    parent = _parent(document, path, create=True)
    items = parent.get(path[-1])
    if items is None:
        parent[path[-1]] = items = ruamel.yaml.comments.CommentedSeq()
    if value in items:
        return False
    items.append(value)
    return True


def remove_from_list(document: Document, path: Sequence[str | int], value: Any) -> bool:
    """Removes a value from a list field; True if it was there."""
    parent = _parent(document, path, create=False)
    items = parent.get(path[-1]) or []
    if value not in items:
        return False
    items.remove(value)
    return True
