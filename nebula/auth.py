"""Who may use the web UI and the API: users, roles, API tokens, and signed-in sessions.

Called by the web runtime (``api/auth.py`` identifies every request, ``api/routes/login.py``
signs people in and out) and by whoever writes the users file (:func:`hash_password`,
:func:`new_token`, :func:`hash_token`; ``nebula user add`` later). The users file is read once at
start-up by :func:`load_users`; sessions live in PostgreSQL (``web_sessions``, migration 0004) so
that signing out, idling and removing a user really end them. Every sign-in, failed sign-in and
sign-out lands in the audit log, with the subject ``user/<name>``.

What it must never do: keep, log, return or audit a password, an API token or a session id in
clear (only their hashes are kept), tell a caller which part of a failed sign-in was wrong, or
know anything of HTTP. The users file::

    users:
      - name: ada
        password_hash: "$argon2id$v=19$m=65536,t=3,p=4$..."  # nebula.auth.hash_password(...)
        role: admin                                         # viewer < approver < admin
    tokens:                                                 # API tokens, for scripts
      - name: ci
        token_hash: "sha256:9f86d081884c7d65..."            # nebula.auth.hash_token(token)
        role: viewer
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import enum
import functools
import hashlib
import hmac
import pathlib
import secrets
from collections.abc import Iterable
from typing import Any, Literal

import argon2
import argon2.exceptions
import psycopg
import pydantic

from nebula import audit, db, errors
from nebula.manifests import parsing

__all__ = [
    "FIRST_DELAY",
    "FREE_ATTEMPTS",
    "IDLE",
    "LIFETIME",
    "MAX_DELAY",
    "OPEN_ACCESS",
    "SIGNED_IN",
    "SIGNED_OUT",
    "SIGN_IN_FAILED",
    "THROTTLED",
    "THROTTLE_WINDOW",
    "WRONG_CREDENTIALS",
    "ApiToken",
    "Login",
    "Role",
    "Session",
    "Sessions",
    "Throttled",
    "User",
    "Users",
    "hash_password",
    "hash_token",
    "load_users",
    "new_token",
    "parse_users",
    "sign_in",
    "subject",
]

IDLE = datetime.timedelta(hours=12)
"""A session nobody used for this long is over."""
LIFETIME = datetime.timedelta(days=7)
"""A session is over this long after its sign-in, however busy."""
FREE_ATTEMPTS = 5
"""Failed sign-ins of one name (within :data:`THROTTLE_WINDOW`) before the next one must wait."""
FIRST_DELAY = 5.0
"""Seconds the first throttled attempt waits after the last failure; each failure doubles it."""
MAX_DELAY = 300.0
"""The longest wait between two attempts of a throttled name, in seconds."""
THROTTLE_WINDOW = datetime.timedelta(minutes=15)
"""How far back failures count; a successful sign-in also starts the count afresh."""

SIGNED_IN = "auth.sign_in"
"""The audit action of a sign-in (actor and subject: the user)."""
SIGNED_OUT = "auth.sign_out"
"""The audit action of a sign-out (actor and subject: the user)."""
SIGN_IN_FAILED = "auth.sign_in_failed"
"""The audit action of a refused sign-in (actor ``anonymous``, subject: the name tried)."""
WRONG_CREDENTIALS = "wrong name or password"
"""Why a sign-in failed, in the audit detail and on the page: never which of the two."""
THROTTLED = "too many failed sign-ins"
"""Why a sign-in was refused without checking the password."""

_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"
_TOKEN_HASH_PREFIX = "sha256:"
_SUBJECT_CHARS = 100  # a name tried is attacker's input: the audit keeps this much of it


class Role(enum.IntEnum):
    """What a user may do; each role may do everything the roles below it may."""

    VIEWER = 1
    """Reads every page and every GET of the API."""
    APPROVER = 2
    """Also approves and rejects change requests."""
    ADMIN = 3
    """Everything."""

    def __str__(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        """The role spelt ``text`` (``viewer``, ``approver``, ``admin``); ValueError otherwise."""
        for role in cls:
            if str(role) == text:
                return role
        raise ValueError(f"{text!r} is not a role: viewer, approver or admin")


@dataclasses.dataclass(frozen=True)
class User:
    """Someone the server knows: a signed-in person, or the script holding an API token."""

    name: str
    role: Role

    def can(self, role: Role) -> bool:
        """Whether this user holds ``role`` or one above it."""
        return self.role >= role


OPEN_ACCESS = User(name="anonymous", role=Role.ADMIN)
"""Everyone, on a server started without users (tests, a single-user ``nebula up``)."""


@dataclasses.dataclass(frozen=True)
class Login:
    """A user of the users file: a name, the argon2 hash of their password, and a role."""

    name: str
    password_hash: str = dataclasses.field(repr=False)
    role: Role


@dataclasses.dataclass(frozen=True)
class ApiToken:
    """An API token of the users file: a name, the token's sha256, and the role it carries."""

    name: str
    token_hash: str = dataclasses.field(repr=False)
    role: Role


