"""GET /api/v1/resources: summaries of every kind, and each kind's objects as its model."""

from __future__ import annotations

import re
from typing import Any

import httpx

from nebula.resources import KINDS

STALLED = "models/qwen.yaml:7:5: spec.placement.nodes[0]: no NebulaNode named 'gpu-box'"


async def test_the_list_summarises_every_object_in_sync_order(
    client: httpx.AsyncClient, homelab: Any
) -> None:
    homelab.put(homelab.git_source("homelab", "https://github.com/nebula-lab/homelab"))
    homelab.put(homelab.model("qwen"), homelab.status("False", "Invalid", STALLED, stalled=True))
    homelab.put(homelab.node("home-ubuntu"), homelab.status("True", "Healthy", "RTX 3060"))

    response = await client.get("/api/v1/resources")

    assert response.status_code == 200
    items = response.json()
    assert [(i["kind"], i["namespace"], i["name"]) for i in items] == [
        ("NebulaNode", None, "home-ubuntu"),
        ("NebulaModel", "ai", "qwen"),
        ("GitSource", "flux", "homelab"),
    ]
    node, model, source = items
    assert (node["ready"], node["reason"], node["message"], node["stalled"]) == (
        "True", "Healthy", "RTX 3060", False,
    )  # fmt: skip
    assert (model["ready"], model["stalled"], model["message"]) == ("False", True, STALLED)
    assert [c["type"] for c in model["conditions"]] == ["Ready", "Stalled"]
    assert model["observedGeneration"] == 1
    assert model["generation"] == 1
    assert (source["ready"], source["reason"], source["conditions"]) == ("Unknown", None, [])


async def test_a_kind_lists_its_objects_whole_with_spec_status_and_generation(
    client: httpx.AsyncClient, homelab: Any
) -> None:
    homelab.put(homelab.node("home-ubuntu"), homelab.status("True", "Healthy", "RTX 3060"))

    response = await client.get("/api/v1/resources/NebulaNode")

    assert response.status_code == 200
    [node] = response.json()
    assert node["apiVersion"] == "nebula.dev/v1alpha1"
    assert node["kind"] == "NebulaNode"
    assert node["metadata"]["name"] == "home-ubuntu"
    assert node["metadata"]["generation"] == 1
    assert node["spec"]["runtime"] == "k3s"
    assert node["spec"]["agent"]["heartbeatInterval"] == "15s"  # defaults filled in, camelCase
    assert node["status"]["conditions"][0]["lastTransitionTime"] == "2026-05-15T12:00:00Z"
    assert "namespace" not in node["metadata"]  # unset fields are left out, as kubectl does


async def test_a_kind_with_no_objects_is_an_empty_list(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/resources/Pipeline")

    assert (response.status_code, response.json()) == (200, [])


async def test_an_unknown_kind_is_not_found(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/resources/Deployment")

    assert response.status_code == 404


async def test_every_kind_is_documented_with_its_own_model(client: httpx.AsyncClient) -> None:
    document = (await client.get("/api/v1/openapi.json")).json()

    for kind in KINDS:
        operation = document["paths"][f"/api/v1/resources/{kind}"]["get"]
        schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema["items"]["$ref"].endswith(f"/{kind}"), kind
        assert kind in document["components"]["schemas"]
    summary = document["paths"]["/api/v1/resources"]["get"]["responses"]["200"]
    assert summary["content"]["application/json"]["schema"]["items"]["$ref"].endswith(
        "/ResourceSummary"
    )
    fields = document["components"]["schemas"]["ResourceSummary"]["properties"]
    assert "observedGeneration" in fields
    assert fields["stalled"]["description"]


async def test_the_interactive_documentation_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/docs")

    assert response.status_code == 200
    assert "/api/v1/openapi.json" in response.text


async def test_the_documentation_loads_only_from_this_server_so_it_works_offline(
    client: httpx.AsyncClient,
) -> None:
    # Bug (issue 11): /api/docs loaded Swagger UI from a CDN, a blank page without internet.
    # Every script, stylesheet and icon it names is now this server's, and each answers.
    page = (await client.get("/api/docs")).text

    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", page)
    urls += re.findall(r"""url:\s*["']([^"']+)["']""", page)
    assert urls, page
    assert all(url.startswith("/") and not url.startswith("//") for url in urls), urls
    assert "http://" not in page and "https://" not in page
    kinds = {}
    for url in urls:
        answer = await client.get(url)
        assert answer.status_code == 200, url
        kinds[url.rsplit(".", 1)[-1]] = answer.headers["content-type"]
    assert kinds["js"].startswith(("text/javascript", "application/javascript"))
    assert kinds["css"].startswith("text/css")
    assert kinds["json"].startswith("application/json")
