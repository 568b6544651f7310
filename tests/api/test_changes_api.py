"""The change requests' JSON API: open an intent as the caller, list, decide, and the schema.

The same guarded app and real ChangeService as the pages (fixtures of ``test_changes_pages``):
scripts use the API tokens of ``conftest.TOKENS`` (``ci`` approver, ``dashboard`` viewer) and
need no CSRF token; a signed-in browser sends its token in ``X-CSRF-Token``.
"""

from __future__ import annotations

import httpx

from api import auth as web_auth
from nebula.changes import ChangeService, intents
from tests.api.conftest import TOKENS
from tests.api.test_changes_pages import (
    ADA,
    ADD_TO_VM,
    change_service,
    changes_app,
    changes_client,
    csrf_in,
    feed,
    git,
    sign_in,
)
from tests.conftest import GitRemote

# Fixtures shared with the pages' tests (pytest finds them by name in this module).
__all__ = ["change_service", "changes_app", "changes_client", "feed"]


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name][0]}"}


async def test_posting_an_intent_opens_a_change_as_the_signed_in_user_from_the_web(
    changes_client: httpx.AsyncClient, homelab_remote: GitRemote
) -> None:
    await sign_in(changes_client, "abe")
    token = csrf_in((await changes_client.get("/changes")).text)

    response = await changes_client.post(
        "/api/v1/changes",
        json={"intent": "scale-service", "service": "dashboard", "replicas": 2},
        headers={web_auth.CSRF_HEADER: token},
    )

    assert response.status_code == 201, response.text
    change = response.json()
    assert change["title"] == "Scale dashboard to 2 replicas"
    assert (change["requester"], change["origin"], change["state"]) == (
        "abe <abe@nebula.invalid>",
        "web",
        "open",
    )
    assert change["intent"]["replicas"] == 2
    assert change["branch"] == f"changes/{change['id']}"
    assert change["summary"] == "manifests/services/cloud.yaml: +1 -1"
    assert "+  replicas: 2" in change["diff"]
    assert git(homelab_remote, "rev-parse", change["branch"]) == change["headRevision"]
    assert "idempotencyKey" not in change


async def test_a_token_opens_changes_without_csrf_as_its_holder_and_a_repeat_is_the_same(
    changes_client: httpx.AsyncClient,
) -> None:
    body = {"intent": "add-model-to-node", "model": "llama3-1-8b", "node": "windows-vm"}

    first = await changes_client.post("/api/v1/changes", json=body, headers=bearer("ci"))
    again = await changes_client.post("/api/v1/changes", json=body, headers=bearer("ci"))
    by_viewer = await changes_client.post("/api/v1/changes", json=body, headers=bearer("dashboard"))

    assert first.status_code == again.status_code == 201
    assert first.json()["requester"] == "ci <ci@nebula.invalid>"
    assert again.json()["id"] == first.json()["id"]
    assert by_viewer.status_code == 403, "a viewer reads; proposing is an approver's"


async def test_a_body_that_is_no_intent_is_422_and_one_the_homelab_cannot_take_is_409(
    changes_client: httpx.AsyncClient, homelab_remote: GitRemote
) -> None:
    branches = git(homelab_remote, "branch", "--list")

    async def post(body: object) -> httpx.Response:
        return await changes_client.post("/api/v1/changes", json=body, headers=bearer("ci"))

    unknown = await post({"intent": "format-the-disks"})
    malformed = await post({"intent": "scale-service", "service": "dashboard", "replicas": -1})
    already = await post({"intent": "scale-service", "service": "dashboard", "replicas": 1})
    undeclared = await post({"intent": "scale-service", "service": "nothing-here", "replicas": 2})
    invalid = await post({"intent": "add-model-to-node", "model": "llama3-1-8b", "node": "gpu-9"})

    assert unknown.status_code == malformed.status_code == 422
    assert malformed.json()["detail"][0]["loc"][-1] == "replicas"
    assert already.status_code == 409
    assert already.json() == {"detail": "dashboard already runs 1", "errors": []}
    assert undeclared.status_code == 409
    assert "NebulaService/default/nothing-here is not declared" in undeclared.json()["detail"]
    assert invalid.status_code == 409
    problem = invalid.json()
    assert problem["detail"].startswith("Add model llama3-1-8b to node gpu-9 would not be valid")
    [error] = problem["errors"]
    assert error["file"] == "manifests/models.yaml"
    assert error["field"] == "spec.placement.nodes[1]"
    assert "gpu-9" in error["message"]
    assert git(homelab_remote, "branch", "--list") == branches, "nothing was pushed"


