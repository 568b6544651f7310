"""Signing in, roles, API tokens and CSRF: who may see and do what, on a real PostgreSQL.

``guarded_client`` talks to an app with the users of ``conftest.PASSWORDS`` and the tokens of
``conftest.TOKENS``; ``client`` to an open app (no users). The routes that need a role are
defined here, on the app under test, exactly as a page or an API route would ask for it.
"""

from __future__ import annotations

import datetime
import logging
import pathlib
import re
from typing import Annotated

import fastapi
import httpx
import psycopg
import pytest

import api
from api import auth as web_auth
from api.routes import login as login_route
from nebula import audit, auth, errors
from nebula.secrets import EnvironmentSecrets
from nebula.store import PostgresStore
from nebula.sync import History
from tests.api.conftest import PASSWORDS, TOKENS, RecordingTrigger

CSRF_INPUT = re.compile(r'<input type="hidden" name="csrf_token" value="([^"]+)">')


def approve(user: web_auth.Approver) -> dict[str, str]:
    """A test-only action that needs the approver role; answers who did it."""
    return {"approvedBy": user.name}


def reject(user: web_auth.Approver, reason: Annotated[str, fastapi.Form()]) -> dict[str, str]:
    """A test-only form with a field of its own, read by FastAPI before the CSRF check."""
    return {"rejectedBy": user.name, "reason": reason}


@pytest.fixture
def approve_routes(guarded_app: fastapi.FastAPI, app: fastapi.FastAPI) -> None:
    """``POST /test/approve``, ``/test/reject`` (pages' forms), ``/api/v1/test/approve``."""
    for each in (guarded_app, app):
        each.add_api_route("/test/approve", approve, methods=["POST"])
        each.add_api_route("/api/v1/test/approve", approve, methods=["POST"])
        each.add_api_route("/test/reject", reject, methods=["POST"])


async def sign_in(
    client: httpx.AsyncClient, name: str, password: str | None = None
) -> httpx.Response:
    """Posts the login form as a browser would; the client keeps the cookie it gets."""
    form = {"name": name, "password": PASSWORDS[name] if password is None else password}
    return await client.post("/login", data={**form, "next": "/"})


async def csrf_of(client: httpx.AsyncClient) -> str:
    """The CSRF token a page renders for the client's session (the sign-out form has one)."""
    page = await client.get("/login")
    found = CSRF_INPUT.search(page.text)
    assert found, page.text
    return found.group(1)


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name][0]}"}


async def test_signing_in_sets_an_http_only_same_site_cookie_and_goes_to_next(
    guarded_client: httpx.AsyncClient,
) -> None:
    response = await guarded_client.post(
        "/login", data={"name": "vera", "password": PASSWORDS["vera"], "next": "/?kind=Node"}
    )

    assert response.status_code == 303
    assert response.headers["location"] == "/?kind=Node"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{web_auth.COOKIE}=")
    assert "HttpOnly" in cookie
    assert "samesite=lax" in cookie.lower()
    assert "Path=/" in cookie
    assert "Secure" not in cookie  # plain http: a Secure cookie would never come back
    assert (await guarded_client.get("/")).status_code == 200


async def test_signing_in_over_https_makes_the_cookie_secure(
    guarded_app: fastapi.FastAPI,
) -> None:
    transport = httpx.ASGITransport(app=guarded_app)
    async with httpx.AsyncClient(transport=transport, base_url="https://nebula.test") as client:
        response = await sign_in(client, "vera")

    assert response.status_code == 303
    assert "Secure" in response.headers["set-cookie"]


@pytest.mark.parametrize(
    ("name", "password"),
    [("vera", "not vera's password"), ("nobody", "whatever"), ("", "")],
    ids=["wrong-password", "unknown-name", "empty-form"],
)
async def test_wrong_credentials_answer_401_with_the_form_and_no_cookie_nor_hint(
    guarded_client: httpx.AsyncClient, name: str, password: str
) -> None:
    response = await guarded_client.post("/login", data={"name": name, "password": password})

    assert response.status_code == 401
    assert "set-cookie" not in response.headers
    assert login_route.WRONG_MESSAGE in response.text
    assert '<form method="post" action="/login">' in response.text
    assert 'type="password" autocomplete="current-password" required' in response.text
    assert (await guarded_client.get("/")).status_code == 303


