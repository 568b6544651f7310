"""Manifests → typed resources, with every error located at file:line:column and field path.

Called by ``nebula validate``, the sync (which feeds it git blobs) and the tests. Loading is split
so a sync can cache per file: :func:`load_file` is a pure function of a file's name and bytes;
:func:`assemble` joins files into one desired set and checks what spans files (duplicates and
references between resources). Nothing here writes anywhere; a set with errors is returned whole
so the caller can report every error and apply nothing.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import difflib
import functools
import gc
import os
import pathlib
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pydantic

from nebula import errors, resources
from nebula.manifests import parsing
from nebula.resources import base

__all__ = [
    "DEFAULT_MAX_FILE_BYTES",
    "LoadedFile",
    "ManifestSet",
    "Origin",
    "assemble",
    "collector_paused",
    "load_file",
    "load_path",
    "manifest_files",
    "unread_file",
]

DEFAULT_MAX_FILE_BYTES = 4 * 1024 * 1024
MANIFEST_SUFFIXES = (".yaml", ".yml")


@dataclasses.dataclass(frozen=True)
class Origin:
    """Where a resource was declared: the file (as shown to the user), document and first line."""

    file: str
    document: int
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclasses.dataclass(frozen=True)
class LoadedFile:
    """The resources and errors of one file; depends only on its name and content."""

    name: str
    text: str | None  # None when the bytes could not be read as text
    resources: tuple[tuple[base.Resource, Origin], ...]
    errors: tuple[errors.ManifestError, ...]
    # Resources declared here that failed validation: references to them are not "dangling".
    invalid: tuple[base.ResourceKey, ...] = ()
    # False when the file could not be read as YAML at all (not text, a syntax error, a link
    # not followed): it may have declared anything, so nothing can be called missing.
    parsed: bool = True


def unread_file(name: str, failure: errors.ManifestError, *, text: str | None = None) -> LoadedFile:
    """A file whose documents could not be read, with the error that says why."""
    return LoadedFile(name, text, (), (failure,), parsed=False)


@dataclasses.dataclass(frozen=True)
class ManifestSet:
    """A desired set: the valid resources, where each came from, and every error found."""

    resources: dict[base.ResourceKey, base.Resource]
    origins: dict[base.ResourceKey, Origin]
    errors: list[errors.ManifestError]
    files: int

    def raise_for_errors(self) -> None:
        """Raises :class:`~nebula.errors.InvalidManifests` when any error was found."""
        if self.errors:
            raise errors.InvalidManifests(self.errors)

    def count_by_kind(self) -> dict[str, int]:
        """How many resources of each kind, in the order of :data:`resources.KINDS`."""
        counts = collections.Counter(key.kind for key in self.resources)
        return {kind: counts[kind] for kind in resources.KINDS if counts[kind]}


# --- One file --------------------------------------------------------------------------------


def load_file(
    name: str,
    data: bytes,
    *,
    namespace: str = "default",
    max_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> LoadedFile:
    """Parses and validates every document of one file; never raises for bad input.

    ``name`` is how the file is shown in errors; ``namespace`` is given to namespaced resources
    that do not name one.
    """
    text, problem = _decode(data, max_bytes)
    if text is None:
        return unread_file(name, errors.ManifestError(name, *problem))
    try:
        documents = parsing.parse(text)
    except parsing.ParseError as error:
        failure = errors.ManifestError(name, error.line, error.column, "", error.message)
        return unread_file(name, failure, text=text)
    loaded: list[tuple[base.Resource, Origin]] = []
    found: list[errors.ManifestError] = []
    invalid: list[base.ResourceKey] = []
    for document in documents:
        if document.data is None:
            continue  # an empty document, e.g. a trailing "---"
        origin = Origin(name, document.index, document.line)
        resource, issues = _resource(document.data, namespace)
        if issues:
            found.extend(_locate(issues, text, origin))
            invalid.extend(_declared_key(document.data, namespace))
        elif resource is not None:
            loaded.append((resource, origin))
    return LoadedFile(name, text, tuple(loaded), tuple(found), tuple(invalid))


def _declared_key(data: Any, namespace: str) -> Iterator[base.ResourceKey]:
    """The key an invalid document meant to declare, when its kind and name can be read."""
    kind = data.get("kind") if isinstance(data, dict) else None
    metadata = data.get("metadata") if isinstance(data, dict) else None
    if (
        kind in resources.KINDS
        and isinstance(metadata, dict)
        and isinstance(metadata.get("name"), str)
    ):
        cluster = resources.KINDS[kind].info.scope == "Cluster"
        yield base.ResourceKey(
            kind, None if cluster else metadata.get("namespace") or namespace, metadata["name"]
        )


def _decode(data: bytes, max_bytes: int) -> tuple[str | None, tuple[int, int, str, str]]:
    if len(data) > max_bytes:
        limit = f"{max_bytes / 1048576:g} MiB"
        return None, (1, 1, "", f"file is larger than the limit of {limit}; split it")
    if b"\0" in data:
        return None, (1, 1, "", "binary file (it contains NUL bytes), not a YAML manifest")
    try:
        return data.decode("utf-8-sig"), (0, 0, "", "")
    # Latin-1 or another encoding: say where the first byte that is not UTF-8 sits.
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        byte = data[error.start : error.start + 1].hex()
        return None, (line, column, "", f"not UTF-8 text (byte 0x{byte})")


@dataclasses.dataclass(frozen=True)
class _Problem:
    """A problem at a path of a document, before it is located in the text.

    ``exact``: the whole path is shown even where the text stops (a missing field, or a field
    a cross-field check names); otherwise only the part that exists in the text is shown.
    """

    path: parsing.Path
    message: str
    exact: bool = True


def _resource(data: Any, namespace: str) -> tuple[base.Resource | None, list[_Problem]]:
    """The resource a document declares, or the problems that prevent it."""
    if not isinstance(data, dict):
        what = "a list" if isinstance(data, list) else f"the {type(data).__name__} {data!r}"
        message = f"a manifest is a mapping of apiVersion, kind, metadata and spec, not {what}"
        return None, [_Problem((), message)]
    envelope = _envelope(data)
    if isinstance(envelope, list):
        return None, envelope
    cls = envelope
    metadata = data.get("metadata")
    namespaced = cls.info.scope == "Namespaced"
    if namespaced and isinstance(metadata, dict) and not metadata.get("namespace"):
        data = {**data, "metadata": {**metadata, "namespace": namespace}}
    try:
        resource = cls.model_validate(data, by_name=False)
    except pydantic.ValidationError as error:
        return None, _pydantic_problems(error, cls)
    return resource, [_Problem(issue.path, issue.message) for issue in resource.issues()]


def _envelope(data: dict[Any, Any]) -> type[base.Resource] | list[_Problem]:
    """The class a document's apiVersion and kind name, or why they name none."""
    api_version, kind = data.get("apiVersion"), data.get("kind")
    kinds = ", ".join(resources.KINDS)
    problems: list[_Problem] = []
    if kind is None:
        problems.append(_Problem((), f"'kind' is missing: one of {kinds}"))
    elif kind not in resources.KINDS:
        close = difflib.get_close_matches(str(kind), resources.KINDS, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"Nebula manages {kinds}"
        problems.append(_Problem(("kind",), f"unknown kind {kind!r} ({hint})"))
    expected = resources.API_VERSION
    if api_version is None:
        problems.append(_Problem((), f"'apiVersion' is missing: expected {expected}"))
    elif api_version != expected:
        message = f"apiVersion {api_version!r} is not served: expected {expected}"
        problems.append(_Problem(("apiVersion",), message))
    cls = resources.KINDS.get(kind) if isinstance(kind, str) else None
    if cls is not None:
        metadata = data.get("metadata")
        if "status" in data:
            problems.append(_Problem(("status",), "status is written by Nebula, not in Git"))
        if cls.info.scope == "Cluster" and isinstance(metadata, dict) and metadata.get("namespace"):
            message = f"{kind} is cluster-scoped and has no namespace"
            problems.append(_Problem(("metadata", "namespace"), message))
    return problems if problems or cls is None else cls


def _pydantic_problems(error: pydantic.ValidationError, cls: type[base.Resource]) -> list[_Problem]:
    problems = []
    for item in error.errors(include_url=False):
        loc: parsing.Path = tuple(item["loc"])
        # A missing field does not exist in the text: its own name completes the path. Other
        # paths may end in names of union branches ("int", "str") that are not in the text.
        problems.append(_Problem(loc, _explain(item, cls), exact=item["type"] == "missing"))
    return problems


# What the user should read for pydantic's error types, when its own wording is unclear.
_EXPECTED = {
    "string_type": "expected text",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "list_type": "expected a list",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping of fields",
    "model_attributes_type": "expected a mapping of fields",
    "datetime_type": "expected a date and time such as 2026-01-31T12:00:00Z",
    "datetime_parsing": "expected a date and time such as 2026-01-31T12:00:00Z",
    "datetime_from_date_parsing": "expected a date and time such as 2026-01-31T12:00:00Z",
}


def _explain(item: Any, cls: type[base.Resource]) -> str:
    kind, loc, value = item["type"], item["loc"], item.get("input")
    if kind == "value_error":
        return str(item["ctx"]["error"])
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), _vocabulary(cls), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown field {loc[-1]!r}{hint}"
    if kind == "missing":
        return "required field is missing"
    shown = _shown(value)
    if kind == "string_type" and isinstance(value, int | float | bool):
        return f'expected text, got the {type(value).__name__} {shown}: quote it, "{value}"'
    if kind == "string_pattern_mismatch":
        return f"{shown} does not have the expected form {item['ctx']['pattern']}"
    if kind in _EXPECTED:
        return f"{_EXPECTED[kind]}, got {shown}"
    return f"{item['msg']} (got {shown})"


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) < 80 else text[:77] + "..."


