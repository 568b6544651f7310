"""The changes pages: the queue, one change with its coloured diff, and the approvers' forms.

A guarded app (Ada admin, Abe approver, Vera viewer) over a real ChangeService: changes are
commits on branches of a real bare repository, recorded in a real PostgreSQL; approving merges
into that repository's ``main``. The fixtures here are shared with the API and live-event tests.
"""

from __future__ import annotations

import collections.abc
import html
import pathlib
import re
import subprocess

import fastapi
import httpx
import pytest

import api
from api import auth as web_auth
from api.routes import events
from nebula import auth
from nebula.changes import ChangeService, Person, intents
from nebula.resources import ResourceKey
from nebula.resources.git_source import GitSource
from nebula.secrets import EnvironmentSecrets
from nebula.sources import Mirror
from nebula.store import PostgresStore
from nebula.sync import History
from tests.api.conftest import PASSWORDS, RecordingTrigger
from tests.conftest import GitRemote

ADA = Person("Ada Admin", "ada@homelab.example")
ADD_TO_VM = intents.AddModelToNode(model="llama3-1-8b", node="windows-vm")
SOURCE = ResourceKey("GitSource", "default", "homelab")
CSRF_INPUT = re.compile(r'<input type="hidden" name="csrf_token" value="([^"]+)">')


@pytest.fixture
def change_service(
    database: str,
    store: PostgresStore,
    homelab_remote: GitRemote,
    trigger: RecordingTrigger,
    tmp_path: pathlib.Path,
) -> ChangeService:
    """The change requests of GitSource default/homelab (the bare repository's ``manifests/``).

    A merge asks ``trigger`` for a sync of the source, as ``nebula up`` asks its runtime.
    """
    source = GitSource.model_validate(
        {
            "apiVersion": "nebula.dev/v1alpha1",
            "kind": "GitSource",
            "metadata": {"name": SOURCE.name, "namespace": SOURCE.namespace},
            "spec": {"url": homelab_remote.url, "path": "manifests"},
        }
    )
    return ChangeService(
        conninfo=database,
        source=source,
        mirror=Mirror(tmp_path / "changes.git"),
        merged=lambda merged: trigger.request(merged.key),
    )


@pytest.fixture
def feed(database: str, store: PostgresStore) -> collections.abc.Iterator[events.Feed]:
    """The live-event feed of the test database, closed after the test."""
    opened = events.Feed(database)
    yield opened
    opened.close()


@pytest.fixture
def changes_app(
    store: PostgresStore,
    runs: History,
    trigger: RecordingTrigger,
    secrets: EnvironmentSecrets,
    users: auth.Users,
    sessions: auth.Sessions,
    change_service: ChangeService,
    feed: events.Feed,
) -> fastapi.FastAPI:
    """The guarded app with change requests and live events."""
    return api.create_app(
        store=store,
        runs=runs,
        trigger=trigger,
        secrets=secrets,
        users=users,
        sessions=sessions,
        changes=change_service,
        events=feed,
    )


