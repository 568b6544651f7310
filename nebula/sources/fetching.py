"""Local mirrors of GitSources: fetch a ref with pygit2, resolve it to a commit, read its files.

Called by the sync. Each source has one bare mirror under the state folder; a fetch brings only
the ref the source follows. Failures are typed by what the caller should do next: a remote that
does not answer is :class:`~nebula.errors.SourceUnavailable` (retry with backoff), a remote that
refuses (credentials, an unknown host key, a branch or tag that is gone) is
:class:`~nebula.errors.SourceRejected` (the user must act; still retried at the interval).

This module never logs, and no message it raises carries a password, a token or a key: secrets
and the user part of URLs are masked before a libgit2 message is repeated.

Host keys (ssh): libgit2 checks the server's key against ``$HOME/.ssh/known_hosts`` and pygit2
then accepts *any* key unless told otherwise. Here a key is accepted only when it matches: the
``known_hosts`` of the source's credentials when given, else the known_hosts file in the home
folder of the user running Nebula. Certificates (https) are checked against the system's CAs
(``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` change them).
"""

from __future__ import annotations

import collections.abc
import contextlib
import dataclasses
import datetime
import os
import pathlib
import posixpath
import re
import tempfile
import threading
import time
import urllib.parse

import pygit2
import pygit2.enums

from nebula import errors
from nebula.resources.git_source import GitRef

__all__ = ["DEFAULT_TIMEOUT", "Credentials", "File", "Mirror", "PushRefused", "Revision"]

MANIFEST_SUFFIXES = (".yaml", ".yml")
DEFAULT_TIMEOUT = 60.0
"""Seconds a fetch waits for a connection, and then for each answer (GitSource spec default)."""

_LINK_MODE = pygit2.enums.FileMode.LINK
_MASK = "***"
_SCP_LIKE_RE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:")
_USERINFO_RE = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<user>[^/@:\s]*)(?::(?P<password>[^/@\s]*))?@"
)
_HTTP_STATUS_RE = re.compile(r"status code: (?P<status>\d{3})")
# What a git server says on stderr over ssh when the path is not a repository; libgit2 passes
# that text on as its message and has no code for it.
_NO_REPOSITORY = ("does not appear to be a git repository", "repository not found")
# libgit2's error classes (git_error_t) that pygit2 has no enum for.
_ERROR_REPOSITORY = 6
_ERROR_HTTP = 34


class PushRefused(errors.PermanentError):
    """The remote refused a pushed ref: not a fast-forward (someone pushed first), or a hook."""