@functools.cache
def _vocabulary(cls: type[pydantic.BaseModel]) -> list[str]:
    """Every field name (as written in YAML) anywhere under a model, for "did you mean" hints."""
    names: set[str] = set()
    todo: list[Any] = [cls]
    seen: set[Any] = set()
    while todo:
        item = todo.pop()
        if item in seen:
            continue
        seen.add(item)
        if isinstance(item, type) and issubclass(item, pydantic.BaseModel):
            for name, field in item.model_fields.items():
                names.add(field.alias or name)
                todo.append(field.annotation)
        else:
            todo.extend(typing.get_args(item))
            if isinstance(item, types.UnionType):
                todo.extend(item.__args__)
    return sorted(names)


def _locate(problems: list[_Problem], text: str, origin: Origin) -> list[errors.ManifestError]:
    """Turns problems at document paths into errors at file:line:column (re-reads the document).

    Problems that land on the same field are one error: a value that fits no branch of a union
    fails once per branch, and the user should read one line with every reason.
    """
    positions = parsing.positions(text, origin.document)
    located: dict[tuple[int, int, str], list[str]] = {}
    for problem in problems:
        known = problem.path
        while known and known not in positions:
            known = known[:-1]
        line, column = positions.get(known, (origin.line, 1))
        field = base.dotted(problem.path if problem.exact else known)
        messages = located.setdefault((line, column, field), [])
        if problem.message not in messages:
            messages.append(problem.message)
    return [
        errors.ManifestError(origin.file, line, column, field, "; or ".join(messages))
        for (line, column, field), messages in located.items()
    ]