def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` for the users file; salted, so two calls differ.

    Raises :class:`~nebula.errors.ConfigurationError` for an empty password. Takes tens of
    milliseconds of CPU on purpose.
    """
    if not password:
        raise errors.ConfigurationError("a password may not be empty")
    return argon2.PasswordHasher().hash(password)


def hash_token(token: str) -> str:
    """``sha256:<hex>`` of an API token, as the users file keeps it.

    No salt and no slow hash: tokens come from :func:`new_token` (256 random bits), which no
    dictionary holds, and a fast hash lets every API request be checked in microseconds.
    """
    return _TOKEN_HASH_PREFIX + hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A new random API token (256 bits, URL-safe): shown once, kept only as its hash."""
    return secrets.token_urlsafe(32)


def subject(name: str) -> str:
    """The audit subject of a user (``user/ada``); a name tried at sign-in is cut short."""
    return f"user/{name[:_SUBJECT_CHARS]}"


def _check_password_hash(value: str) -> str:
    try:
        argon2.extract_parameters(value)
    # Not an argon2 hash: most likely a password written in clear.
    except argon2.exceptions.InvalidHashError:
        raise ValueError("is not an argon2 hash; make one with nebula.auth.hash_password") from None
    return value


def _check_token_hash(value: str) -> str:
    digest = value.removeprefix(_TOKEN_HASH_PREFIX)
    if (
        not value.startswith(_TOKEN_HASH_PREFIX)
        or len(digest) != 64
        or digest.strip("0123456789abcdef")
    ):
        raise ValueError("is not sha256:<64 hex digits>; make one with nebula.auth.hash_token")
    return value


class Users:
    """The users and API tokens of a server, as its users file lists them; never changes.

    Raises :class:`~nebula.errors.ConfigurationError` when a name is listed twice (users and
    tokens share one namespace, so the audit log is never ambiguous) or a hash is malformed.
    """

    def __init__(
        self,
        logins: Iterable[Login] = (),
        tokens: Iterable[ApiToken] = (),
        *,
        source: str = "the users file",
    ) -> None:
        self.source = source
        listed = tuple(logins)
        self._logins = {login.name: login for login in listed}
        self._tokens = tuple(tokens)
        self._hasher = argon2.PasswordHasher()
        names = [*(login.name for login in listed), *(token.name for token in self._tokens)]
        if len(set(names)) != len(names):
            twice = sorted({name for name in names if names.count(name) > 1})
            raise errors.ConfigurationError(f"{source}: names listed twice: {', '.join(twice)}")
        try:
            for login in self._logins.values():
                _check_password_hash(login.password_hash)
            for token in self._tokens:
                _check_token_hash(token.token_hash)
        # A hash given in code rather than read by parse_users, which checks each with its line.
        except ValueError as error:
            raise errors.ConfigurationError(f"{source}: a hash {error}") from None

    def __repr__(self) -> str:
        return f"Users({len(self._logins)} users, {len(self._tokens)} tokens from {self.source})"

    def get(self, name: str) -> User | None:
        """The user ``name`` with its role as configured now; None when no longer listed."""
        login = self._logins.get(name)
        return User(login.name, login.role) if login else None

    def authenticate(self, name: str, password: str) -> User | None:
        """The user these are the name and password of; None when either is wrong.

        An unknown name costs the same argon2 check as a wrong password, so the time taken does
        not tell which was wrong. CPU-bound for tens of milliseconds: call it from a thread.
        """
        login = self._logins.get(name)
        try:
            self._hasher.verify(login.password_hash if login else self._decoy, password)
        # The password does not match (VerifyMismatchError is a VerificationError).
        except argon2.exceptions.VerificationError:
            return None
        return User(login.name, login.role) if login else None

    def bearer(self, token: str) -> User | None:
        """The holder of an API token, with the token's role; None for an unknown token.

        Every configured hash is compared, each in constant time.
        """
        hashed = hash_token(token)
        found: ApiToken | None = None
        for entry in self._tokens:
            if hmac.compare_digest(entry.token_hash, hashed):
                found = entry
        return User(found.name, found.role) if found else None

    @functools.cached_property
    def _decoy(self) -> str:
        # What an unknown name is checked against; made by this hasher, so it costs the same.
        return self._hasher.hash(secrets.token_urlsafe(16))


class _Entry(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    name: str = pydantic.Field(pattern=_NAME_PATTERN)
    role: Literal["viewer", "approver", "admin"]


class _LoginEntry(_Entry):
    password_hash: str

    @pydantic.field_validator("password_hash")
    @classmethod
    def _argon2(cls, value: str) -> str:
        return _check_password_hash(value)


class _TokenEntry(_Entry):
    token_hash: str

    @pydantic.field_validator("token_hash")
    @classmethod
    def _sha256(cls, value: str) -> str:
        return _check_token_hash(value)


class _UsersFile(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    users: list[_LoginEntry] = []
    tokens: list[_TokenEntry] = []


def _dotted(path: parsing.Path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text


def _where(source: str, text: str, document: parsing.Document, path: parsing.Path) -> str:
    """``file:line:column`` of the deepest part of ``path`` the document has."""
    found = parsing.positions(text, document.index)
    for length in range(len(path), -1, -1):
        if path[:length] in found:
            line, column = found[path[:length]]
            return f"{source}:{line}:{column}"
    return f"{source}:{document.line}"


def parse_users(text: str, *, source: str) -> Users:
    """The users and tokens of a users file's text; ``source`` names it in errors.

    Raises :class:`~nebula.errors.ConfigurationError` naming ``source``, the line and the field
    for bad YAML, an unknown key or role, a password in clear, a malformed token hash, a name
    listed twice, or a file that lists nobody.
    """
    try:
        documents = [document for document in parsing.parse(text) if document.data is not None]
    # Not YAML, or YAML that manifests would refuse too (tags, alias bombs).
    except parsing.ParseError as error:
        raise errors.ConfigurationError(
            f"{source}:{error.line}:{error.column}: {error.message}"
        ) from None
    if len(documents) != 1:
        raise errors.ConfigurationError(
            f"{source}: expected one YAML document with users and tokens, found {len(documents)}"
        )
    document = documents[0]
    try:
        found = _UsersFile.model_validate(document.data)
    # The first problem is enough to fix; its line is looked up only now.
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        path = tuple(first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        where = _where(source, text, document, path)
        raise errors.ConfigurationError(
            f"{where}: {_dotted(path)}: {message}" if path else f"{where}: {message}"
        ) from None

    seen: set[str] = set()
    sections: list[tuple[str, list[_LoginEntry] | list[_TokenEntry]]] = [
        ("users", found.users),
        ("tokens", found.tokens),
    ]
    for section, entries in sections:
        for index, entry in enumerate(entries):
            if entry.name in seen:
                where = _where(source, text, document, (section, index, "name"))
                raise errors.ConfigurationError(
                    f"{where}: {section}[{index}].name: {entry.name!r} is listed twice "
                    "(users and tokens share their names)"
                )
            seen.add(entry.name)
    if not seen:
        raise errors.ConfigurationError(f"{source}: lists no user and no token")
    return Users(
        logins=[Login(e.name, e.password_hash, Role.parse(e.role)) for e in found.users],
        tokens=[ApiToken(e.name, e.token_hash, Role.parse(e.role)) for e in found.tokens],
        source=source,
    )


def load_users(path: pathlib.Path) -> Users:
    """Reads a users file; raises :class:`~nebula.errors.ConfigurationError` naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    # Missing, unreadable, or a folder.
    except OSError as error:
        raise errors.ConfigurationError(
            f"{path}: cannot read the users file: {error.strerror}"
        ) from None
    # Not text.
    except UnicodeDecodeError:
        raise errors.ConfigurationError(f"{path}: the users file is not UTF-8 text") from None
    return parse_users(text, source=str(path))


@dataclasses.dataclass(frozen=True)
class Session:
    """A signed-in browser: whose it is, and the CSRF token its forms must send back."""

    id: str = dataclasses.field(repr=False)
    """The cookie's value; the database keeps only its sha256."""
    name: str
    """The user signed in; their role is looked up in :class:`Users` on every request."""
    csrf_token: str = dataclasses.field(repr=False)
    """What every state-changing form of this session must send back."""
    started_at: datetime.datetime
    """When the user signed in (the database's clock)."""


@dataclasses.dataclass(frozen=True)
class Throttled:
    """A sign-in refused without checking the password: that name failed too often lately."""

    retry_after: float
    """Seconds until the name may try again."""


_SWEEP = "DELETE FROM web_sessions WHERE seen_at <= now() - %s OR started_at <= now() - %s"
_START = """
INSERT INTO web_sessions (id_hash, username, csrf_token) VALUES (%s, %s, %s) RETURNING started_at
"""
# One round trip per request: read the live session, and note that it was used, but at most
# once a minute, so that browsing does not write a row per page.
_FIND = """
WITH live AS (
    SELECT id_hash, username, csrf_token, started_at, seen_at FROM web_sessions
    WHERE id_hash = %(id)s AND seen_at > now() - %(idle)s AND started_at > now() - %(lifetime)s
), touched AS (
    UPDATE web_sessions SET seen_at = now() FROM live
    WHERE web_sessions.id_hash = live.id_hash AND live.seen_at < now() - interval '1 minute'
)
SELECT username, csrf_token, started_at FROM live
"""
_END = "DELETE FROM web_sessions WHERE id_hash = %s RETURNING username"
# The audit log is the counter: failed sign-ins of a name since its last sign-in, within the
# window. Both parts read a few minutes of the log through its index on "at".
_FAILURES = """
SELECT count(*), max(at), now() FROM audit_log
WHERE subject = %(subject)s AND action = %(failed)s AND detail ->> 'reason' = %(reason)s
  AND at > now() - %(window)s
  AND at > coalesce(
      (SELECT max(at) FROM audit_log
       WHERE subject = %(subject)s AND action = %(signed_in)s AND at > now() - %(window)s),
      '-infinity')
"""


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class Sessions:
    """Signed-in sessions in the database at ``conninfo``, and the audit of signing in and out.

    Holds a small connection pool: :meth:`open` it (or use ``with``) before use, and
    :meth:`close` it after. ``idle`` and ``lifetime`` bound every session.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        idle: datetime.timedelta = IDLE,
        lifetime: datetime.timedelta = LIFETIME,
        max_connections: int = 4,
    ) -> None:
        self._conninfo = conninfo
        self._idle = idle
        self._lifetime = lifetime
        self._pool = db.Pool(conninfo, max_size=max_connections)

    def open(self) -> Sessions:
        """Connects; raises :class:`~nebula.errors.StoreUnavailable` when PostgreSQL is down."""
        self._pool.open()
        return self

    def close(self) -> None:
        """Closes every connection; safe to call twice."""
        self._pool.close()

    def __enter__(self) -> Sessions:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connection(self) -> contextlib.AbstractContextManager[psycopg.Connection[Any]]:
        return self._pool.connection()

    def start(self, user: User, *, client: str | None = None) -> Session:
        """A new session of ``user``, recorded as a sign-in; sweeps the expired sessions first."""
        session_id, csrf_token = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self._connection() as conn:
            conn.execute(_SWEEP, (self._idle, self._lifetime))
            row = conn.execute(_START, (_digest(session_id), user.name, csrf_token)).fetchone()
        assert row is not None  # INSERT ... RETURNING returns the row it inserted
        audit.record(
            self._conninfo,
            actor=user.name,
            action=SIGNED_IN,
            subject=subject(user.name),
            detail=_client(client),
        )
        return Session(id=session_id, name=user.name, csrf_token=csrf_token, started_at=row[0])

    def find(self, session_id: str) -> Session | None:
        """The live session with this id; None when unknown, signed out, idle or too old.

        Counts as a use of the session (it stays alive another ``idle``). Safe to repeat.
        """
        with self._connection() as conn:
            row = conn.execute(
                _FIND, {"id": _digest(session_id), "idle": self._idle, "lifetime": self._lifetime}
            ).fetchone()
        if row is None:
            return None
        name, csrf_token, started_at = row
        return Session(id=session_id, name=name, csrf_token=csrf_token, started_at=started_at)

    def end(self, session_id: str, *, client: str | None = None) -> str | None:
        """Ends a session, recorded as a sign-out; the name of its user, or None if none was.

        Safe to repeat: a second call finds nothing to end and records nothing.
        """
        with self._connection() as conn:
            row = conn.execute(_END, (_digest(session_id),)).fetchone()
        if row is None:
            return None
        name: str = row[0]
        audit.record(
            self._conninfo,
            actor=name,
            action=SIGNED_OUT,
            subject=subject(name),
            detail=_client(client),
        )
        return name

    def refuse(self, name: str, *, reason: str, client: str | None = None) -> None:
        """Records a failed sign-in of ``name`` (as typed; never the password) and why."""
        audit.record(
            self._conninfo,
            actor="anonymous",
            action=SIGN_IN_FAILED,
            subject=subject(name),
            detail={**_client(client), "reason": reason},
        )

    def wait_before_sign_in(self, name: str) -> float:
        """Seconds ``name`` must wait before its next attempt; 0 when it may try now.

        After :data:`FREE_ATTEMPTS` wrong passwords within :data:`THROTTLE_WINDOW` (and since
        the last sign-in), each attempt waits :data:`FIRST_DELAY` after the last failure, twice
        as long per further failure, up to :data:`MAX_DELAY`. Refused attempts do not count.
        """
        with self._connection() as conn:
            row = conn.execute(
                _FAILURES,
                {
                    "subject": subject(name),
                    "failed": SIGN_IN_FAILED,
                    "reason": WRONG_CREDENTIALS,
                    "signed_in": SIGNED_IN,
                    "window": THROTTLE_WINDOW,
                },
            ).fetchone()
        assert row is not None  # an aggregate always returns one row
        failures: int = row[0]
        last: datetime.datetime | None = row[1]
        now: datetime.datetime = row[2]
        if failures < FREE_ATTEMPTS or last is None:
            return 0.0
        delay = min(FIRST_DELAY * 2.0 ** min(failures - FREE_ATTEMPTS, 16), MAX_DELAY)
        return max(0.0, delay - (now - last).total_seconds())


def _client(client: str | None) -> dict[str, str]:
    return {"client": client} if client else {}


def sign_in(
    users: Users,
    sessions: Sessions,
    *,
    name: str,
    password: str,
    client: str | None = None,
) -> Session | Throttled | None:
    """Signs ``name`` in: a new session when the password is right and the name not throttled.

    :class:`Throttled` when the name failed too often lately (the password is then not even
    checked); None for a wrong name or password, never saying which. Every outcome is in the
    audit log, with ``client`` (the caller's address) but never the password. Blocks for an
    argon2 check and a few queries: call it from a thread.
    """
    # The throttle comes first: a throttled guess costs no argon2 check and teaches nothing.
    wait = sessions.wait_before_sign_in(name)
    if wait > 0:
        sessions.refuse(name, reason=THROTTLED, client=client)
        return Throttled(retry_after=wait)

    user = users.authenticate(name, password)
    if user is None:
        sessions.refuse(name, reason=WRONG_CREDENTIALS, client=client)
        return None
    return sessions.start(user, client=client)