@dataclasses.dataclass(frozen=True)
class Credentials:
    """What a GitSource's Secret holds: a token, a user and password, or an ssh key."""

    username: str | None = None
    password: str | None = None  # a password or an access token
    identity: str | None = None  # an ssh private key (PEM / OpenSSH format), no passphrase
    identity_public: str | None = None  # None: libssh2 derives it from the private key
    known_hosts: str | None = None  # ssh host keys in known_hosts format; see the module doc

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

    def fetch(
        self,
        url: str,
        ref: GitRef,
        credentials: Credentials | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Revision:
        """Fetches the ref from ``url`` and returns the commit it points at.

        ``timeout`` (seconds) bounds connecting and then each wait for the server; a server
        that keeps sending, however slowly, is not cut off. A fixed commit already in the
        mirror is returned without asking the remote: a commit never changes. Raises
        :class:`~nebula.errors.SourceUnavailable` or :class:`~nebula.errors.SourceRejected`.
        """
        given = credentials or Credentials()
        shown = _Masker(url, given)
        with self._lock:
            repo = self._repository()
            if ref.commit and (known := _lookup(repo, ref.commit)) is not None:
                return _revision(known)
            local = _local_path(url)
            # libgit2 names a missing folder "unsupported URL protocol" (a plain path) or an
            # OS error, which is also how it names a refused connection.
            if local is not None and not local.is_dir():
                raise errors.SourceRejected(f"there is no repository at {local}")
            # Anonymous: the URL is never written to the mirror's config.
            remote = repo.remotes.create_anonymous(local.as_uri() if local else url)
            ssh = _is_ssh(url)
            callbacks = _Callbacks(given, shown, ssh=ssh)
            known_hosts = given.known_hosts if ssh else None
            started = time.monotonic()
            failure: errors.NebulaError | None = None
            with _OPTIONS.applied(timeout=timeout, known_hosts=known_hosts):
                try:
                    remote.fetch(_refspecs(ref), callbacks=callbacks)
                except pygit2.GitError as error:
                    waited = time.monotonic() - started >= timeout
                    failure = _fetch_error(shown, ref, error, timed_out=waited, timeout=timeout)
            # Raised outside the except clause: libgit2's unmasked text stays out of the chain.
            if failure is not None:
                raise failure
            heads = remote.list_heads(connect=False)
            advertised = {head.name: head.oid for head in heads if head.name}
            return _resolve(repo, ref, advertised, shown.url)

    @contextlib.contextmanager
    def writing(self) -> collections.abc.Iterator[pygit2.Repository]:
        """The mirror's repository, to build commits and refs in; no fetch or push meanwhile."""
        with self._lock:
            yield self._repository()

    def push(
        self,
        url: str,
        refspecs: list[str],
        credentials: Credentials | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        """Pushes local refs of the mirror to ``url`` (``refs/heads/x:refs/heads/y``).

        A ``+`` prefix forces. Raises :class:`PushRefused` when the remote refuses a ref (not a
        fast-forward: someone pushed first), and the fetch errors otherwise.
        """
        given = credentials or Credentials()
        shown = _Masker(url, given)
        with self._lock:
            repo = self._repository()
            local = _local_path(url)
            remote = repo.remotes.create_anonymous(local.as_uri() if local else url)
            ssh = _is_ssh(url)
            callbacks = _Callbacks(given, shown, ssh=ssh)
            known_hosts = given.known_hosts if ssh else None
            started = time.monotonic()
            failure: errors.NebulaError | None = None
            with _OPTIONS.applied(timeout=timeout, known_hosts=known_hosts):
                try:
                    remote.push(refspecs, callbacks=callbacks)
                except pygit2.GitError as error:
                    text = shown(str(error).strip())
                    if "non-fastforward" in text.replace("-", "").replace(" ", "").lower():
                        failure = PushRefused(f"pushing to {shown.url} was refused: {text}")
                    else:
                        waited = time.monotonic() - started >= timeout
                        failure = _fetch_error(
                            shown, GitRef(branch=refspecs[0].rsplit("/", 1)[-1]), error,
                            timed_out=waited, timeout=timeout,
                        )  # fmt: skip
            if failure is None and callbacks.refused:
                failure = PushRefused(f"pushing to {shown.url} was refused: {callbacks.refused}")
            if failure is not None:
                raise failure

    def files(self, commit: str, path: str = ".") -> list[File]:
        """The manifest files of a commit under ``path``, sorted, hidden ones skipped.

        A symbolic link is listed (with ``link=True``, never followed) when its name is a
        manifest's or it points at a folder of the commit. Raises
        :class:`~nebula.errors.SourceRejected` when ``path`` is not a folder there.
        """
        repo = self._repository()
        root = repo[commit].peel(pygit2.Tree)
        base = posixpath.normpath(path).strip("/")
        tree = root
        if base not in ("", "."):
            try:
                tree = root[base].peel(pygit2.Tree)
            # The path does not exist at that revision, or it is a file or a link.
            except (KeyError, ValueError, pygit2.GitError):
                raise errors.SourceRejected(f"{path!r} is not a folder at {commit[:12]}") from None
        prefix = "" if base in ("", ".") else base + "/"
        found: list[File] = []
        todo: list[tuple[str, pygit2.Tree]] = [(prefix, tree)]
        while todo:
            folder, current = todo.pop()
            for entry in current:
                name = entry.name or ""
                path = f"{folder}{name}"
                if name.startswith("."):
                    continue
                if entry.type == pygit2.enums.ObjectType.TREE:
                    todo.append((f"{path}/", repo[entry.id].peel(pygit2.Tree)))
                elif entry.filemode == _LINK_MODE:
                    if name.endswith(MANIFEST_SUFFIXES) or _is_folder_link(root, path):
                        found.append(File(path, str(entry.id), link=True))
                elif name.endswith(MANIFEST_SUFFIXES):
                    found.append(File(path, str(entry.id)))
        return sorted(found, key=lambda f: f.path)

    def read(self, blob: str) -> bytes:
        """The content of a blob."""
        return bytes(self._repository()[blob].peel(pygit2.Blob).data)


# --- Credentials and host keys ----------------------------------------------------------------


class _Callbacks(pygit2.RemoteCallbacks):
    """Answers libgit2's questions during one fetch: which credentials, trust this host?"""

    def __init__(self, credentials: Credentials, shown: _Masker, *, ssh: bool) -> None:
        super().__init__()
        self._credentials = credentials
        self._shown = shown
        self._ssh = ssh
        self._tries = 0
        self.refused = ""  # what the remote said when it refused a pushed ref

    def push_update_reference(self, refname: str, message: str | None) -> None:
        # Called once per pushed ref; a message means the remote refused it.
        if message:
            self.refused = f"{refname}: {message}"

    def credentials(
        self,
        url: str,
        username_from_url: str | None,
        allowed_types: pygit2.enums.CredentialType,
    ) -> pygit2.Username | pygit2.UserPass | pygit2.Keypair:
        kinds = pygit2.enums.CredentialType
        given = self._credentials
        # ssh without a user in the URL: libgit2 first asks only for the name.
        if allowed_types & kinds.USERNAME:
            return pygit2.Username(given.username or "git")
        # libgit2 asks again after each refusal; answering the same again would loop forever.
        self._tries += 1
        if self._tries > 1:
            raise errors.SourceRejected(
                f"{self._shown.url} refused the credentials (check the secret of the GitSource)"
            )
        if allowed_types & kinds.SSH_KEY and given.identity:
            # libssh2 insists on the user named in the URL, if there is one.
            user = username_from_url or given.username or "git"
            return pygit2.KeypairFromMemory(user, given.identity_public, given.identity, "")
        if allowed_types & kinds.USERPASS_PLAINTEXT and given.password:
            user = given.username or username_from_url or "git"
            return pygit2.UserPass(user, given.password)
        raise errors.SourceRejected(
            f"{self._shown.url} asks for credentials and the GitSource has none that fit "
            "(set secretRef)"
        )

    def certificate_check(self, certificate: None, valid: bool, host: bytes) -> bool:
        # ``valid`` is libgit2's verdict: the TLS chain and name for https; for ssh, whether
        # the host key is in the known_hosts that _OPTIONS pointed libgit2 at. pygit2's
        # default would accept any ssh host key.
        if valid:
            return True
        name = host.decode(errors="replace")
        if not self._ssh:
            raise errors.SourceRejected(
                f"the TLS certificate of {name} is not trusted, or names another host"
            )
        if self._credentials.known_hosts:
            raise errors.SourceRejected(
                f"the ssh host key of {name} does not match the known_hosts of the secret"
            )
        raise errors.SourceRejected(
            f"the ssh host key of {name} is unknown: add 'known_hosts' to the secret "
            "(ssh-keyscan prints it)"
        )


class _Masker:
    """Removes secrets from text: the URL's user part, the password or token, the key."""

    def __init__(self, url: str, credentials: Credentials) -> None:
        parsed = urllib.parse.urlsplit(url) if "://" in url else None
        found = [credentials.password, credentials.identity]
        if parsed is not None:
            found.append(parsed.password)
            # Without a password, the user part of an https URL is often the token itself.
            if parsed.password is None and parsed.scheme != "ssh":
                found.append(parsed.username)
        # libgit2 may repeat a URL's secret percent-decoded.
        found += [urllib.parse.unquote(s) for s in found if s]
        self._secrets = sorted({s for s in found if s}, key=len, reverse=True)
        self.url = self(url)

    def __call__(self, text: str) -> str:
        text = _USERINFO_RE.sub(_mask_userinfo, text)
        for secret in self._secrets:
            text = text.replace(secret, _MASK)
        return text


def _mask_userinfo(match: re.Match[str]) -> str:
    scheme, user = match["scheme"], match["user"]
    if match["password"] is not None:
        return f"{scheme}://{user}:{_MASK}@"
    # ssh://git@host names a login; an https user part is often the token itself.
    return match[0] if scheme.lower() == "ssh" else f"{scheme}://{_MASK}@"


# --- libgit2's process-wide options -----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Settings:
    timeout_ms: int
    home: str | None  # a folder holding .ssh/known_hosts; None: the process user's home


class _ProcessOptions:
    """libgit2's server timeouts and home folder, which are process globals, per fetch.

    libgit2 reads them when it opens a connection, so a fetch holds them for its whole run.
    Fetches that need the same values run side by side; one that needs other values waits
    until the running ones are done, and newcomers queue behind it. This is the one piece of
    module state here, because it stands for libgit2's own.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._current: _Settings | None = None
        self._running = 0
        self._waiting = 0
        self._home: str | None = None  # libgit2's home before we first changed it

    @contextlib.contextmanager
    def applied(self, *, timeout: float, known_hosts: str | None) -> collections.abc.Iterator[None]:
        """Holds libgit2's options at these values until the block ends."""
        with contextlib.ExitStack() as stack:
            home = None
            if known_hosts is not None:
                home = stack.enter_context(tempfile.TemporaryDirectory(prefix="nebula-ssh-"))
                (pathlib.Path(home) / ".ssh").mkdir()
                (pathlib.Path(home) / ".ssh" / "known_hosts").write_text(known_hosts)
            wanted = _Settings(max(1, round(timeout * 1000)), home)
            self._enter(wanted)
            try:
                yield
            finally:
                self._leave()

    def _enter(self, wanted: _Settings) -> None:
        with self._changed:
            self._waiting += 1
            try:
                self._changed.wait_for(
                    lambda: self._running == 0 or (self._current == wanted and self._waiting == 1)
                )
            finally:
                self._waiting -= 1
            if self._current != wanted:
                self._set(wanted)
            self._running += 1

    def _leave(self) -> None:
        with self._changed:
            self._running -= 1
            # The temporary home is about to be deleted: give libgit2 its own back.
            if self._running == 0 and self._current is not None and self._current.home:
                self._set(dataclasses.replace(self._current, home=None))
            self._changed.notify_all()

    def _set(self, wanted: _Settings) -> None:
        option = pygit2.enums.Option
        pygit2.option(option.SET_SERVER_CONNECT_TIMEOUT, wanted.timeout_ms)
        pygit2.option(option.SET_SERVER_TIMEOUT, wanted.timeout_ms)
        before = self._current.home if self._current else None
        if wanted.home != before:
            if self._home is None:
                self._home = pygit2.option(option.GET_HOMEDIR) or os.path.expanduser("~")
            pygit2.option(option.SET_HOMEDIR, wanted.home or self._home)
        self._current = wanted


_OPTIONS = _ProcessOptions()


# --- Refs, errors, revisions ------------------------------------------------------------------


def _refspecs(ref: GitRef) -> list[str]:
    if ref.branch:
        return [f"+refs/heads/{ref.branch}:refs/remotes/origin/{ref.branch}"]
    if ref.tag:
        return [f"+refs/tags/{ref.tag}:refs/tags/{ref.tag}"]
    # A fixed commit: bring every branch and tag, then look the commit up.
    return ["+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"]


def _resolve(
    repo: pygit2.Repository, ref: GitRef, advertised: dict[str, pygit2.Oid], url: str
) -> Revision:
    # A fetch of a ref the remote does not have succeeds and fetches nothing, and the mirror
    # may still hold the ref from before: what the remote advertised is the truth.
    if ref.branch or ref.tag:
        oid = advertised.get(f"refs/heads/{ref.branch}" if ref.branch else f"refs/tags/{ref.tag}")
        commit = _lookup(repo, str(oid)) if oid is not None else None
    else:
        commit = _lookup(repo, ref.commit or "")
    if commit is None:
        raise errors.SourceRejected(f"{_describe(ref)} does not exist in {url}")
    return _revision(commit)


def _lookup(repo: pygit2.Repository, commit: str) -> pygit2.Commit | None:
    try:
        return repo[commit].peel(pygit2.Commit)
    # Not in the mirror, or not a commit; an abbreviation shared by two objects also lands
    # here (AmbiguousError is a ValueError) and the fetch that follows says it is missing.
    except (KeyError, ValueError, pygit2.GitError):
        return None


def _describe(ref: GitRef) -> str:
    if ref.branch:
        return f"branch {ref.branch!r}"
    if ref.tag:
        return f"tag {ref.tag!r}"
    return f"commit {ref.commit!r}"


def _fetch_error(
    shown: _Masker, ref: GitRef, error: pygit2.GitError, *, timed_out: bool, timeout: float
) -> errors.NebulaError:
    what = f"fetching {_describe(ref)} from {shown.url}"
    text = shown(str(error).strip())
    status = _HTTP_STATUS_RE.search(text)
    kind = getattr(error, "error_class", None)  # set by pygit2 on plain GitErrors only
    # Credentials refused without asking us (from the URL), or no callback answer fits.
    if isinstance(error, pygit2.AuthError):
        return errors.SourceRejected(f"{what} was refused: {text}")
    # The host key or certificate check failed before our callback could say why.
    if isinstance(error, pygit2.CertificateError):
        return errors.SourceRejected(f"{what} was refused: {text}")
    # libgit2 reports HTTP answers only as text; 4xx is the request, 5xx (and 408/429) the
    # server having a bad moment.
    if status is not None and kind == _ERROR_HTTP:
        code = int(status["status"])
        if code < 500 and code not in (408, 429):
            return errors.SourceRejected(f"{what} was refused: {text}")
    # The path is there but holds no repository (local), or the server says so (ssh).
    if kind == _ERROR_REPOSITORY or any(m in text.lower() for m in _NO_REPOSITORY):
        return errors.SourceRejected(f"{what} was refused: {text}")
    if timed_out:
        return errors.SourceUnavailable(f"{what} failed: no answer within {timeout:g}s ({text})")
    return errors.SourceUnavailable(f"{what} failed: {text}")


def _is_ssh(url: str) -> bool:
    return url.startswith("ssh://") or bool(_SCP_LIKE_RE.match(url))


def _local_path(url: str) -> pathlib.Path | None:
    """The folder a file:// URL or a plain path names; None for a network URL."""
    if url.startswith("file://"):
        return pathlib.Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path))
    if "://" in url or _SCP_LIKE_RE.match(url):
        return None
    return pathlib.Path(url).absolute()


def _is_folder_link(root: pygit2.Tree, path: str) -> bool:
    """Whether the link at ``path`` points at a folder of the same commit."""
    target = bytes(root[path].peel(pygit2.Blob).data).decode(errors="replace")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
        return False  # outside the repository: nothing of the commit is hidden behind it
    try:
        return root[resolved].type == pygit2.enums.ObjectType.TREE
    # The link points at nothing in the commit.
    except KeyError:
        return False


def _revision(commit: pygit2.Commit) -> Revision:
    offset = datetime.timedelta(minutes=commit.commit_time_offset)
    when = datetime.datetime.fromtimestamp(commit.commit_time, datetime.timezone(offset))
    return Revision(
        commit=str(commit.id),
        author=f"{commit.author.name} <{commit.author.email}>",
        message=(commit.message or "").strip().splitlines()[0] if commit.message else "",
        time=when,
    )
