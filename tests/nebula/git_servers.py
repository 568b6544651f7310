"""Real git servers for the fetching tests, all on 127.0.0.1, their files in a given folder.

- :class:`Remote`: a bare repository a test writes commits, tags and links into (file://).
- :func:`serve_http`: ``git http-backend`` (CGI, from the git package) behind a small
  ``http.server`` that demands HTTP Basic auth (any username, the token as the password), over
  plain http or TLS with a certificate from :func:`make_certificate`.
- :func:`serve_ssh`: a real OpenSSH ``sshd`` with its own host key and one authorised user key.
- :func:`silent_port`: a port that accepts connections and never says a word.

Each server is a context manager that stops what it started: threads are joined, processes
terminated and waited for. The fixtures live in the test module that uses them.
"""

from __future__ import annotations

import base64
import collections.abc
import contextlib
import dataclasses
import http.server
import os
import pathlib
import shutil
import socket
import ssl
import subprocess
import threading
import time

import pygit2
import pygit2.enums

HTTP_BACKEND = "/usr/lib/git-core/git-http-backend"
SSHD = shutil.which("sshd", path="/usr/sbin:/usr/bin") or "/usr/sbin/sshd"
SIGNATURE = pygit2.Signature("Nebula Test", "test@nebula.invalid", 1_700_000_000, 0)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of asking)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# --- A bare repository ------------------------------------------------------------------------


class Remote:
    """A bare repository written directly with pygit2: each commit is a full snapshot."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self.repo = pygit2.init_repository(str(path), bare=True, initial_head="main")

    @property
    def url(self) -> str:
        return self.path.as_uri()

    def commit(
        self,
        files: dict[str, str],
        *,
        links: dict[str, str] | None = None,
        branch: str = "main",
        message: str = "change",
        parents: list[str] | None = None,
    ) -> str:
        """Commits exactly ``files`` (path → text) and ``links`` (path → target) on ``branch``.

        The parent is the branch's tip unless ``parents`` says otherwise; returns the commit id.
        """
        index = pygit2.Index()
        for path, text in files.items():
            blob = self.repo.create_blob(text.encode())
            index.add(pygit2.IndexEntry(path, blob, pygit2.enums.FileMode.BLOB))
        for path, target in (links or {}).items():
            blob = self.repo.create_blob(target.encode())
            index.add(pygit2.IndexEntry(path, blob, pygit2.enums.FileMode.LINK))
        tree = index.write_tree(self.repo)
        ref = f"refs/heads/{branch}"
        if parents is None:
            tip = self.repo.references.get(ref)
            parents = [str(tip.target)] if tip is not None else []
        oids = [pygit2.Oid(hex=p) for p in parents]
        commit = self.repo.create_commit(None, SIGNATURE, SIGNATURE, message, tree, oids)
        # Forced: a commit whose parent is not the tip rewrites history, like a force-push.
        self.repo.references.create(ref, commit, force=True)
        return str(commit)

    def tag(self, name: str, commit: str, *, annotated: bool) -> None:
        """Tags ``commit``: an annotated tag object, or a lightweight ref."""
        oid = pygit2.Oid(hex=commit)
        if annotated:
            self.repo.create_tag(name, oid, pygit2.enums.ObjectType.COMMIT, SIGNATURE, name)
        else:
            self.repo.references.create(f"refs/tags/{name}", oid)

    def delete_branch(self, name: str) -> None:
        self.repo.references.delete(f"refs/heads/{name}")


# --- Smart HTTP with Basic auth ---------------------------------------------------------------


class _GitHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: pathlib.Path, token: str) -> None:
        super().__init__(("127.0.0.1", 0), _GitHandler)
        self.root = root
        self.token = token
        self.refusals = 0  # how many requests were answered 401


class _GitHandler(http.server.BaseHTTPRequestHandler):
    server: _GitHTTPServer

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: object) -> None:
        pass  # the default writes every request to stderr

    def _authorised(self) -> bool:
        scheme, _, encoded = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            _user, _, password = base64.b64decode(encoded).decode().partition(":")
        # Garbage in the header: treat it as no credentials at all.
        except (ValueError, UnicodeDecodeError):
            return False
        return password == self.server.token

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()  # the blank line after the last chunk
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _serve(self) -> None:
        body = self._body()
        if not self._authorised():
            self.server.refusals += 1
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        environment = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": "nebula",
            "REMOTE_ADDR": self.client_address[0],
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
        }
        result = subprocess.run(
            [HTTP_BACKEND], input=body, env=environment, capture_output=True, check=False
        )
        head, _, payload = result.stdout.partition(b"\r\n\r\n")
        status = 200
        headers: list[tuple[str, str]] = []
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@dataclasses.dataclass(frozen=True)
class GitHTTP:
    """A running smart-HTTP git server; repositories are folders under ``root``."""

    scheme: str
    port: int
    token: str
    root: pathlib.Path
    server: _GitHTTPServer

    @property
    def refusals(self) -> int:
        """How many requests were answered 401 so far."""
        return self.server.refusals

    def url(self, remote: Remote, *, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}/{remote.path.relative_to(self.root)}"


@contextlib.contextmanager
def serve_http(
    root: pathlib.Path, *, token: str, tls: Certificate | None = None
) -> collections.abc.Iterator[GitHTTP]:
    """Serves the repositories under ``root`` on a free port, over TLS when given a certificate."""
    server = _GitHTTPServer(root, token)
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls.cert, tls.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        port = server.server_address[1]
        yield GitHTTP("https" if tls else "http", port, token, root, server)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


@dataclasses.dataclass(frozen=True)
class Certificate:
    """A self-signed certificate for 127.0.0.1 (its own CA) and its key, as PEM files."""

    cert: pathlib.Path
    key: pathlib.Path


def make_certificate(folder: pathlib.Path) -> Certificate:
    """A certificate for the IP address 127.0.0.1 only, made with the openssl command."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    command = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt"]
    command += ["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"]
    command += ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)]
    subprocess.run(command, check=True, capture_output=True)
    return Certificate(cert, key)