@pytest.fixture
async def changes_client(
    changes_app: fastapi.FastAPI,
) -> collections.abc.AsyncIterator[httpx.AsyncClient]:
    """A client of ``changes_app``, signed in as nobody yet; it keeps its cookies."""
    transport = httpx.ASGITransport(app=changes_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://nebula.test") as client:
        yield client


async def sign_in(client: httpx.AsyncClient, name: str) -> None:
    """Signs in through the login form, as a browser does."""
    response = await client.post("/login", data={"name": name, "password": PASSWORDS[name]})
    assert response.status_code == 303, response.text


def csrf_in(page: str) -> str:
    """The CSRF token of the first form of a page."""
    found = CSRF_INPUT.search(page)
    assert found, page
    return found.group(1)


def git(remote: GitRemote, *args: str) -> str:
    """A git command on the bare repository ("the remote")."""
    done = subprocess.run(
        ["git", "--git-dir", str(remote.bare), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def section(page: str, element: str) -> str:
    """The HTML of the element with that id up to the next section, unescaped."""
    start = page.index(f'id="{element}"')
    end = page.find("<section", start)
    return html.unescape(page[start : end if end != -1 else len(page)])


async def test_the_queue_lists_waiting_changes_first_with_who_from_where_and_the_diff_size(
    changes_client: httpx.AsyncClient, change_service: ChangeService
) -> None:
    rejected = change_service.open(
        intents.ScaleService(service="dashboard", replicas=2), requester=ADA, origin="discord"
    )
    change_service.reject(rejected.id, actor=ADA, reason="not tonight")
    waiting = change_service.open(ADD_TO_VM, requester=ADA, origin="cli")
    await sign_in(changes_client, "vera")

    page = await changes_client.get("/changes")

    assert page.status_code == 200
    queue, decided = section(page.text, "queue"), section(page.text, "decided")
    assert f"#{waiting.id}" in queue and f"#{rejected.id}" not in queue
    assert "Add model llama3-1-8b to node windows-vm" in queue
    assert "Ada Admin <ada@homelab.example>" in queue
    assert '<span class="origin">cli</span>' in queue
    assert '<span class="badge state open">open</span>' in queue
    assert "manifests/models.yaml: +1 -1" in queue
    assert "just now" in queue
    assert f"#{rejected.id}" in decided and "Scale dashboard to 2 replicas" in decided
    assert '<span class="badge state quiet">rejected</span>' in decided
    assert "<title>(1) Changes" in page.text
    # The header names who is signed in and offers to sign out.
    assert '<span class="who"' in page.text and "vera" in page.text
    assert 'action="/logout"' in page.text


async def test_a_change_page_shows_its_diff_coloured_by_line_and_escaped(
    changes_client: httpx.AsyncClient, change_service: ChangeService
) -> None:
    change = change_service.open(ADD_TO_VM, requester=ADA, origin="cli")
    # A value from a chat message lands in the diff: it must show as text, never as markup.
    hostile = change_service.open(
        intents.RunPipeline(
            pipeline="daily-content",
            parameters={"topic": "<script>alert(1)</script>"},
            requested_at="2026-05-15T12:00:00Z",
        ),
        requester=ADA,
        origin="discord",
    )
    await sign_in(changes_client, "vera")

    page = await changes_client.get(f"/changes/{change.id}")
    other = await changes_client.get(f"/changes/{hostile.id}")

    assert page.status_code == 200
    diff = page.text[page.text.index('<pre class="diff"') : page.text.index("</pre>")]
    assert '<span class="line file">--- a/manifests/models.yaml</span>' in diff
    assert '<span class="line hunk">@@ ' in diff
    assert '<span class="line remove">-    nodes: [home-ubuntu]</span>' in diff
    assert '<span class="line add">+    nodes: [home-ubuntu, windows-vm]</span>' in diff
    assert '<span class="line context">   placement:</span>' in diff
    facts = section(page.text, "change")
    assert 'Ada Admin <ada@homelab.example>, from <span class="origin">cli</span>' in facts
    assert f"<code>changes/{change.id}</code> into <code>main</code> of default.homelab" in facts
    assert change.base_revision[:7] in facts and change.head_revision[:7] in facts
    trail = section(page.text, "trail")
    assert "change.opened" in trail
    assert "<script>alert(1)</script>" not in other.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in other.text


async def test_a_viewer_sees_no_decision_forms_and_gets_403_and_nothing_merges(
    changes_client: httpx.AsyncClient, change_service: ChangeService, homelab_remote: GitRemote
) -> None:
    change = change_service.open(ADD_TO_VM, requester=ADA, origin="cli")
    main_before = git(homelab_remote, "rev-parse", "main")
    await sign_in(changes_client, "vera")
    page = await changes_client.get(f"/changes/{change.id}")

    refused = await changes_client.post(
        f"/changes/{change.id}/approve", data={web_auth.CSRF_FIELD: csrf_in(page.text)}
    )

    assert 'id="decide"' not in page.text and "An approver decides" in page.text
    assert refused.status_code == 403
    assert refused.json()["detail"] == "this needs the approver role; vera is viewer"
    assert git(homelab_remote, "rev-parse", "main") == main_before
    assert change_service.store.get(change.id).state == "open"


async def test_an_approve_form_without_its_csrf_token_is_refused_and_nothing_merges(
    changes_client: httpx.AsyncClient, change_service: ChangeService, homelab_remote: GitRemote
) -> None:
    change = change_service.open(ADD_TO_VM, requester=ADA, origin="cli")
    main_before = git(homelab_remote, "rev-parse", "main")
    await sign_in(changes_client, "abe")

    missing = await changes_client.post(f"/changes/{change.id}/approve", data={})
    forged = await changes_client.post(
        f"/changes/{change.id}/approve", data={web_auth.CSRF_FIELD: "not-the-token"}
    )

    for refused in (missing, forged):
        assert refused.status_code == 403
        assert refused.json() == {"detail": web_auth.CSRF_REFUSED}
    assert git(homelab_remote, "rev-parse", "main") == main_before
    assert change_service.store.get(change.id).state == "open"


async def test_an_approver_approves_from_the_page_and_main_holds_the_change(
    changes_client: httpx.AsyncClient,
    change_service: ChangeService,
    homelab_remote: GitRemote,
    trigger: RecordingTrigger,
) -> None:
    change = change_service.open(ADD_TO_VM, requester=ADA, origin="cli")
    await sign_in(changes_client, "abe")
    page = await changes_client.get(f"/changes/{change.id}")
    forms = section(page.text, "decide")

    approved = await changes_client.post(
        f"/changes/{change.id}/approve", data={web_auth.CSRF_FIELD: csrf_in(forms)}
    )

    assert f'action="/changes/{change.id}/approve"' in forms
    assert f'action="/changes/{change.id}/reject"' in forms
    assert approved.status_code == 303
    assert approved.headers["location"] == f"/changes/{change.id}"
    assert "windows-vm" in git(homelab_remote, "show", "main:manifests/models.yaml")
    merged = change_service.store.get(change.id)
    assert merged.state == "merged"
    assert merged.decided_by == "abe <abe@nebula.invalid>"
    assert merged.merge_revision == git(homelab_remote, "rev-parse", "main")
    assert trigger.requested == [SOURCE], "the merge asks for a sync at once"
    after = await changes_client.get(approved.headers["location"])
    assert 'data-state="merged"' in after.text
    assert 'id="decide"' not in after.text, "nothing is left to decide"
    trail = section(after.text, "trail")
    assert trail.index("change.opened") < trail.index("change.approved")
    assert trail.index("change.approved") < trail.index("change.merged")
    assert "abe <abe@nebula.invalid>" in trail


async def test_rejecting_with_a_reason_shows_it_and_merges_nothing(
    changes_client: httpx.AsyncClient, change_service: ChangeService, homelab_remote: GitRemote
) -> None:
    change = change_service.open(ADD_TO_VM, requester=ADA, origin="cli")
    main_before = git(homelab_remote, "rev-parse", "main")
    await sign_in(changes_client, "abe")
    page = await changes_client.get(f"/changes/{change.id}")

    rejected = await changes_client.post(
        f"/changes/{change.id}/reject",
        data={web_auth.CSRF_FIELD: csrf_in(page.text), "reason": "  the VM has no GPU yet "},
    )
    again = await changes_client.post(
        f"/changes/{change.id}/approve", data={web_auth.CSRF_FIELD: csrf_in(page.text)}
    )

    assert rejected.status_code == 303
    after = await changes_client.get(f"/changes/{change.id}")
    facts = section(after.text, "change")
    assert 'data-state="rejected"' in facts
    assert "Rejected by</dt><dd>abe <abe@nebula.invalid>" in facts
    assert "the VM has no GPU yet" in facts
    assert git(homelab_remote, "rev-parse", "main") == main_before
    # Approving a rejected change: the page again, with why not, and 409.
    assert again.status_code == 409
    assert f"change #{change.id} is rejected, not open" in again.text
    assert 'role="alert"' in again.text


async def test_a_conflict_names_its_files_and_a_rebase_from_the_page_opens_it_again(
    changes_client: httpx.AsyncClient, change_service: ChangeService, homelab_remote: GitRemote
) -> None:
    change = change_service.open(ADD_TO_VM, requester=ADA, origin="cli")
    # Main changes the same line meanwhile.
    models = homelab_remote.read("manifests/models.yaml")
    homelab_remote.write(
        "manifests/models.yaml",
        models.replace("nodes: [home-ubuntu]", "nodes: [home-ubuntu]  # ok", 1),
    )
    main_before = homelab_remote.commit("Note on the placement")
    await sign_in(changes_client, "abe")
    token = csrf_in((await changes_client.get(f"/changes/{change.id}")).text)

    await changes_client.post(f"/changes/{change.id}/approve", data={web_auth.CSRF_FIELD: token})
    conflicted = await changes_client.get(f"/changes/{change.id}")

    assert git(homelab_remote, "rev-parse", "main") == main_before, "nothing merged"
    assert 'data-state="conflict"' in conflicted.text
    assert "<li><code>manifests/models.yaml</code></li>" in section(conflicted.text, "change")
    forms = section(conflicted.text, "decide")
    assert f'action="/changes/{change.id}/rebase"' in forms
    assert f'action="/changes/{change.id}/approve"' not in forms

    rebased = await changes_client.post(
        f"/changes/{change.id}/rebase", data={web_auth.CSRF_FIELD: csrf_in(forms)}
    )

    assert rebased.status_code == 303
    now = change_service.store.get(change.id)
    assert (now.state, now.base_revision, now.conflict_files) == ("open", main_before, [])
    assert "+    nodes: [home-ubuntu, windows-vm] # ok" in now.diff


async def test_a_change_that_is_not_there_is_404_on_its_page_and_its_forms(
    changes_client: httpx.AsyncClient,
) -> None:
    await sign_in(changes_client, "abe")
    token = csrf_in((await changes_client.get("/login")).text)

    page = await changes_client.get("/changes/999")
    approve = await changes_client.post("/changes/999/approve", data={web_auth.CSRF_FIELD: token})

    for response in (page, approve):
        assert response.status_code == 404
        assert "there is no change #999" in response.text


async def test_a_server_without_change_requests_says_so_on_the_page_and_in_the_api(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/changes")
    listed = await client.get("/api/v1/changes")
    live = await client.get("/events")

    assert page.status_code == 200
    assert "Change requests are off" in page.text and "--changes-source" in page.text
    assert listed.status_code == 404
    assert "--changes-source" in listed.json()["detail"]
    assert live.status_code == 204, "no feed: the browser stops asking"


def edit_main(remote: GitRemote, path: str, old: str, new: str) -> str:
    """A commit on main replacing ``old`` with ``new`` in ``path``; its revision."""
    text = remote.read(path)
    assert old in text, f"{old!r} is not in {path}"
    remote.write(path, text.replace(old, new, 1))
    return remote.commit(f"{old} -> {new} on main")


async def test_a_change_page_says_it_no_longer_applies_as_soon_as_main_changes_its_lines(
    changes_client: httpx.AsyncClient, change_service: ChangeService, homelab_remote: GitRemote
) -> None:
    # Bug (issue 11): a conflict with main showed only once Approve was clicked. The change's
    # page and the queue now say it no longer applies as soon as main changes the same lines,
    # offer Rebase instead of Approve, and reading them moves nothing.
    change = change_service.open(ADD_TO_VM, requester=ADA, origin="cli")
    await sign_in(changes_client, "abe")
    fresh = await changes_client.get(f"/changes/{change.id}")
    assert "no longer applies" not in fresh.text
    assert f'action="/changes/{change.id}/approve"' in section(fresh.text, "decide")

    head = edit_main(
        homelab_remote, "manifests/models.yaml", "nodes: [home-ubuntu]", "nodes: [home-ubuntu] #"
    )
    page = await changes_client.get(f"/changes/{change.id}")
    queue = await changes_client.get("/changes")

    card = section(page.text, "change")
    assert 'data-state="open"' in card and 'data-applies="false"' in card
    assert "No longer applies:" in card and f'it is now at <code title="{head}">' in card
    assert "<li><code>manifests/models.yaml</code></li>" in card
    forms = section(page.text, "decide")
    assert f'action="/changes/{change.id}/approve"' not in forms
    assert f'action="/changes/{change.id}/rebase"' in forms
    row = section(queue.text, "queue")
    assert re.search(rf'<tr id="change-{change.id}" class="trouble"', row)
    assert "no longer applies" in row
    assert change_service.store.get(change.id).state == "open"
    assert git(homelab_remote, "rev-parse", "main") == head


async def test_rebasing_an_approved_change_from_the_page_clears_its_approval(
    changes_client: httpx.AsyncClient, change_service: ChangeService, homelab_remote: GitRemote
) -> None:
    # Bug (issue 11): rebased after a conflict, a change kept "Approved by" its first approver.
    change = change_service.open(ADD_TO_VM, requester=ADA, origin="cli")
    edit_main(
        homelab_remote, "manifests/models.yaml", "nodes: [home-ubuntu]", "nodes: [home-ubuntu] #"
    )
    await sign_in(changes_client, "abe")
    token = csrf_in((await changes_client.get(f"/changes/{change.id}")).text)
    await changes_client.post(f"/changes/{change.id}/approve", data={web_auth.CSRF_FIELD: token})
    conflicted = await changes_client.get(f"/changes/{change.id}")
    assert "Approved by" in section(conflicted.text, "change")

    rebased = await changes_client.post(
        f"/changes/{change.id}/rebase", data={web_auth.CSRF_FIELD: csrf_in(conflicted.text)}
    )
    page = await changes_client.get(rebased.headers["location"])

    card = section(page.text, "change")
    assert 'data-state="open"' in card
    assert "Approved by" not in card
    assert f'action="/changes/{change.id}/approve"' in section(page.text, "decide")
    assert "approval cleared: abe <abe@nebula.invalid>" in section(page.text, "trail")
    assert change_service.store.get(change.id).decided_by is None


async def test_a_rebase_that_undoes_a_newer_edit_on_main_shows_it_in_the_diff(
    changes_client: httpx.AsyncClient, change_service: ChangeService, homelab_remote: GitRemote
) -> None:
    # Bug (issue 11): ollama 0.5.7 -> 0.5.8, rebased after main moved to 0.5.9, quietly became a
    # downgrade of main's newer edit. The page now says so and marks the line in the diff.
    change = change_service.open(
        intents.SetServiceImage(service="ollama", image="ollama/ollama:0.5.8"),
        requester=ADA, origin="discord",
    )  # fmt: skip
    edit_main(
        homelab_remote, "manifests/services/home.yaml", "ollama/ollama:0.5.7",
        "ollama/ollama:0.5.9",
    )  # fmt: skip
    await sign_in(changes_client, "abe")
    token = csrf_in((await changes_client.get(f"/changes/{change.id}")).text)

    await changes_client.post(f"/changes/{change.id}/rebase", data={web_auth.CSRF_FIELD: token})
    page = (await changes_client.get(f"/changes/{change.id}")).text

    warning = section(page, "change")
    assert "Undoes a newer edit on main:" in warning
    assert "<li><code>image: ollama/ollama:0.5.9</code></li>" in warning
    assert "no longer applies" not in warning  # made again on main, it merges
    diff = section(page, "diff")
    assert '<span class="line remove undoes"' in diff
    assert re.search(r'class="line remove undoes"[^>]*>-  image: ollama/ollama:0.5.9<', diff)
    assert re.search(r'class="line add">\+  image: ollama/ollama:0.5.8<', diff)
    queue = section((await changes_client.get("/changes")).text, "queue")
    assert "undoes a newer edit" in queue
