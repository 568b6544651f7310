"""Fetching from real git servers: local paths, smart HTTP(S) with a token, sshd with a key.

The servers (``git_servers.py``) run on 127.0.0.1 for the test and stop after it; what a fetch
does is checked through the mirror's public surface only: the revision, the files, the errors.
"""

from __future__ import annotations

import collections.abc
import concurrent.futures
import dataclasses
import logging
import pathlib
import re
import threading
import time

import pygit2
import pygit2.enums
import pytest

from nebula import errors
from nebula.resources import fields
from nebula.resources.git_source import GitRef
from nebula.sources import fetching
from tests.nebula import git_servers
from tests.nebula.git_servers import GitHTTP, GitSSH, KeyPair, Remote

MAIN = GitRef(branch="main")
TOKEN = "s3cr3t-t0ken-for-tests"


@pytest.fixture
def remote(tmp_path: pathlib.Path) -> Remote:
    """An empty bare repository whose HEAD is ``main``."""
    return Remote(tmp_path / "remote.git")


@pytest.fixture
def mirror(tmp_path: pathlib.Path) -> fetching.Mirror:
    """A mirror that does not exist on disk yet."""
    return fetching.Mirror(tmp_path / "state" / "mirror.git")


@pytest.fixture
def git_http(tmp_path: pathlib.Path) -> collections.abc.Iterator[GitHTTP]:
    """Smart HTTP over plain http with Basic auth, serving the repositories under tmp_path."""
    with git_servers.serve_http(tmp_path, token=TOKEN) as server:
        yield server


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> git_servers.Certificate:
    """A self-signed certificate for 127.0.0.1."""
    return git_servers.make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def git_https(
    tmp_path: pathlib.Path, certificate: git_servers.Certificate
) -> collections.abc.Iterator[GitHTTP]:
    """Smart HTTP over TLS, its certificate trusted by libgit2 for the test."""
    with (
        git_servers.trusted_by_libgit2(certificate),
        git_servers.serve_http(tmp_path, token=TOKEN, tls=certificate) as server,
    ):
        yield server


