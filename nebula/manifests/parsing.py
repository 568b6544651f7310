"""Fast, bounded YAML parsing of manifests into plain Python data (YAML 1.2 core schema).

Called by :mod:`nebula.manifests.loading`. Events come from libyaml through ruamel.yaml's C
extension; objects are built here in one loop, which is several times faster than ruamel's
Python constructor and lets us refuse hostile input while reading: alias bombs (a budget of
expanded nodes per document), recursive aliases, absurd nesting, custom tags and complex keys.

:func:`positions` re-reads a document recording where every key and item starts; only the
error path pays for it. This module never touches files and never returns ruamel objects.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

from ruamel.yaml import events
from ruamel.yaml.cyaml import CParser  # type: ignore[attr-defined]
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.reader import ReaderError

__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "Document",
    "ParseError",
    "Path",
    "parse",
    "positions",
]

MAX_DEPTH = 100
"""Deepest nesting of mappings and sequences in one document."""

MAX_NODES = 200_000
"""Most nodes one document may expand to once aliases are resolved (an alias bomb has 10⁹)."""

Path = tuple[str | int, ...]
"""Where a value sits in a document: mapping keys as text, sequence indices as ints."""

_INT_RE = re.compile(r"^[-+]?[0-9]+$")
_FLOAT_RE = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_PLAIN: dict[str, Any] = {
    "null": None, "Null": None, "NULL": None, "~": None, "": None,
    "true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False,
    ".inf": math.inf, ".Inf": math.inf, ".INF": math.inf, "+.inf": math.inf,
    "-.inf": -math.inf, "-.Inf": -math.inf, "-.INF": -math.inf,
    ".nan": math.nan, ".NaN": math.nan, ".NAN": math.nan,
}  # fmt: skip
_STR_TAGS = {"tag:yaml.org,2002:str", "!"}
_TAGGED: dict[str, Any] = {
    "tag:yaml.org,2002:int": int,
    "tag:yaml.org,2002:float": float,
    "tag:yaml.org,2002:bool": lambda v: {"true": True, "false": False}[v.lower()],
    "tag:yaml.org,2002:null": lambda v: None,
}
_COLLECTION_TAGS = {None, "!", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}


class ParseError(Exception):
    """The text is not YAML we accept; ``line`` and ``column`` are 1-based."""

    def __init__(self, line: int, column: int, message: str) -> None:
        super().__init__(f"{line}:{column}: {message}")
        self.line, self.column, self.message = line, column, message


@dataclasses.dataclass(frozen=True)
class Document:
    """One YAML document: its data, its position in the file and the line it starts on."""

    data: Any
    index: int
    line: int


def _number(value: str) -> Any:
    """A plain scalar that starts like a number: an int, a float, or (``1.2.3``) text."""
    if value:
        if _INT_RE.match(value):
            return int(value)
        if value.startswith(("0o", "0x")):
            try:
                return int(value[2:], 8 if value[1] == "o" else 16)
            # "0xyz" is not a number, so it is text.
            except ValueError:
                return value
        if _FLOAT_RE.match(value):
            return float(value)
    return _PLAIN.get(value, value)


_NUMERIC_START = frozenset("0123456789+-.")
"""How a plain scalar that may be a number starts (the empty string is not in it)."""


def _plain(value: str) -> Any:
    return _number(value) if value[:1] in _NUMERIC_START else _PLAIN.get(value, value)


def _fail(event: Any, message: str) -> ParseError:
    mark = event.start_mark
    return ParseError(mark.line + 1, mark.column + 1, message)


def _scalar(event: Any) -> Any:
    tag = event.tag
    if tag is None:
        # Quoted and block scalars are always text; only plain ones are resolved.
        return _plain(event.value) if event.implicit[0] else event.value
    if tag in _STR_TAGS:
        return event.value
    convert = _TAGGED.get(tag)
    if convert is None:
        raise _fail(event, f"unsupported YAML tag {tag!r}: manifests hold plain data")
    try:
        return convert(event.value)
    # "!!int abc": the tag and the text disagree.
    except (ValueError, KeyError):
        raise _fail(event, f"{event.value!r} is not a valid {tag.rsplit(':', 1)[-1]}") from None


class _Builder:
    """Turns the event stream of one text into documents; one instance per parse."""

    def __init__(self, text: str, *, track: int | None = None) -> None:
        self._parser = CParser(text)
        self._track = track  # the index of the document whose positions are recorded
        self.positions: dict[Path, tuple[int, int]] = {}

    def documents(self) -> list[Document]:
        get = self._parser.get_event
        get()  # StreamStartEvent
        docs: list[Document] = []
        while True:
            event = get()
            if isinstance(event, events.StreamEndEvent):
                return docs
            start = event.start_mark.line + 1  # DocumentStartEvent
            data, aliased = self._document(len(docs), start)
            if aliased:
                _check_expansion(data, start)
            docs.append(Document(data=data, index=len(docs), line=start))

    def _document(self, index: int, start: int) -> tuple[Any, bool]:
        # The hot loop of reading manifests (bench/load.py): what the current collection needs
        # lives in local variables, and an enclosing collection's state is pushed on ``stack``
        # when a nested one starts:
        # - ``key`` is _NO_KEY while a mapping waits for its next key;
        # - ``anchor`` is registered only when its collection is complete, so an alias inside
        #   it (a recursive alias) is refused as undefined instead of building a cycle;
        # - ``merges`` hold the values of ``<<`` keys, applied at the end so that keys written
        #   after a merge are not mistaken for duplicates;
        # - ``path`` is the collection's path, kept only for the tracked document.
        get = self._parser.get_event
        track = index == self._track
        scalar, alias, document_end = events.ScalarEvent, events.AliasEvent, events.DocumentEndEvent
        mapping_start, sequence_start = events.MappingStartEvent, events.SequenceStartEvent
        mapping_end, sequence_end = events.MappingEndEvent, events.SequenceEndEvent
        plain, no_key, numeric = _PLAIN, _NO_KEY, _NUMERIC_START
        anchors: dict[str, Any] = {}
        stack: list[tuple[Any, Any, bool, str | None, list[Any] | None, Path]] = []
        container: Any = None  # None: at the document's root
        key: Any = no_key
        is_list = False
        anchor: str | None = None
        merges: list[Any] | None = None
        path: Path = ()
        aliased = False
        root: Any = None
        while True:
            event = get()
            kind = type(event)
            if kind is scalar:
                # ``ctag`` rather than the ``tag`` property: one Python call less per scalar.
                if event.ctag is None and event.implicit[0]:
                    value = event.value
                    value = _number(value) if value[:1] in numeric else plain.get(value, value)
                else:
                    value = _scalar(event)
                if event.anchor:
                    anchors[event.anchor] = value
            elif kind is mapping_start or kind is sequence_start:
                if event.tag not in _COLLECTION_TAGS:
                    raise _fail(
                        event, f"unsupported YAML tag {event.tag!r}: manifests hold plain data"
                    )
                if len(stack) >= MAX_DEPTH:
                    raise _fail(event, f"nested deeper than {MAX_DEPTH} levels")
                new_path = self._path_of(container, key, path, event) if track else path
                stack.append((container, key, is_list, anchor, merges, path))
                is_list = kind is sequence_start
                container = [] if is_list else {}
                key, anchor, merges, path = no_key, event.anchor, None, new_path
                continue
            elif kind is mapping_end or kind is sequence_end:
                value = container
                if merges:
                    _merge(value, merges, event)
                if anchor:
                    anchors[anchor] = value
                container, key, is_list, anchor, merges, path = stack.pop()
            elif kind is alias:
                if event.anchor not in anchors:
                    raise _fail(event, f"alias *{event.anchor} refers to no complete anchor")
                value = anchors[event.anchor]
                aliased = True
            elif kind is document_end:
                return root, aliased
            else:
                raise _fail(event, f"unexpected YAML event {kind.__name__}")
            if container is None:
                # A document that is one scalar: point at it, not at the "---" before it.
                if track and (kind is scalar or kind is alias):
                    self.positions[()] = _mark(event)
                root = value
            elif is_list:
                if track and (kind is scalar or kind is alias):
                    self.positions[(*path, len(container))] = _mark(event)
                container.append(value)
            elif key is no_key:
                if type(value) is dict or type(value) is list:
                    raise _fail(event, "complex mapping keys are not supported")
                if value in container:
                    raise _fail(event, f"duplicate key {value!r}")
                key = value
                if track:
                    self.positions[(*path, str(value))] = _mark(event)
            else:
                if key == "<<" and (type(value) is dict or type(value) is list):
                    merges = [*(merges or ()), value]
                else:
                    container[key] = value
                key = no_key

    def _path_of(self, container: Any, key: Any, path: Path, event: Any) -> Path:
        """The path of a collection that starts now; items of a list are recorded here."""
        if container is None:
            self.positions[()] = _mark(event)
            return ()
        if type(container) is list:
            here = (*path, len(container))
            self.positions[here] = _mark(event)
            return here
        return (*path, str(key))


class _NoKey:
    """Marks an open mapping that waits for its next key (None is a valid key)."""


_NO_KEY = _NoKey()


def _mark(event: Any) -> tuple[int, int]:
    return event.start_mark.line + 1, event.start_mark.column + 1


def _merge(container: dict[Any, Any], values: list[Any], event: Any) -> None:
    """The ``<<`` merge key: keys written in the mapping win, then earlier merged mappings."""
    sources = [s for value in values for s in (value if isinstance(value, list) else [value])]
    for source in sources:
        if not isinstance(source, dict):
            raise _fail(event, "a merge key (<<) takes a mapping or a list of mappings")
        for key, item in source.items():
            container.setdefault(key, item)


def _check_expansion(data: Any, line: int) -> None:
    """Refuses a document whose aliases expand past :data:`MAX_NODES` (an alias bomb)."""
    budget = MAX_NODES
    stack = [data]
    while stack:
        node = stack.pop()
        budget -= 1
        if budget < 0:
            raise ParseError(
                line, 1, f"the document expands to more than {MAX_NODES} nodes through aliases"
            )
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _parse_error(error: YAMLError, text: str) -> ParseError:
    if isinstance(error, ReaderError):
        position = error.position
        line = text.count("\n", 0, position) + 1
        column = position - text.rfind("\n", 0, position)
        return ParseError(line, column, f"{error.reason}: character {error.character!r}")
    if isinstance(error, MarkedYAMLError) and error.problem_mark is not None:
        mark, problem = error.problem_mark, error.problem or str(error)
        if error.context:
            # The context often starts elsewhere: an unclosed "[" lines above the problem.
            started = error.context_mark
            moved = started is not None and (started.line, started.column) != (
                mark.line,
                mark.column,
            )
            where = f" that started at {started.line + 1}:{started.column + 1}" if moved else ""
            problem = f"{problem} ({error.context}{where})"
        lines = text.splitlines()
        found = lines[mark.line][mark.column : mark.column + 1] if mark.line < len(lines) else ""
        if found == "\t":
            problem += "; YAML indents with spaces, not tabs"
        elif "unexpected ':'" in problem:
            problem += "; quote a value that contains ':', such as \"llama3.1:8b\""
        return ParseError(mark.line + 1, mark.column + 1, problem)
    return ParseError(1, 1, str(error).strip().splitlines()[-1])


def parse(text: str) -> list[Document]:
    """Every document of a YAML text as plain data; raises :class:`ParseError` at the first problem.

    Empty documents (``---`` with nothing after it) are returned with ``data`` None.
    """
    try:
        return _Builder(text).documents()
    # libyaml's syntax errors (scanner, parser, reader) carry the position of the problem.
    except YAMLError as error:
        raise _parse_error(error, text) from None


def positions(text: str, index: int) -> dict[Path, tuple[int, int]]:
    """Where each key and item of document ``index`` starts, as 1-based (line, column).

    Only called for a text that :func:`parse` accepted, to locate an error; the root document's
    position is under the empty path.
    """
    builder = _Builder(text, track=index)
    builder.documents()
    return builder.positions