async def test_pages_send_the_anonymous_to_the_login_form_and_the_api_answers_401(
    guarded_client: httpx.AsyncClient,
) -> None:
    page = await guarded_client.get("/", params={"kind": "GitSource"})
    docs = await guarded_client.get("/api/docs")
    api_list = await guarded_client.get("/api/v1/resources/GitSource")
    schema = await guarded_client.get("/api/v1/openapi.json")

    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2F%3Fkind%3DGitSource"
    assert docs.status_code == 303
    assert api_list.status_code == 401
    assert api_list.json() == {"detail": web_auth.SIGN_IN_REQUIRED}
    assert api_list.headers["www-authenticate"] == "Bearer"
    assert schema.status_code == 401
    form = await guarded_client.get(page.headers["location"])
    assert form.status_code == 200
    assert 'name="next" value="/?kind=GitSource"' in form.text


async def test_the_probe_static_files_webhook_and_heartbeat_stay_outside_the_gate(
    guarded_client: httpx.AsyncClient,
) -> None:
    health = await guarded_client.get("/healthz")
    style = await guarded_client.get("/static/style.css")
    # Each answers by its own rules: a body that is no webhook, a server without agent token.
    hook = await guarded_client.post("/hooks/git", content=b"{}")
    beat = await guarded_client.post("/api/v1/agents/heartbeat", json={})

    assert health.status_code == 200
    assert style.status_code == 200
    assert hook.status_code == 400
    assert beat.status_code == 422, "the route read the body: the gate let it through"


async def test_a_viewer_gets_403_where_an_approver_is_needed_and_an_approver_passes(
    guarded_client: httpx.AsyncClient, approve_routes: None
) -> None:
    await sign_in(guarded_client, "vera")
    refused = await guarded_client.post(
        "/test/approve", data={web_auth.CSRF_FIELD: await csrf_of(guarded_client)}
    )
    await guarded_client.post("/logout", data={web_auth.CSRF_FIELD: await csrf_of(guarded_client)})
    await sign_in(guarded_client, "abe")
    allowed = await guarded_client.post(
        "/test/approve", data={web_auth.CSRF_FIELD: await csrf_of(guarded_client)}
    )

    assert refused.status_code == 403
    assert refused.json()["detail"] == "this needs the approver role; vera is viewer"
    assert allowed.status_code == 200
    assert allowed.json() == {"approvedBy": "abe"}


async def test_a_form_without_its_csrf_token_is_refused_and_with_it_accepted(
    guarded_client: httpx.AsyncClient, approve_routes: None
) -> None:
    await sign_in(guarded_client, "ada")
    first, second = await csrf_of(guarded_client), await csrf_of(guarded_client)

    missing = await guarded_client.post("/test/approve", data={"comment": "looks fine"})
    forged = await guarded_client.post("/test/approve", data={web_auth.CSRF_FIELD: "guess"})
    as_json = await guarded_client.post("/api/v1/test/approve", json={})
    accepted = await guarded_client.post("/test/approve", data={web_auth.CSRF_FIELD: first})
    in_header = await guarded_client.post(
        "/api/v1/test/approve", headers={web_auth.CSRF_HEADER: second}
    )
    with_fields = await guarded_client.post(
        "/test/reject", data={"reason": "too big", web_auth.CSRF_FIELD: second}
    )
    fields_only = await guarded_client.post("/test/reject", data={"reason": "too big"})

    assert first != second, "masked anew on every page, against BREACH"
    for refused in (missing, forged, as_json, fields_only):
        assert refused.status_code == 403
        assert refused.json() == {"detail": web_auth.CSRF_REFUSED}
    assert accepted.status_code == 200
    assert in_header.status_code == 200
    assert with_fields.json() == {"rejectedBy": "ada", "reason": "too big"}


