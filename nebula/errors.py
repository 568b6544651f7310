"""The core's error hierarchy, typed by what the caller should do next.

Only the runtimes translate these errors (kopf's temporary/permanent errors, the embedded retry
queue, CLI exit codes); the core raises them and never turns them into strings to test later::

    NebulaError
    ├── TransientError                    retry later; carries ``delay`` (seconds)
    │   ├── StoreUnavailable              PostgreSQL or Redis did not answer
    │   ├── SourceUnavailable             a git remote or outside service did not answer
    │   └── AddressInUse                  a port to listen on is taken by another program
    └── PermanentError                    the user must change something
        ├── ManifestError                 one bad manifest: file, line, column, field path
        │   └── (collected in) InvalidManifests   every error of a set, nothing applied
        ├── ResourceNotFound              a named resource or field is not declared
        ├── NothingToChange               a proposed change is already how things are
        ├── InvalidChange                 a proposed change would make the manifests invalid
        ├── SourceRejected                the git remote refused: credentials, missing ref
        ├── OwnershipConflict             an object belongs to another GitSource
        ├── ConfigurationError            settings or command-line input are wrong
        └── MigrationError                the database schema and the migrations disagree

Unknown exceptions count as transient with backoff in every runtime.
"""

from __future__ import annotations

import dataclasses

__all__ = [
    "AddressInUse",
    "ConfigurationError",
    "InvalidChange",
    "InvalidManifests",
    "ManifestError",
    "MigrationError",
    "NebulaError",
    "NothingToChange",
    "OwnershipConflict",
    "PermanentError",
    "ResourceNotFound",
    "SourceRejected",
    "SourceUnavailable",
    "StoreUnavailable",
    "TransientError",
]


class NebulaError(Exception):
    """Base of every error the core raises on purpose."""


class TransientError(NebulaError):
    """Something outside us failed; the same request may succeed after ``delay`` seconds."""

    def __init__(self, message: str, *, delay: float = 10.0) -> None:
        super().__init__(message)
        self.delay = delay


class StoreUnavailable(TransientError):
    """PostgreSQL or Redis could not be reached or dropped the connection."""


class SourceUnavailable(TransientError):
    """A git remote or an outside service (Ollama, ComfyUI, ...) did not answer."""


class AddressInUse(TransientError):
    """The address and port a server must listen on are taken (another program, or another
    ``nebula up``); free when that program stops."""


class PermanentError(NebulaError):
    """Retrying cannot help: the user has to change the input."""


# Not frozen: raising an exception sets attributes such as ``__traceback__`` on it.
@dataclasses.dataclass(eq=True)
class ManifestError(PermanentError):
    """One problem in one manifest, located as precisely as the input allows.

    ``line`` and ``column`` are 1-based; ``field`` is the dotted path inside the document
    (``spec.steps[2].needs[0]``), empty when the problem concerns the file or the document.
    """

    file: str
    line: int
    column: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )

    def to_dict(self) -> dict[str, str | int]:
        """The error as plain JSON-able data (``nebula validate --output json``)."""
        return dataclasses.asdict(self)


class InvalidManifests(PermanentError):
    """A set of manifests with at least one error; nothing of the set may be applied."""

    def __init__(self, errors: list[ManifestError]) -> None:
        self.errors = sorted(errors, key=lambda e: (e.file, e.line, e.column, e.field))
        count = len(self.errors)
        first = f": {self.errors[0]}" if self.errors else ""
        super().__init__(f"{count} error{'s' if count != 1 else ''} in manifests{first}")


class SourceRejected(PermanentError):
    """The git remote answered but refused: bad credentials, a branch or tag that is gone."""


class OwnershipConflict(PermanentError):
    """An object the sync would apply is already managed by another GitSource."""


class NothingToChange(PermanentError):
    """A proposed change would change nothing: the desired state already says so."""


class InvalidChange(PermanentError):
    """A proposed change would make the manifests invalid; ``errors`` says where and why."""

    def __init__(self, message: str, errors: list[ManifestError]) -> None:
        super().__init__(message + ": " + "; ".join(str(e) for e in errors[:5]))
        self.errors = errors


class ResourceNotFound(PermanentError):
    """The resource (or the field) an operation names is not declared where it was looked for."""


class ConfigurationError(PermanentError):
    """A setting or a command-line argument is wrong; the message says which and why."""


class MigrationError(PermanentError):
    """The database schema does not match the migrations shipped with this version."""