async def test_the_list_filters_by_state_and_one_change_comes_with_its_diff(
    changes_client: httpx.AsyncClient, change_service: ChangeService
) -> None:
    kept = change_service.open(ADD_TO_VM, requester=ADA, origin="cli")
    dropped = change_service.open(
        intents.ScaleService(service="dashboard", replicas=3), requester=ADA, origin="pipeline"
    )
    change_service.reject(dropped.id, actor=ADA, reason="too many")

    everything = await changes_client.get("/api/v1/changes", headers=bearer("dashboard"))
    waiting = await changes_client.get(
        "/api/v1/changes", params={"state": ["open", "conflict"]}, headers=bearer("dashboard")
    )
    one = await changes_client.get(f"/api/v1/changes/{kept.id}", headers=bearer("dashboard"))
    missing = await changes_client.get("/api/v1/changes/999", headers=bearer("dashboard"))
    bad_state = await changes_client.get(
        "/api/v1/changes", params={"state": "lost"}, headers=bearer("dashboard")
    )

    assert [c["id"] for c in everything.json()] == [dropped.id, kept.id], "newest first"
    assert [c["id"] for c in waiting.json()] == [kept.id]
    assert one.json()["diff"] == kept.diff
    assert one.json()["createdAt"] == kept.created_at.isoformat().replace("+00:00", "Z")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "there is no change #999", "errors": []}
    assert bad_state.status_code == 422


async def test_a_viewer_token_cannot_decide_and_an_approver_token_merges_without_csrf(
    changes_client: httpx.AsyncClient, change_service: ChangeService, homelab_remote: GitRemote
) -> None:
    change = change_service.open(ADD_TO_VM, requester=ADA, origin="cli")

    refused = await changes_client.post(
        f"/api/v1/changes/{change.id}/approve", headers=bearer("dashboard")
    )
    merged = await changes_client.post(f"/api/v1/changes/{change.id}/approve", headers=bearer("ci"))
    twice = await changes_client.post(f"/api/v1/changes/{change.id}/approve", headers=bearer("ci"))
    late = await changes_client.post(
        f"/api/v1/changes/{change.id}/reject", json={"reason": "too late"}, headers=bearer("ci")
    )

    assert refused.status_code == 403
    assert merged.status_code == 200
    assert (merged.json()["state"], merged.json()["decidedBy"]) == (
        "merged",
        "ci <ci@nebula.invalid>",
    )
    assert merged.json()["mergeRevision"] == git(homelab_remote, "rev-parse", "main")
    assert twice.json()["mergeRevision"] == merged.json()["mergeRevision"], "merged once"
    assert late.status_code == 409
    assert late.json()["detail"] == f"change #{change.id} is merged, not open"


async def test_a_cookie_session_must_send_its_csrf_header_to_the_api(
    changes_client: httpx.AsyncClient, change_service: ChangeService
) -> None:
    change = change_service.open(ADD_TO_VM, requester=ADA, origin="cli")
    await sign_in(changes_client, "abe")

    without = await changes_client.post(f"/api/v1/changes/{change.id}/reject", json={})

    assert without.status_code == 403
    assert change_service.store.get(change.id).state == "open"