async def test_the_csrf_token_of_one_session_does_not_open_another(
    guarded_app: fastapi.FastAPI, guarded_client: httpx.AsyncClient, approve_routes: None
) -> None:
    await sign_in(guarded_client, "ada")
    transport = httpx.ASGITransport(app=guarded_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://nebula.test") as other:
        await sign_in(other, "abe")
        token_of_abe = await csrf_of(other)

    response = await guarded_client.post("/test/approve", data={web_auth.CSRF_FIELD: token_of_abe})

    assert response.status_code == 403


async def test_an_api_token_needs_no_csrf_and_carries_its_own_role(
    guarded_client: httpx.AsyncClient, approve_routes: None
) -> None:
    approved = await guarded_client.post("/api/v1/test/approve", headers=bearer("ci"))
    viewer = await guarded_client.post("/api/v1/test/approve", headers=bearer("dashboard"))
    reads = await guarded_client.get("/api/v1/resources/GitSource", headers=bearer("dashboard"))
    unknown = await guarded_client.get(
        "/api/v1/resources/GitSource", headers={"Authorization": "Bearer not-a-token"}
    )

    assert approved.status_code == 200
    assert approved.json() == {"approvedBy": "ci"}
    assert viewer.status_code == 403
    assert reads.status_code == 200
    assert unknown.status_code == 401
    assert unknown.json() == {"detail": web_auth.UNKNOWN_TOKEN}


async def test_signing_out_ends_the_session_on_the_server(
    guarded_app: fastapi.FastAPI, guarded_client: httpx.AsyncClient
) -> None:
    await sign_in(guarded_client, "vera")
    old_cookie = guarded_client.cookies[web_auth.COOKIE]
    without_token = await guarded_client.post("/logout")
    signed_out = await guarded_client.post(
        "/logout", data={web_auth.CSRF_FIELD: await csrf_of(guarded_client)}
    )

    transport = httpx.ASGITransport(app=guarded_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://nebula.test") as replay:
        replayed = await replay.get("/", headers={"Cookie": f"{web_auth.COOKIE}={old_cookie}"})

    assert without_token.status_code == 403, "signing out is a form like any other"
    assert signed_out.status_code == 303
    assert signed_out.headers["location"] == "/login"
    assert f'{web_auth.COOKIE}=""' in signed_out.headers["set-cookie"]
    assert replayed.status_code == 303
    assert replayed.headers["location"].startswith("/login")


async def test_a_session_ends_when_idle_too_long_but_not_while_in_use(
    guarded_client: httpx.AsyncClient, database: str
) -> None:
    await sign_in(guarded_client, "vera")

    # Time passes in the database, whose clock decides: twice nearly the idle limit, with a
    # visit in between, then the whole limit without one.
    nearly = auth.IDLE - datetime.timedelta(minutes=2)
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("UPDATE web_sessions SET seen_at = seen_at - %s", (nearly,))
        visited = await guarded_client.get("/")
        conn.execute("UPDATE web_sessions SET seen_at = seen_at - %s", (nearly,))
        still_in = await guarded_client.get("/")
        conn.execute("UPDATE web_sessions SET seen_at = seen_at - %s", (auth.IDLE,))
        idle = await guarded_client.get("/")

    assert (visited.status_code, still_in.status_code) == (200, 200)
    assert idle.status_code == 303


async def test_a_session_ends_after_its_lifetime_however_busy(
    guarded_client: httpx.AsyncClient, database: str
) -> None:
    await sign_in(guarded_client, "vera")

    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("UPDATE web_sessions SET started_at = started_at - %s", (auth.LIFETIME,))

    assert (await guarded_client.get("/")).status_code == 303


async def test_a_user_removed_from_the_users_file_is_signed_out_at_the_restart(
    guarded_app: fastapi.FastAPI, guarded_client: httpx.AsyncClient, sessions: auth.Sessions
) -> None:
    await sign_in(guarded_client, "vera")
    cookie = guarded_client.cookies[web_auth.COOKIE]
    services = guarded_app.state.services
    without_vera = auth.Users([auth.Login("ada", auth.hash_password("pw"), auth.Role.ADMIN)])
    restarted = api.create_app(
        store=services.store,
        runs=services.runs,
        trigger=services.trigger,
        secrets=services.secrets,
        users=without_vera,
        sessions=sessions,
    )

    transport = httpx.ASGITransport(app=restarted)
    async with httpx.AsyncClient(transport=transport, base_url="http://nebula.test") as client:
        response = await client.get("/", headers={"Cookie": f"{web_auth.COOKIE}={cookie}"})

    assert response.status_code == 303


async def test_signing_in_out_and_failing_are_audited_without_the_password(
    guarded_client: httpx.AsyncClient, database: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await sign_in(guarded_client, "abe", password="abe guesses wrong")
    await sign_in(guarded_client, "abe")
    await guarded_client.post("/logout", data={web_auth.CSRF_FIELD: await csrf_of(guarded_client)})

    entries = audit.entries(database, subject="user/abe")
    assert [(e.actor, e.action, e.detail.get("reason")) for e in reversed(entries)] == [
        ("anonymous", auth.SIGN_IN_FAILED, auth.WRONG_CREDENTIALS),
        ("abe", auth.SIGNED_IN, None),
        ("abe", auth.SIGNED_OUT, None),
    ]
    assert all(e.detail["client"] == "127.0.0.1" for e in entries)
    shown = [caplog.text, repr(entries), repr(guarded_client.cookies)]
    for text in shown:
        assert PASSWORDS["abe"] not in text
        assert "abe guesses wrong" not in text


async def test_passwords_are_argon2_hashes_and_session_ids_are_kept_only_hashed(
    guarded_client: httpx.AsyncClient, users: auth.Users, database: str
) -> None:
    await sign_in(guarded_client, "ada")
    cookie = guarded_client.cookies[web_auth.COOKIE]

    with psycopg.connect(database) as conn:
        rows = conn.execute("SELECT id_hash, username FROM web_sessions").fetchall()
    hashed = auth.hash_password(PASSWORDS["ada"])

    assert hashed.startswith("$argon2id$")
    assert hashed != auth.hash_password(PASSWORDS["ada"]), "salted"
    assert users.authenticate("ada", PASSWORDS["ada"]) == auth.User("ada", auth.Role.ADMIN)
    assert PASSWORDS["ada"] not in repr(users)
    assert [name for _, name in rows] == ["ada"]
    assert cookie not in {id_hash for id_hash, _ in rows}


async def test_after_five_wrong_passwords_even_the_right_one_must_wait(
    guarded_client: httpx.AsyncClient, database: str
) -> None:
    for attempt in range(auth.FREE_ATTEMPTS):
        wrong = await sign_in(guarded_client, "vera", password=f"guess {attempt}")
        assert wrong.status_code == 401

    throttled = await sign_in(guarded_client, "vera")
    others = await sign_in(guarded_client, "abe")

    assert throttled.status_code == 429
    assert 0 < int(throttled.headers["retry-after"]) <= auth.FIRST_DELAY
    assert "set-cookie" not in throttled.headers
    assert others.status_code == 303, "the throttle holds one name, not everyone"
    last = audit.entries(database, subject="user/vera", limit=1)[0]
    assert (last.action, last.detail["reason"]) == (auth.SIGN_IN_FAILED, auth.THROTTLED)


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/", "/\\evil.example", "javascript:x"]
)
async def test_signing_in_only_ever_redirects_within_the_site(
    guarded_client: httpx.AsyncClient, target: str
) -> None:
    response = await guarded_client.post(
        "/login", data={"name": "vera", "password": PASSWORDS["vera"], "next": target}
    )

    assert response.status_code == 303
    assert response.headers["location"] == "/"


async def test_an_open_app_lets_everyone_act_as_admin_but_refuses_cross_site_posts(
    client: httpx.AsyncClient, approve_routes: None
) -> None:
    from_a_script = await client.post("/api/v1/test/approve", json={})
    from_our_page = await client.post(
        "/test/approve", data={}, headers={"Sec-Fetch-Site": "same-origin"}
    )
    from_elsewhere = await client.post(
        "/test/approve", data={}, headers={"Sec-Fetch-Site": "cross-site"}
    )

    assert from_a_script.json() == {"approvedBy": auth.OPEN_ACCESS.name}
    assert from_our_page.status_code == 200
    assert from_elsewhere.status_code == 403
    assert from_elsewhere.json() == {"detail": web_auth.CROSS_SITE_REFUSED}


async def test_a_login_form_posted_from_another_site_is_refused(
    guarded_client: httpx.AsyncClient,
) -> None:
    response = await guarded_client.post(
        "/login",
        data={"name": "vera", "password": PASSWORDS["vera"]},
        headers={"Sec-Fetch-Site": "cross-site"},
    )

    assert response.status_code == 403
    assert "set-cookie" not in response.headers


def test_an_app_with_users_but_no_session_store_is_refused(
    store: PostgresStore,
    runs: History,
    trigger: RecordingTrigger,
    secrets: EnvironmentSecrets,
    users: auth.Users,
) -> None:
    with pytest.raises(errors.ConfigurationError, match="session store"):
        api.create_app(store=store, runs=runs, trigger=trigger, secrets=secrets, users=users)


def test_a_users_file_gives_each_name_its_role_and_each_token_its_holder(
    tmp_path: pathlib.Path,
) -> None:
    token = auth.new_token()
    path = tmp_path / "users.yaml"
    path.write_text(
        "# who may use Nebula\n"
        "users:\n"
        f"  - name: ada\n    password_hash: '{auth.hash_password('pw of ada')}'\n    role: admin\n"
        f"  - name: vera\n    password_hash: '{auth.hash_password('pw of vera')}'\n"
        "    role: viewer\n"
        "tokens:\n"
        f"  - name: ci\n    token_hash: {auth.hash_token(token)}\n    role: approver\n"
    )

    users = auth.load_users(path)

    assert users.authenticate("vera", "pw of vera") == auth.User("vera", auth.Role.VIEWER)
    assert users.authenticate("vera", "pw of ada") is None
    assert users.bearer(token) == auth.User("ci", auth.Role.APPROVER)
    assert users.bearer(token + "x") is None
    assert users.get("ada") == auth.User("ada", auth.Role.ADMIN)
    assert auth.Role.VIEWER < auth.Role.APPROVER < auth.Role.ADMIN


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "users:\n  - name: ada\n    password_hash: {hash}\n    role: superuser\n",
            r"users\.yaml:4:5: users\[0\]\.role: Input should be 'viewer', 'approver' or 'admin'",
        ),
        (
            "users:\n  - name: ada\n    password_hash: hunter2\n    role: admin\n",
            r"users\.yaml:3:5: users\[0\]\.password_hash: is not an argon2 hash",
        ),
        (
            "tokens:\n  - name: ci\n    token_hash: abc\n    role: viewer\n",
            r"users\.yaml:3:5: tokens\[0\]\.token_hash: is not sha256:<64 hex digits>",
        ),
        (
            "users:\n  - name: ada\n    password_hash: {hash}\n    role: admin\n"
            "tokens:\n  - name: ada\n    token_hash: sha256:{zeros}\n    role: viewer\n",
            r"users\.yaml:6:5: tokens\[0\]\.name: 'ada' is listed twice",
        ),
        ("users: [\n", r"users\.yaml:2:1: "),
        ("users: []\n", r"users\.yaml: lists no user and no token"),
    ],
    ids=["unknown-role", "password-in-clear", "bad-token-hash", "name-twice", "bad-yaml", "empty"],
)
def test_a_bad_users_file_is_refused_naming_the_file_and_line(
    tmp_path: pathlib.Path, text: str, expected: str
) -> None:
    path = tmp_path / "users.yaml"
    path.write_text(text.format(hash=f"'{auth.hash_password('pw')}'", zeros="0" * 64))

    with pytest.raises(errors.ConfigurationError, match=expected):
        auth.load_users(path)