@contextlib.contextmanager
def trusted_by_libgit2(certificate: Certificate) -> collections.abc.Iterator[None]:
    """Adds the certificate to libgit2's trusted CAs, next to the system's, meanwhile.

    libgit2 keeps one OpenSSL context per process and only ever adds locations to it, so the
    certificate stays trusted by this process afterwards; it is valid for 127.0.0.1 only.
    """
    before = (pygit2.settings.ssl_cert_file, pygit2.settings.ssl_cert_dir)
    pygit2.settings.set_ssl_cert_locations(certificate.cert, before[1])
    try:
        yield
    finally:
        pygit2.settings.set_ssl_cert_locations(*before)


# --- sshd -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class KeyPair:
    """An ssh key pair as the texts a Secret would hold."""

    private: str
    public: str


def make_key(path: pathlib.Path) -> KeyPair:
    """A new ed25519 key pair, written to ``path`` and ``path``.pub."""
    command = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)]
    subprocess.run(command, check=True, capture_output=True)
    return KeyPair(path.read_text(), path.with_suffix(".pub").read_text())


@dataclasses.dataclass(frozen=True)
class GitSSH:
    """A running sshd that lets ``user`` in as root; repositories are absolute paths."""

    port: int
    user: KeyPair
    host: KeyPair

    @property
    def known_hosts(self) -> str:
        """The known_hosts line for this server, as ``ssh-keyscan -p PORT 127.0.0.1`` prints."""
        kind, key = self.host.public.split()[:2]
        return f"[127.0.0.1]:{self.port} {kind} {key}\n"

    def url(self, remote: Remote) -> str:
        return f"ssh://root@127.0.0.1:{self.port}{remote.path}"


@contextlib.contextmanager
def serve_ssh(folder: pathlib.Path) -> collections.abc.Iterator[GitSSH]:
    """OpenSSH's sshd on a free port, with a host key of its own and one authorised key.

    Needs root (it logs the client in as root) and the ``openssh-server`` package.
    """
    host = make_key(folder / "host_key")
    user = make_key(folder / "user_key")
    (folder / "authorized_keys").write_text(user.public)
    port = free_port()
    config = folder / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {folder / 'host_key'}\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile none\n"
    )
    # sshd refuses to start as root without its privilege separation folder; Debian's service
    # unit creates it at boot, and there is no service manager here.
    pathlib.Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    log = folder / "sshd.log"
    with log.open("wb") as sink:
        process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=sink)
    try:
        _wait_for_port(port, process=process, log=log)
        yield GitSSH(port, user, host)
    finally:
        # sshd serves each connection from a child that a terminated sshd leaves running:
        # let the last ones finish first, so that nothing outlives the server.
        _wait_for_no_children(process.pid)
        process.terminate()
        process.wait(timeout=10)


def _wait_for_port(port: int, *, process: subprocess.Popen[bytes], log: pathlib.Path) -> None:
    deadline = time.monotonic() + 10
    while process.poll() is None and time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        # Not listening yet: sshd takes a few milliseconds to open its port.
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"sshd did not listen on {port}:\n{log.read_text()}")


def _wait_for_no_children(pid: int) -> None:
    children = pathlib.Path(f"/proc/{pid}/task/{pid}/children")
    deadline = time.monotonic() + 5
    while children.exists() and children.read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.01)


# --- A server that never answers --------------------------------------------------------------


@contextlib.contextmanager
def silent_port() -> collections.abc.Iterator[int]:
    """The port of a socket that completes every TCP handshake and then never sends a byte.

    The kernel accepts connections into the backlog by itself; nobody ever reads them.
    """
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]