# --- A set of files --------------------------------------------------------------------------


def assemble(files: Iterable[LoadedFile]) -> ManifestSet:
    """Joins loaded files into one desired set, adding duplicate and reference errors."""
    files = list(files)
    found: list[errors.ManifestError] = [e for f in files for e in f.errors]
    texts = {f.name: f.text for f in files}
    desired: dict[base.ResourceKey, base.Resource] = {}
    origins: dict[base.ResourceKey, Origin] = {}
    for loaded in files:
        for resource, origin in loaded.resources:
            key = resource.key
            if key in origins:
                first = origins[key]
                message = f"duplicate {key}: also declared at {first}"
                problem = _Problem(("metadata", "name"), message)
                found.extend(_locate([problem], loaded.text or "", origin))
                continue
            desired[key], origins[key] = resource, origin
    # References to resources that are declared but invalid are not reported again. A file
    # that did not parse may have declared any kind in any namespace (documents name their
    # own namespace), so while one is unread no reference is called missing: that would be
    # a guess, and reported eight times over it buries the one real error. The set is
    # refused anyway, and every reference is checked again once the file parses.
    invalid = {key for f in files for key in f.invalid}
    complete = all(f.parsed for f in files)
    for key, issue in resources.references.check(desired, declared=invalid, complete=complete):
        origin = origins[key]
        problem = _Problem(issue.path, issue.message)
        found.extend(_locate([problem], texts[origin.file] or "", origin))
    found.sort(key=lambda e: (e.file, e.line, e.column, e.field))
    return ManifestSet(desired, origins, found, len(files))


