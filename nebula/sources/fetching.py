"""Local mirrors of GitSources: fetch a ref with pygit2, resolve it to a commit, read its files.

Called by the sync. Each source has one bare mirror under the state folder; a fetch brings only
the ref the source follows. Failures are typed by what the caller should do next: a remote that
does not answer is :class:`~nebula.errors.SourceUnavailable` (retry with backoff), a remote that
refuses (credentials, a branch or tag that is gone) is :class:`~nebula.errors.SourceRejected`
(the user must act; still retried at the interval). This module never logs credentials.
"""

from __future__ import annotations

import dataclasses
import datetime
import pathlib
import posixpath
import threading
from typing import Any

import pygit2
import pygit2.enums

from nebula import errors
from nebula.resources.git_source import GitRef

__all__ = ["Credentials", "File", "Mirror", "Revision"]

MANIFEST_SUFFIXES = (".yaml", ".yml")
_LINK_MODE = 0o120000
_REJECTED = (
    "authentication",
    "401",
    "403",
    "credentials",
    "permission denied",
    "couldn't find remote ref",
    "not found",
    "does not appear to be a git repository",
)


@dataclasses.dataclass(frozen=True)
class Credentials:
    """What a GitSource's Secret holds: a token, a user and password, or an ssh key."""

    username: str | None = None
    password: str | None = None  # a password or an access token
    identity: str | None = None  # an ssh private key (PEM / OpenSSH format)
    identity_public: str | None = None

    def __repr__(self) -> str:
        # Never show secrets in logs or tracebacks.
        given = [f.name for f in dataclasses.fields(self) if getattr(self, f.name)]
        return f"Credentials({', '.join(given) or 'none'})"


@dataclasses.dataclass(frozen=True)
class Revision:
    """The commit a ref resolved to, and who made it."""

    commit: str
    author: str
    message: str  # the first line
    time: datetime.datetime

    @property
    def short(self) -> str:
        """The commit as people read it (12 characters)."""
        return self.commit[:12]


@dataclasses.dataclass(frozen=True)
class File:
    """A manifest file of a revision: its path in the repository and its blob id."""

    path: str
    blob: str
    link: bool = False  # a symbolic link: refused, never followed


class _Callbacks(pygit2.RemoteCallbacks):
    def __init__(self, credentials: Credentials) -> None:
        super().__init__()
        self._credentials = credentials
        self._tries = 0

    def credentials(self, url: str, username_from_url: str | None, allowed_types: Any) -> Any:
        # libgit2 asks again after a refusal; answering twice would loop forever.
        self._tries += 1
        if self._tries > 1:
            raise errors.SourceRejected(f"the remote refused the credentials for {url}")
        kinds = pygit2.enums.CredentialType
        given = self._credentials
        user = given.username or username_from_url or "git"
        if allowed_types & kinds.SSH_KEY and given.identity:
            return pygit2.KeypairFromMemory(user, given.identity_public, given.identity, "")
        if allowed_types & kinds.USERPASS_PLAINTEXT and given.password:
            return pygit2.UserPass(user, given.password)
        raise errors.SourceRejected(
            f"{url} asks for credentials and the GitSource has none that fit (set secretRef)"
        )


