"""``GitSource``: the repository, ref and path whose manifests are the desired state.

Pure data, no I/O. Credentials are a Secret reference (``token``, or ``username`` and
``password``, or ``identity`` and ``known_hosts`` for ssh); a URL with credentials in it is refused.
"""

from __future__ import annotations

import datetime
import posixpath
import re
import urllib.parse
from typing import Annotated, ClassVar, Literal

import pydantic

from nebula.resources import base, conditions, fields

__all__ = [
    "GitRef",
    "GitSource",
    "GitSourceSpec",
    "GitSourceStatus",
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
    """Branch to follow, e.g. main."""
    tag: str | None = pydantic.Field(default=None, pattern=r"^[^\s~^:?*\[\\]+$")
    """Tag to follow, e.g. v1.2.0."""
    commit: str | None = pydantic.Field(default=None, pattern=r"^[0-9a-f]{7,40}$")
    """A fixed commit SHA, full or abbreviated to at least 7 hex digits."""

    @pydantic.model_validator(mode="after")
    def _exactly_one(self) -> GitRef:
        chosen = [n for n in ("branch", "tag", "commit") if getattr(self, n) is not None]
        if len(chosen) != 1:
            raise ValueError("set exactly one of 'branch', 'tag' or 'commit'")
        return self


class LocalObjectRef(base.Model):
    """A Secret in the same namespace, by name."""

    name: fields.DnsSubdomain
    """Name of the Secret."""


class GitSourceSpec(base.Spec):
    """Where the desired state lives and how often to look."""

    url: GitUrl
    """Repository URL: https://, ssh://, file:// or git@host:path; no credentials in it."""
    ref: GitRef = GitRef(branch="main")
    """What to follow: exactly one of branch, tag or commit (default: branch main)."""
    path: Annotated[str, pydantic.AfterValidator(_check_repo_path)] = "."
    """Folder inside the repository holding the manifests (default: the root)."""
    interval: fields.Duration = "1m"
    """How often to fetch, as a duration such as 1m (default) or 5m."""
    timeout: fields.Duration = "60s"
    """Time limit for Git operations such as a fetch, e.g. 60s (default)."""
    secret_ref: LocalObjectRef | None = None
    """Secret with credentials: key token; username and password; or identity (ssh)."""
    webhook_secret_ref: base.SecretKeyRef | None = None
    """Secret key holding the HMAC secret that signs calls to POST /hooks/git."""
    prune: bool = True
    """When true (default), delete what Nebula applied and Git no longer has."""
    suspend: bool = False
    """When true, stop fetching and applying until set back to false."""


class GitSourceStatus(conditions.Status):
    """What was fetched and what was applied."""

    last_fetched_revision: str | None = None
    """Revision (commit) last fetched from the repository."""
    last_applied_revision: str | None = None
    """Revision whose manifests were last applied successfully."""
    last_attempted_revision: str | None = None
    """Revision last tried, whether or not it applied."""
    last_sync_time: datetime.datetime | None = None
    """When the last sync finished."""
    last_sync_result: Literal["Applied", "Failed", "Unchanged"] | None = None
    """Outcome of the last sync: Applied, Failed or Unchanged."""
    resources: int | None = None
    """How many resources the last applied revision declares (each labelled nebula.dev/source)."""
    requested_at: str | None = None
    """The last nebula.dev/requested-at annotation handled (a webhook or `nebula sync` asked)."""


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
            base.PrinterColumn("Resources", ".status.resources", "integer", priority=1),
            base.PrinterColumn("Suspended", ".spec.suspend", "boolean", priority=1),
        ),
    )

    kind: Literal["GitSource"] = "GitSource"
    spec: GitSourceSpec
    status: GitSourceStatus | None = None