async def test_rejecting_and_rebasing_over_the_api(
    changes_client: httpx.AsyncClient, change_service: ChangeService, homelab_remote: GitRemote
) -> None:
    rejected = change_service.open(ADD_TO_VM, requester=ADA, origin="cli")
    stale = change_service.open(
        intents.ScaleService(service="dashboard", replicas=2), requester=ADA, origin="cli"
    )
    # Main moves on: the second change is rebased onto it.
    nodes = homelab_remote.read("manifests/nodes.yaml")
    homelab_remote.write("manifests/nodes.yaml", nodes.replace("role: ai", "role: worker", 1))
    head = homelab_remote.commit("Unrelated change on main")

    reject = await changes_client.post(
        f"/api/v1/changes/{rejected.id}/reject", json={"reason": "no"}, headers=bearer("ci")
    )
    by_viewer = await changes_client.post(
        f"/api/v1/changes/{stale.id}/reject", headers=bearer("dashboard")
    )
    rebase = await changes_client.post(f"/api/v1/changes/{stale.id}/rebase", headers=bearer("ci"))
    rebase_rejected = await changes_client.post(
        f"/api/v1/changes/{rejected.id}/rebase", headers=bearer("ci")
    )

    assert (reject.json()["state"], reject.json()["reason"]) == ("rejected", "no")
    assert by_viewer.status_code == 403
    assert (rebase.json()["state"], rebase.json()["baseRevision"]) == ("open", head)
    assert rebase_rejected.status_code == 409
    assert rebase_rejected.json()["detail"] == f"change #{rejected.id} is rejected: no rebase"


async def test_the_intents_and_the_change_routes_are_documented_in_openapi(
    changes_client: httpx.AsyncClient,
) -> None:
    listed = await changes_client.get("/api/v1/intents", headers=bearer("dashboard"))
    schema = (await changes_client.get("/api/v1/openapi.json", headers=bearer("dashboard"))).json()

    assert list(listed.json()) == list(intents.INTENTS)
    assert listed.json()["scale-service"]["properties"]["replicas"]["maximum"] == 50
    paths = schema["paths"]
    for path in (
        "/api/v1/changes",
        "/api/v1/changes/{change}",
        "/api/v1/changes/{change}/approve",
        "/api/v1/changes/{change}/reject",
        "/api/v1/changes/{change}/rebase",
        "/api/v1/intents",
        "/events",
    ):
        assert path in paths, path
    opening = paths["/api/v1/changes"]["post"]
    assert set(opening["responses"]) >= {"201", "409", "422"}
    body = opening["requestBody"]["content"]["application/json"]["schema"]
    assert body["discriminator"]["propertyName"] == "intent"
    assert len(body["oneOf"]) == len(intents.INTENTS)
    view = schema["components"]["schemas"]["ChangeView"]
    assert view["properties"]["state"]["enum"] == [
        "open",
        "approved",
        "merged",
        "applied",
        "rejected",
        "conflict",
    ]
    assert view["properties"]["mergeRevision"]["description"].startswith("The target branch")
    assert "Problem" in schema["components"]["schemas"]
    # The pages and their forms stay out of the API's document.
    assert "/changes" not in paths and "/changes/{change}/approve" not in paths


async def test_a_change_says_over_the_api_whether_it_still_merges_into_main_now(
    changes_client: httpx.AsyncClient, change_service: ChangeService, homelab_remote: GitRemote
) -> None:
    # Bug (issue 11): nothing said a change no longer applied until it was approved.
    change = change_service.open(ADD_TO_VM, requester=ADA, origin="cli")
    before = (await changes_client.get(f"/api/v1/changes/{change.id}", headers=bearer("ci"))).json()
    models = homelab_remote.read("manifests/models.yaml")
    homelab_remote.write(
        "manifests/models.yaml", models.replace("nodes: [home-ubuntu]", "nodes: [home-ubuntu] #")
    )
    head = homelab_remote.commit("Main changes the same line")

    one = (await changes_client.get(f"/api/v1/changes/{change.id}", headers=bearer("ci"))).json()
    [listed] = (await changes_client.get("/api/v1/changes", headers=bearer("ci"))).json()

    assert (before["applies"], before["conflictFiles"]) == (True, [])
    assert (one["state"], one["applies"], one["checkedAgainst"]) == ("open", False, head)
    assert one["conflictFiles"] == ["manifests/models.yaml"]
    assert (listed["applies"], listed["conflictFiles"]) == (False, ["manifests/models.yaml"])
    rebased = await changes_client.post(f"/api/v1/changes/{change.id}/rebase", headers=bearer("ci"))
    assert (rebased.json()["state"], rebased.json()["overrides"]) == ("open", [])
    again = (await changes_client.get(f"/api/v1/changes/{change.id}", headers=bearer("ci"))).json()
    assert (again["applies"], again["baseRevision"]) == (True, head)