class Mirror:
    """A bare mirror of one GitSource's repository on local disk.

    Safe to share between threads: fetches of one mirror are serialised.
    """

    def __init__(self, path: pathlib.Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._repo: pygit2.Repository | None = None

    def _repository(self) -> pygit2.Repository:
        if self._repo is None:
            if (self._path / "HEAD").exists():
                self._repo = pygit2.Repository(str(self._path))
            else:
                self._path.parent.mkdir(parents=True, exist_ok=True)
                self._repo = pygit2.init_repository(str(self._path), bare=True)
        return self._repo

    def fetch(self, url: str, ref: GitRef, credentials: Credentials | None = None) -> Revision:
        """Fetches the ref from ``url`` and returns the commit it points at."""
        with self._lock:
            repo = self._repository()
            if "origin" in [remote.name for remote in repo.remotes]:
                repo.remotes.set_url("origin", url)
            else:
                repo.remotes.create("origin", url)
            refspec, local = _refspec(ref)
            callbacks = _Callbacks(credentials or Credentials())
            try:
                repo.remotes["origin"].fetch([refspec], callbacks=callbacks)
            except pygit2.GitError as error:
                raise _fetch_error(url, ref, error) from None
            return self._resolve(repo, ref, local)

    def _resolve(self, repo: pygit2.Repository, ref: GitRef, local: str | None) -> Revision:
        try:
            target = repo.revparse_single(local or ref.commit or "")
            commit = target.peel(pygit2.Commit)
        # The ref was not fetched: a branch or tag that does not exist, or an unknown commit.
        except (KeyError, ValueError, pygit2.GitError):
            raise errors.SourceRejected(
                f"{_describe(ref)} does not exist in the repository"
            ) from None
        return _revision(commit)

    def files(self, commit: str, path: str = ".") -> list[File]:
        """The manifest files of a commit under ``path``, sorted, hidden ones skipped.

        Raises :class:`~nebula.errors.SourceRejected` when ``path`` is not a folder there.
        """
        repo = self._repository()
        tree = repo[commit].peel(pygit2.Tree)
        base = posixpath.normpath(path).strip("/")
        if base not in ("", "."):
            try:
                tree = tree[base].peel(pygit2.Tree)
            # The path does not exist at that revision, or it is a file.
            except (KeyError, ValueError, pygit2.GitError):
                raise errors.SourceRejected(f"{path!r} is not a folder at {commit[:12]}") from None
        prefix = "" if base in ("", ".") else base + "/"
        found: list[File] = []
        todo: list[tuple[str, pygit2.Tree]] = [(prefix, tree)]
        while todo:
            folder, current = todo.pop()
            for entry in current:
                name = entry.name or ""
                if name.startswith("."):
                    continue
                if entry.type == pygit2.enums.ObjectType.TREE:
                    todo.append((f"{folder}{name}/", repo[entry.id].peel(pygit2.Tree)))
                elif name.endswith(MANIFEST_SUFFIXES) or entry.filemode == _LINK_MODE:
                    link = entry.filemode == _LINK_MODE
                    found.append(File(f"{folder}{name}", str(entry.id), link=link))
        return sorted(found, key=lambda f: f.path)

    def read(self, blob: str) -> bytes:
        """The content of a blob."""
        return bytes(self._repository()[blob].peel(pygit2.Blob).data)


def _refspec(ref: GitRef) -> tuple[str, str | None]:
    if ref.branch:
        return f"+refs/heads/{ref.branch}:refs/remotes/origin/{ref.branch}", (
            f"refs/remotes/origin/{ref.branch}"
        )
    if ref.tag:
        return f"+refs/tags/{ref.tag}:refs/tags/{ref.tag}", f"refs/tags/{ref.tag}"
    # A fixed commit: bring every branch, then look the commit up.
    return "+refs/heads/*:refs/remotes/origin/*", None


def _describe(ref: GitRef) -> str:
    if ref.branch:
        return f"branch {ref.branch!r}"
    if ref.tag:
        return f"tag {ref.tag!r}"
    return f"commit {ref.commit!r}"


def _fetch_error(url: str, ref: GitRef, error: pygit2.GitError) -> errors.NebulaError:
    text = str(error).strip()
    cause = error.__cause__ or error.__context__
    if isinstance(cause, errors.SourceRejected):
        return cause
    if any(marker in text.lower() for marker in _REJECTED):
        return errors.SourceRejected(f"fetching {_describe(ref)} from {url} was refused: {text}")
    return errors.SourceUnavailable(f"fetching {_describe(ref)} from {url} failed: {text}")


def _revision(commit: pygit2.Commit) -> Revision:
    offset = datetime.timedelta(minutes=commit.commit_time_offset)
    when = datetime.datetime.fromtimestamp(commit.commit_time, datetime.timezone(offset))
    return Revision(
        commit=str(commit.id),
        author=f"{commit.author.name} <{commit.author.email}>",
        message=(commit.message or "").strip().splitlines()[0] if commit.message else "",
        time=when,
    )
