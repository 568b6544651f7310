"""``GitSource``: the repository, ref and path whose manifests are the desired state.

Pure data, no I/O. Credentials are a Secret reference (``token``, or ``username`` and
``password``, or ``identity`` and ``known_hosts`` for ssh); a URL with credentials in it is refused.
"""

from __future__ import annotations

import datetime
import posixpath
import re
import urllib.parse
from collections.abc import Iterator
from typing import Annotated, ClassVar, Literal

import pydantic

from nebula.resources import base, conditions, fields

__all__ = [
    "GitRef",
    "GitSource",
    "GitSourceSpec",
    "GitSourceStatus",
    "InventoryEntry",
    "LocalObjectRef",
]

_SCP_LIKE_RE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^/].*$")


def _check_git_url(value: str) -> str:
    if _SCP_LIKE_RE.match(value):
        return value  # git@github.com:me/homelab.git
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme not in ("https", "http", "ssh", "file"):
        raise ValueError(
            f"invalid git URL {value!r}: expected https://, ssh://, file:// or git@host:path"
        )
    if parsed.scheme == "file":
        if not parsed.path.startswith("/"):
            raise ValueError(f"invalid git URL {value!r}: a file:// URL needs an absolute path")
        return value
    if not parsed.hostname:
        raise ValueError(f"invalid git URL {value!r}: no host")
    if parsed.password or (parsed.username and parsed.scheme != "ssh"):
        raise ValueError(
            f"invalid git URL {value!r}: credentials do not belong in Git, use secretRef"
        )
    return value


GitUrl = Annotated[
    str,
    pydantic.AfterValidator(_check_git_url),
    pydantic.WithJsonSchema({"type": "string", "minLength": 1}),
]


def _check_repo_path(value: str) -> str:
    normal = posixpath.normpath(value)
    if value.startswith("/") or normal == ".." or normal.startswith("../") or "\\" in value:
        raise ValueError(f"invalid path {value!r}: expected a folder inside the repository")
    return value


class GitRef(base.Model):
    """What to follow: a branch, a tag or a fixed commit (exactly one)."""

    branch: str | None = pydantic.Field(default=None, pattern=r"^[^\s~^:?*\[\\]+$")
    tag: str | None = pydantic.Field(default=None, pattern=r"^[^\s~^:?*\[\\]+$")
    commit: str | None = pydantic.Field(default=None, pattern=r"^[0-9a-f]{7,40}$")

    @pydantic.model_validator(mode="after")
    def _exactly_one(self) -> GitRef:
        chosen = [n for n in ("branch", "tag", "commit") if getattr(self, n) is not None]
        if len(chosen) != 1:
            raise ValueError("set exactly one of 'branch', 'tag' or 'commit'")
        return self


class LocalObjectRef(base.Model):
    """A Secret in the same namespace, by name."""

    name: fields.DnsSubdomain


class GitSourceSpec(base.Spec):
    """Where the desired state lives and how often to look."""

    url: GitUrl
    ref: GitRef = GitRef(branch="main")
    path: Annotated[str, pydantic.AfterValidator(_check_repo_path)] = "."
    interval: fields.Duration = "1m"
    timeout: fields.Duration = "60s"
    secret_ref: LocalObjectRef | None = None  # keys: token | username+password | identity
    webhook_secret_ref: base.SecretKeyRef | None = None  # HMAC key for POST /hooks/git
    prune: bool = True  # delete what Nebula applied and Git no longer has
    suspend: bool = False

    def issues(self) -> Iterator[base.Issue]:
        """A timeout that cannot fit into the interval."""
        if fields.parse_duration(self.timeout) > fields.parse_duration(self.interval) * 10:
            yield base.Issue(("timeout",), "timeout is more than ten intervals long")


class InventoryEntry(base.Model):
    """One object Nebula applied from this source (only these are ever pruned)."""

    kind: str
    namespace: str | None = None
    name: str


class GitSourceStatus(conditions.Status):
    """What was fetched and what was applied."""

    last_fetched_revision: str | None = None
    last_applied_revision: str | None = None
    last_attempted_revision: str | None = None
    last_sync_time: datetime.datetime | None = None
    last_sync_result: Literal["Applied", "Failed", "Unchanged"] | None = None
    inventory: list[InventoryEntry] = pydantic.Field(default_factory=list)


class GitSource(base.Resource):
    """The Git repository holding the homelab's desired state."""

    info: ClassVar[base.KindInfo] = base.KindInfo(
        plural="gitsources",
        scope="Namespaced",
        short_names=("gs",),
        description="A Git repository, ref and path whose manifests are the desired state.",
        columns=(
            base.PrinterColumn("URL", ".spec.url"),
            base.PrinterColumn("Revision", ".status.lastAppliedRevision"),
            base.PrinterColumn("Suspended", ".spec.suspend", "boolean", priority=1),
        ),
    )

    kind: Literal["GitSource"] = "GitSource"
    spec: GitSourceSpec
    status: GitSourceStatus | None = None