def manifest_files(root: pathlib.Path) -> list[pathlib.Path]:
    """The YAML files under a folder (or the file itself), sorted; hidden ones are skipped.

    Linked folders are listed too, not entered: the loader reports them, because silently
    leaving out what they declare would let a sync prune it.
    """
    if root.is_file():
        return [root]
    found: list[pathlib.Path] = []
    for folder, folders, files in os.walk(root):
        here = pathlib.Path(folder)
        folders[:] = [name for name in folders if not name.startswith(".")]
        found += [here / name for name in folders if (here / name).is_symlink()]
        found += [
            here / name
            for name in files
            if not name.startswith(".") and name.endswith(MANIFEST_SUFFIXES)
        ]
    return sorted(found)


def load_path(
    root: pathlib.Path,
    *,
    shown_as: str | None = None,
    namespace: str = "default",
    max_bytes: int = DEFAULT_MAX_FILE_BYTES,
    progress: Callable[[int, int], None] | None = None,
) -> ManifestSet:
    """Loads every manifest under a folder (or one file); errors show paths under ``shown_as``.

    A link that leads out of the folder is an error, not followed. ``progress`` is called with
    (files done, files in all) after each file.
    """
    shown = pathlib.PurePath(shown_as if shown_as is not None else str(root))
    top = root.resolve()
    with collector_paused():
        loaded: list[LoadedFile] = []
        paths = manifest_files(root)
        for done, path in enumerate(paths):
            if progress:
                progress(done, len(paths))
            name = str(shown / path.relative_to(root)) if path != root else str(shown)
            refused = _refused_link(path, root=root, top=top)
            if refused:
                failure = errors.ManifestError(name, 1, 1, "", refused)
                loaded.append(unread_file(name, failure))
                continue
            with path.open("rb") as stream:
                data = stream.read(max_bytes + 1)
            loaded.append(load_file(name, data, namespace=namespace, max_bytes=max_bytes))
        if progress:
            progress(len(paths), len(paths))
        return assemble(loaded)


def _refused_link(path: pathlib.Path, *, root: pathlib.Path, top: pathlib.Path) -> str | None:
    if path.is_dir():
        return "a linked folder is not followed: move its manifests into the folder"
    if path != root and not path.resolve().is_relative_to(top):
        return "a link out of the manifests folder is not followed"
    return None


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pauses Python's cyclic garbage collector while many objects are built.

    Loading allocates hundreds of thousands of small, acyclic objects that all stay alive; each
    full collection would walk all of them again, which made loading 10,000 resources four
    times slower (bench/load.py). Reference counting still frees everything as usual.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