@pytest.fixture(scope="module")
def git_ssh(tmp_path_factory: pytest.TempPathFactory) -> collections.abc.Iterator[GitSSH]:
    """A real sshd that knows one user key; repositories are reached by absolute path."""
    with git_servers.serve_ssh(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture
def stranger_key(tmp_path: pathlib.Path) -> KeyPair:
    """An ssh key pair the server does not know."""
    return git_servers.make_key(tmp_path / "stranger")


@pytest.fixture
def silent_port() -> collections.abc.Iterator[int]:
    """A port that accepts connections and never answers."""
    with git_servers.silent_port() as port:
        yield port


def _ssh_credentials(server: GitSSH, *, key: KeyPair | None = None) -> fetching.Credentials:
    key = key or server.user
    return fetching.Credentials(
        identity=key.private, identity_public=key.public, known_hosts=server.known_hosts
    )


# --- Local repositories: file:// URLs and plain paths -----------------------------------------


@pytest.mark.parametrize("form", ["file URL", "plain path"])
def test_a_branch_fetches_its_tip_with_author_and_first_line(
    remote: Remote, mirror: fetching.Mirror, form: str
) -> None:
    head = remote.commit({"a.yaml": "a: 1\n"}, message="Add a\n\nMore words.")
    url = remote.url if form == "file URL" else str(remote.path)

    revision = mirror.fetch(url, MAIN)

    assert revision.commit == head
    assert revision.short == head[:12]
    assert revision.message == "Add a"
    assert revision.author == "Nebula Test <test@nebula.invalid>"
    assert revision.time.timestamp() == 1_700_000_000


def test_a_branch_that_moved_on_fetches_the_new_tip(
    remote: Remote, mirror: fetching.Mirror
) -> None:
    remote.commit({"a.yaml": "a: 1\n"})
    mirror.fetch(remote.url, MAIN)
    newer = remote.commit({"a.yaml": "a: 2\n"})

    assert mirror.fetch(remote.url, MAIN).commit == newer


def test_a_force_pushed_branch_moves_the_mirror_to_the_rewritten_commit(
    remote: Remote, mirror: fetching.Mirror
) -> None:
    first = remote.commit({"a.yaml": "a: 1\n"})
    remote.commit({"a.yaml": "a: 2\n"})
    mirror.fetch(remote.url, MAIN)
    rewritten = remote.commit({"a.yaml": "a: 3\n"}, parents=[first], message="Rewritten")

    revision = mirror.fetch(remote.url, MAIN)

    assert revision.commit == rewritten
    assert [f.path for f in mirror.files(revision.commit)] == ["a.yaml"]
    assert mirror.read(mirror.files(revision.commit)[0].blob) == b"a: 3\n"


@pytest.mark.parametrize("annotated", [True, False], ids=["annotated", "lightweight"])
def test_a_tag_resolves_to_the_commit_it_tags(
    remote: Remote, mirror: fetching.Mirror, annotated: bool
) -> None:
    tagged = remote.commit({"a.yaml": "a: 1\n"})
    remote.commit({"a.yaml": "a: 2\n"})
    remote.tag("v1.0.0", tagged, annotated=annotated)

    assert mirror.fetch(remote.url, GitRef(tag="v1.0.0")).commit == tagged


@pytest.mark.parametrize("length", [40, 7], ids=["full", "abbreviated"])
def test_a_fixed_commit_resolves_from_its_full_or_abbreviated_id(
    remote: Remote, mirror: fetching.Mirror, length: int
) -> None:
    pinned = remote.commit({"a.yaml": "a: 1\n"})
    remote.commit({"a.yaml": "a: 2\n"}, branch="other")
    remote.commit({"a.yaml": "a: 3\n"})

    assert mirror.fetch(remote.url, GitRef(commit=pinned[:length])).commit == pinned


def test_a_fixed_commit_already_mirrored_needs_no_answer_from_the_remote(
    remote: Remote, mirror: fetching.Mirror, tmp_path: pathlib.Path
) -> None:
    pinned = remote.commit({"a.yaml": "a: 1\n"})
    mirror.fetch(remote.url, GitRef(commit=pinned))
    remote.path.rename(tmp_path / "moved.git")

    assert mirror.fetch(remote.url, GitRef(commit=pinned)).commit == pinned


def test_an_unknown_commit_is_rejected_naming_it(remote: Remote, mirror: fetching.Mirror) -> None:
    remote.commit({"a.yaml": "a: 1\n"})

    with pytest.raises(errors.SourceRejected, match="commit 'deadbeef' does not exist"):
        mirror.fetch(remote.url, GitRef(commit="deadbeef"))


def test_a_deleted_branch_is_rejected_naming_the_branch(
    remote: Remote, mirror: fetching.Mirror
) -> None:
    # The mirror still holds the branch from the first fetch; it must not be served again.
    remote.commit({"a.yaml": "a: 1\n"})
    remote.commit({"a.yaml": "a: 2\n"}, branch="feature")
    mirror.fetch(remote.url, GitRef(branch="feature"))
    remote.delete_branch("feature")

    with pytest.raises(errors.SourceRejected, match="branch 'feature' does not exist in file://"):
        mirror.fetch(remote.url, GitRef(branch="feature"))


def test_a_missing_tag_is_rejected_naming_the_tag(remote: Remote, mirror: fetching.Mirror) -> None:
    remote.commit({"a.yaml": "a: 1\n"})

    with pytest.raises(errors.SourceRejected, match="tag 'v9' does not exist"):
        mirror.fetch(remote.url, GitRef(tag="v9"))


@pytest.mark.parametrize("form", ["file URL", "plain path"])
def test_a_missing_repository_path_is_rejected_naming_the_path(
    tmp_path: pathlib.Path, mirror: fetching.Mirror, form: str
) -> None:
    missing = tmp_path / "nowhere.git"
    url = missing.as_uri() if form == "file URL" else str(missing)

    with pytest.raises(
        errors.SourceRejected, match=f"there is no repository at {re.escape(str(missing))}$"
    ):
        mirror.fetch(url, MAIN)


def test_a_folder_that_is_not_a_repository_is_rejected(
    tmp_path: pathlib.Path, mirror: fetching.Mirror
) -> None:
    (tmp_path / "plain").mkdir()

    with pytest.raises(errors.SourceRejected, match="could not find repository"):
        mirror.fetch((tmp_path / "plain").as_uri(), MAIN)


# --- The files of a revision ------------------------------------------------------------------


def test_files_lists_only_manifests_under_the_path_and_skips_hidden_ones(
    remote: Remote, mirror: fetching.Mirror
) -> None:
    files = {
        "README.md": "# homelab\n",
        "outside.yaml": "a: 1\n",
        "manifests/nodes.yaml": "a: 1\n",
        "manifests/services/home.yml": "a: 1\n",
        "manifests/services/notes.txt": "not a manifest\n",
        "manifests/.hidden.yaml": "a: 1\n",
        "manifests/.github/workflow.yaml": "a: 1\n",
        "manifests/deep/er/still.yaml": "a: 1\n",
    }
    remote.commit(files)
    revision = mirror.fetch(remote.url, MAIN)

    listed = mirror.files(revision.commit, "manifests")

    assert [f.path for f in listed] == [
        "manifests/deep/er/still.yaml",
        "manifests/nodes.yaml",
        "manifests/services/home.yml",
    ]
    assert not any(f.link for f in listed)
    assert [f.path for f in mirror.files(revision.commit, "./manifests/deep/")] == [
        "manifests/deep/er/still.yaml"
    ]
    assert len(mirror.files(revision.commit)) == 4  # the root: outside.yaml too


def test_files_reports_links_to_manifests_and_folders_without_following_them(
    remote: Remote, mirror: fetching.Mirror
) -> None:
    remote.commit(
        {"manifests/real.yaml": "a: 1\n", "shared/more.yaml": "a: 1\n"},
        links={
            "manifests/alias.yaml": "real.yaml",
            "manifests/shared": "../shared",
            "manifests/README.md": "../README.md",
            "manifests/escape": "../../etc",
        },
    )
    revision = mirror.fetch(remote.url, MAIN)

    listed = {f.path: f.link for f in mirror.files(revision.commit, "manifests")}

    assert listed == {
        "manifests/alias.yaml": True,
        "manifests/real.yaml": False,
        "manifests/shared": True,
    }


@pytest.mark.parametrize("path", ["nodes.yaml", "missing", "linked"])
def test_a_path_that_is_not_a_folder_is_rejected(
    remote: Remote, mirror: fetching.Mirror, path: str
) -> None:
    remote.commit({"nodes.yaml": "a: 1\n", "real/a.yaml": "a: 1\n"}, links={"linked": "real"})
    revision = mirror.fetch(remote.url, MAIN)

    with pytest.raises(errors.SourceRejected, match=f"'{path}' is not a folder at"):
        mirror.files(revision.commit, path)


# --- Smart HTTP(S) with a token ---------------------------------------------------------------


def test_the_right_token_fetches_over_http(
    remote: Remote, mirror: fetching.Mirror, git_http: GitHTTP
) -> None:
    head = remote.commit({"a.yaml": "a: 1\n"})

    revision = mirror.fetch(git_http.url(remote), MAIN, fetching.Credentials(password=TOKEN))

    assert revision.commit == head


def test_a_wrong_token_is_rejected_after_one_try(
    remote: Remote, mirror: fetching.Mirror, git_http: GitHTTP
) -> None:
    remote.commit({"a.yaml": "a: 1\n"})
    wrong = fetching.Credentials(username="me", password="not-the-token")

    with pytest.raises(errors.SourceRejected, match="refused the credentials"):
        mirror.fetch(git_http.url(remote), MAIN, wrong)
    # Once without credentials, once with the wrong ones; then no more asking.
    assert git_http.refusals == 2


def test_no_credentials_for_a_server_that_wants_them_is_rejected_and_says_to_set_secret_ref(
    remote: Remote, mirror: fetching.Mirror, git_http: GitHTTP
) -> None:
    remote.commit({"a.yaml": "a: 1\n"})

    with pytest.raises(errors.SourceRejected, match=r"asks for credentials.*\(set secretRef\)"):
        mirror.fetch(git_http.url(remote), MAIN)


def test_a_missing_repository_over_http_is_rejected(
    mirror: fetching.Mirror, git_http: GitHTTP
) -> None:
    url = f"http://127.0.0.1:{git_http.port}/gone.git"

    with pytest.raises(errors.SourceRejected, match="404"):
        mirror.fetch(url, MAIN, fetching.Credentials(password=TOKEN))


def test_a_server_that_is_down_is_unavailable(mirror: fetching.Mirror) -> None:
    url = f"http://127.0.0.1:{git_servers.free_port()}/remote.git"

    with pytest.raises(errors.SourceUnavailable, match="Connection refused"):
        mirror.fetch(url, MAIN, fetching.Credentials(password=TOKEN))


def test_the_right_token_fetches_over_https_with_a_trusted_certificate(
    remote: Remote, mirror: fetching.Mirror, git_https: GitHTTP
) -> None:
    head = remote.commit({"a.yaml": "a: 1\n"})

    revision = mirror.fetch(git_https.url(remote), MAIN, fetching.Credentials(password=TOKEN))

    assert revision.commit == head


def test_a_certificate_nobody_trusts_is_rejected(
    remote: Remote, mirror: fetching.Mirror, tmp_path: pathlib.Path
) -> None:
    # The usual homelab case: a self-signed certificate that is not among the CAs.
    remote.commit({"a.yaml": "a: 1\n"})
    (tmp_path / "untrusted").mkdir()
    untrusted = git_servers.make_certificate(tmp_path / "untrusted")

    with (
        git_servers.serve_http(tmp_path, token=TOKEN, tls=untrusted) as server,
        pytest.raises(
            errors.SourceRejected, match=r"TLS certificate of 127\.0\.0\.1 is not trusted"
        ),
    ):
        mirror.fetch(server.url(remote), MAIN, fetching.Credentials(password=TOKEN))


# --- ssh with a key ---------------------------------------------------------------------------


def test_the_right_key_fetches_over_ssh_when_the_host_key_is_known(
    remote: Remote, mirror: fetching.Mirror, git_ssh: GitSSH
) -> None:
    head = remote.commit({"a.yaml": "a: 1\n"})

    assert mirror.fetch(git_ssh.url(remote), MAIN, _ssh_credentials(git_ssh)).commit == head


def test_a_private_key_alone_is_enough(
    remote: Remote, mirror: fetching.Mirror, git_ssh: GitSSH
) -> None:
    head = remote.commit({"a.yaml": "a: 1\n"})
    credentials = dataclasses.replace(_ssh_credentials(git_ssh), identity_public=None)

    assert mirror.fetch(git_ssh.url(remote), MAIN, credentials).commit == head


def test_a_key_the_server_does_not_know_is_rejected(
    remote: Remote, mirror: fetching.Mirror, git_ssh: GitSSH, stranger_key: KeyPair
) -> None:
    remote.commit({"a.yaml": "a: 1\n"})

    with pytest.raises(errors.SourceRejected, match="refused the credentials"):
        mirror.fetch(git_ssh.url(remote), MAIN, _ssh_credentials(git_ssh, key=stranger_key))


def test_a_host_key_that_does_not_match_known_hosts_is_rejected(
    remote: Remote, mirror: fetching.Mirror, git_ssh: GitSSH, stranger_key: KeyPair
) -> None:
    remote.commit({"a.yaml": "a: 1\n"})
    kind, key = stranger_key.public.split()[:2]
    impostor = f"[127.0.0.1]:{git_ssh.port} {kind} {key}\n"
    credentials = dataclasses.replace(_ssh_credentials(git_ssh), known_hosts=impostor)

    with pytest.raises(errors.SourceRejected, match="does not match the known_hosts"):
        mirror.fetch(git_ssh.url(remote), MAIN, credentials)


def test_without_known_hosts_an_unknown_host_key_is_rejected_and_says_to_add_them(
    remote: Remote, mirror: fetching.Mirror, git_ssh: GitSSH
) -> None:
    # Without known_hosts in the secret, libgit2 looks in ~/.ssh/known_hosts of the user
    # running the test, which has no entry for this port. pygit2 alone would accept any key.
    remote.commit({"a.yaml": "a: 1\n"})
    credentials = dataclasses.replace(_ssh_credentials(git_ssh), known_hosts=None)

    unknown = r"host key of 127\.0\.0\.1 is unknown: add 'known_hosts'"
    with pytest.raises(errors.SourceRejected, match=unknown):
        mirror.fetch(git_ssh.url(remote), MAIN, credentials)


def test_a_missing_repository_over_ssh_is_rejected(
    mirror: fetching.Mirror, git_ssh: GitSSH, tmp_path: pathlib.Path
) -> None:
    url = f"ssh://root@127.0.0.1:{git_ssh.port}{tmp_path / 'gone.git'}"

    with pytest.raises(errors.SourceRejected, match="does not appear to be a git repository"):
        mirror.fetch(url, MAIN, _ssh_credentials(git_ssh))


def test_a_fetch_with_known_hosts_gives_libgit2_its_home_back(
    remote: Remote, mirror: fetching.Mirror, git_ssh: GitSSH
) -> None:
    home = pygit2.option(pygit2.enums.Option.GET_HOMEDIR)
    remote.commit({"a.yaml": "a: 1\n"})

    mirror.fetch(git_ssh.url(remote), MAIN, _ssh_credentials(git_ssh))

    assert pygit2.option(pygit2.enums.Option.GET_HOMEDIR) == home


# --- Time limits ------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["http", "ssh"])
def test_a_silent_server_is_unavailable_within_the_timeout(
    mirror: fetching.Mirror, silent_port: int, scheme: str
) -> None:
    user = "git@" if scheme == "ssh" else ""
    url = f"{scheme}://{user}127.0.0.1:{silent_port}/remote.git"
    credentials = fetching.Credentials(password=TOKEN, identity="unused", known_hosts="")
    timeout = fields.parse_duration("1s").total_seconds()  # as GitSource.spec.timeout says
    started = time.monotonic()

    with pytest.raises(errors.SourceUnavailable, match="no answer within 1s"):
        mirror.fetch(url, MAIN, credentials, timeout=timeout)

    assert 1 <= time.monotonic() - started < 3


def test_fetches_side_by_side_each_keep_their_own_timeout(
    remote: Remote, tmp_path: pathlib.Path, git_ssh: GitSSH, silent_port: int
) -> None:
    # libgit2's timeouts are process-wide: a fetch that needs another value waits for the
    # running ones instead of changing it under their feet.
    head = remote.commit({"a.yaml": "a: 1\n"})
    silent = fetching.Mirror(tmp_path / "silent.git")
    url = f"http://127.0.0.1:{silent_port}/remote.git"
    started = time.monotonic()

    with concurrent.futures.ThreadPoolExecutor() as pool:
        stuck = pool.submit(silent.fetch, url, MAIN, timeout=1)
        fetched = pool.submit(
            fetching.Mirror(tmp_path / "ssh.git").fetch,
            git_ssh.url(remote),
            MAIN,
            _ssh_credentials(git_ssh),
            timeout=30,
        )

        assert fetched.result().commit == head
        assert isinstance(stuck.exception(), errors.SourceUnavailable)
    assert time.monotonic() - started < 4


def test_fetches_side_by_side_never_see_each_others_known_hosts(
    remote: Remote, tmp_path: pathlib.Path, git_ssh: GitSSH, stranger_key: KeyPair
) -> None:
    # libgit2 reads known_hosts from a process-wide home folder; an impostor entry of one
    # source must never vouch for another source's fetch, nor the other way round.
    head = remote.commit({"a.yaml": "a: 1\n"})
    kind, key = stranger_key.public.split()[:2]
    impostor = f"[127.0.0.1]:{git_ssh.port} {kind} {key}\n"
    trusting = _ssh_credentials(git_ssh)
    doubting = dataclasses.replace(trusting, known_hosts=impostor)
    start = threading.Barrier(6)

    def fetch(number: int, credentials: fetching.Credentials) -> str:
        start.wait()
        mirror = fetching.Mirror(tmp_path / f"mirror-{number}.git")
        return mirror.fetch(git_ssh.url(remote), MAIN, credentials).commit

    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        good = [pool.submit(fetch, n, trusting) for n in range(3)]
        bad = [pool.submit(fetch, n + 3, doubting) for n in range(3)]

        assert [f.result() for f in good] == [head] * 3
        assert all(isinstance(f.exception(), errors.SourceRejected) for f in bad)


# --- Secrets stay secret ----------------------------------------------------------------------


@pytest.mark.parametrize("server", ["down", "up"])
def test_a_token_never_shows_in_errors_or_logs(
    remote: Remote,
    mirror: fetching.Mirror,
    git_http: GitHTTP,
    caplog: pytest.LogCaptureFixture,
    server: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    remote.commit({"a.yaml": "a: 1\n"})
    port = git_http.port if server == "up" else git_servers.free_port()
    url = f"http://someone:url-t0ken-XYZ@127.0.0.1:{port}/remote.git"
    credentials = fetching.Credentials(username="me", password="wrong-t0ken-ABC")

    with pytest.raises(errors.NebulaError) as raised:
        mirror.fetch(url, MAIN, credentials)

    error = raised.value
    shown = [str(error), repr(error), caplog.text, repr(credentials)]
    shown += [str(e) for e in (error.__cause__, error.__context__) if e is not None]
    assert not [text for text in shown if "url-t0ken-XYZ" in text or "wrong-t0ken-ABC" in text]
    assert f"http://someone:***@127.0.0.1:{port}/remote.git" in str(error)


def test_an_ssh_key_never_shows_in_errors(
    remote: Remote, mirror: fetching.Mirror, git_ssh: GitSSH, stranger_key: KeyPair
) -> None:
    remote.commit({"a.yaml": "a: 1\n"})
    credentials = _ssh_credentials(git_ssh, key=stranger_key)

    with pytest.raises(errors.SourceRejected) as raised:
        mirror.fetch(git_ssh.url(remote), MAIN, credentials)

    secret_line = stranger_key.private.splitlines()[1]
    assert secret_line not in str(raised.value)
    assert secret_line not in repr(credentials)
