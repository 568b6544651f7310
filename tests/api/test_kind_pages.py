"""GET /kinds/<Kind> and the object pages: a kind's table, then one object in full, one read."""

from __future__ import annotations

import dataclasses
import html
import re
from collections.abc import Mapping
from typing import Any

import fastapi
import httpx

import api
from api.routes import kinds
from controllers import nebula_node
from nebula.heartbeats import Heartbeat
from nebula.resources import KINDS, ResourceKey
from nebula.resources.nebula_node import Hardware, NebulaNode
from nebula.store import Plan, PostgresStore, StoredObject
from nebula.store.base import AppliedState
from nebula.sync import History
from tests.api.conftest import NOW

REPORTED = {
    "gpu": "RTX 3060",
    "vram": "11.8Gi",
    "cpu": "16 cores",
    "memory": "62.7Gi",
    "address": "100.64.0.7",
    "agentVersion": "0.4.1",
    "vramTier": "8Gi+",
    # Sizes as the agent stores them: exact, in the largest unit that divides them.
    "hardware": {
        "cpu": {"model": "AMD Ryzen 7 5800X", "cores": 16, "physicalCores": 8},
        "memory": "65755500Ki",
        "os": "Ubuntu 24.04.1 LTS",
        "kernel": "6.8.0-45-generic",
        "arch": "amd64",
        "gpus": [
            {
                "vendor": "nvidia",
                "model": "NVIDIA GeForce RTX 3060",
                "vramTotal": "12045Mi",
                "vramUsed": "3174Mi",
                "driver": "550.107.02",
                "cudaVersion": "12.4",
                "utilization": 37,
                "temperature": 61,
            }
        ],
        "disks": [{"mount": "/mnt/models", "total": "264212084Ki", "free": "110796800Ki"}],
        "addresses": ["192.168.1.20", "100.64.0.7"],
        "endpoints": {"ollama": True, "comfyui": False},
    },
}
"""A NebulaNode's status fields as its controller writes them from a heartbeat."""
NO_DRIVER = (
    "nvidia-smi: NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
)
"""A problem as the agent words it when the NVIDIA driver is not loaded."""


def text_of(page: str) -> str:
    """The page's text without tags or entities, spaces squeezed: what a reader sees."""
    inline = re.sub(r"</?(?:a|code|span|time|wbr)\b[^>]*>", "", page)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", inline)))


def cells(page: str, table: str) -> list[list[str]]:
    """The rows of the first ``<table class="... table">`` as lists of cell texts."""
    found = re.search(rf'<table class="[^"]*\b{table}\b[^"]*">(.*?)</table>', page, re.S)
    assert found is not None, f"no {table} table"
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", found[1], re.S)
    return [
        [text_of(cell).strip() for cell in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S)]
        for row in rows
    ]


def pre_yaml(page: str, section: str) -> str:
    """The YAML shown in a section of an object's page, unescaped."""
    found = re.search(rf'<section id="{section}">.*?<pre class="yaml">(.*?)</pre>', page, re.S)
    assert found is not None, f"no YAML in section {section}"
    return html.unescape(found[1])


async def test_the_kind_page_lists_its_objects_with_the_kinds_printer_columns(
    client: httpx.AsyncClient, homelab: Any
) -> None:
    homelab.put(homelab.node("home-ubuntu"), homelab.status("True", "Reporting", **REPORTED))
    homelab.put(homelab.node("linode-vps"), homelab.status("False", "HeartbeatStale", "no beat"))
    homelab.put(homelab.model("llama"))

    response = await client.get("/kinds/NebulaNode")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    head, *rows = cells(response.text, "resources")
    assert head == ["Name", "Role", "GPU", "VRAM", "CPU", "RAM", "Address", "Agent",
                    "Status", "Message", "Source", "Updated"]  # fmt: skip
    assert rows[0][:8] == [
        "home-ubuntu", "ai", "RTX 3060", "11.8Gi", "16 cores", "62.7Gi", "100.64.0.7", "0.4.1"
    ]  # fmt: skip
    assert rows[0][8] == "Ready"
    assert rows[1][:4] == ["linode-vps", "ai", "—", "—"]  # no heartbeat: nothing reported
    assert rows[1][8] == "Not ready"
    assert rows[1][9] == "HeartbeatStale no beat"
    assert rows[1][10] == "by hand"
    assert len(rows) == 2  # the model is another kind's
    assert "2 nebulanodes: 1 ready, 1 need attention" in text_of(response.text)


async def test_a_stalled_object_shows_the_stalled_badge_and_what_to_fix(
    client: httpx.AsyncClient, homelab: Any
) -> None:
    bad = "models/qwen.yaml:7:5: spec.placement.nodes[0]: no NebulaNode named 'gpu-box'"
    homelab.put(homelab.model("qwen"), homelab.status("False", "Invalid", bad, stalled=True))

    response = await client.get("/kinds/NebulaModel")

    [row] = cells(response.text, "resources")[1:]
    assert row[0] == "ai/qwen"
    assert "Stalled" in row
    assert f"Invalid {bad}" in row
    assert 'class="trouble"' in response.text


async def test_the_object_page_shows_the_spec_as_yaml_and_the_conditions_as_a_table(
    client: httpx.AsyncClient, homelab: Any
) -> None:
    document = homelab.model("llama")
    document["metadata"]["labels"] = {"tier": "small"}
    document["metadata"]["annotations"] = {"nebula.dev/note": "pulled by hand once"}
    homelab.put(
        document, homelab.status("True", "Present", "on home-ubuntu", presentOn=1, nodes=[])
    )

    response = await client.get("/kinds/NebulaModel/ai/llama")

    assert response.status_code == 200
    spec = pre_yaml(response.text, "spec")
    assert "provider: ollama\n" in spec
    assert "model: llama3.1:8b\n" in spec
    assert "placement:\n  nodes:\n  - home-ubuntu\n" in spec
    status = pre_yaml(response.text, "status")
    assert "presentOn: 1\n" in status
    assert "observedGeneration: 1\n" in status
    assert "conditions" not in status  # they are in the table
    head, *conditions = cells(response.text, "conditions")
    assert head == ["Type", "Status", "Reason", "Message", "Last transition"]
    assert conditions[0][:4] == ["Ready", "True", "Present", "on home-ubuntu"]
    facts = text_of(response.text)
    assert "tier: small" in facts
    assert "nebula.dev/note: pulled by hand once" in facts
    assert "Generation 1, observed 1" in facts
    assert "Source made by hand" in facts


async def test_a_node_page_shows_the_reported_hardware_readably(
    client: httpx.AsyncClient, homelab: Any
) -> None:
    # Bug: sizes showed as stored (65755500Ki, 264212084Ki), and a card's 12045Mi on its page
    # while the kind's VRAM column said 12Gi. Every size a person reads is humanised alike.
    homelab.put(homelab.node("home-ubuntu"), homelab.status("True", "Reporting", **REPORTED))

    response = await client.get("/kinds/NebulaNode/home-ubuntu")

    assert response.status_code == 200
    hardware = text_of(response.text[response.text.index('id="hardware"') :])
    assert "CPU AMD Ryzen 7 5800X, 16 threads (8 cores)" in hardware
    assert "Memory 62.7Gi" in hardware
    assert "Ubuntu 24.04.1 LTS · 6.8.0-45-generic · amd64" in hardware
    assert "VRAM tier 8Gi+" in hardware
    assert "192.168.1.20, 100.64.0.7" in hardware
    [gpu] = cells(response.text, "gpus")[1:]
    assert gpu == ["NVIDIA GeForce RTX 3060 #0 · nvidia", "11.8Gi", "3.1Gi", "37 %", "61 °C",
                   "550.107.02, CUDA 12.4"]  # fmt: skip
    assert cells(response.text, "disks")[1:] == [["/mnt/models", "252Gi", "105.7Gi"]]
    assert "Ki<" not in response.text[: response.text.index('id="status"')]
    # The status itself keeps the exact quantities, for whatever reads it.
    assert "memory: 65755500Ki\n" in pre_yaml(response.text, "status")
    assert re.search(r'class="badge ok"[^>]*>ollama<', response.text)
    assert re.search(r'class="badge bad"[^>]*>comfyui<', response.text)


def degraded_node(homelab: Any, name: str = "home-ubuntu") -> None:
    """Stores a node declared with an NVIDIA GPU whose agent could not reach the driver, with
    the status the NebulaNode reconciler makes of that heartbeat."""
    document = homelab.node(name)
    document["spec"]["hardware"] = {"gpu": {"vendor": "nvidia", "minVram": "12Gi"}}
    beat = Heartbeat(
        node=name,
        hostname="gpu-box",
        agent_version="0.1.0",
        interval_seconds=15,
        received_at=NOW,
        hardware=Hardware.model_validate({"cpu": {"cores": 16}, "memory": "65755500Ki"}),
        problems=[NO_DRIVER],
    )
    outcome = nebula_node.reconcile(
        NebulaNode.model_validate(document), heartbeat=beat, now=NOW, previous=None
    )
    homelab.put(document, outcome.status.model_dump(mode="json", by_alias=True, exclude_none=True))


async def test_a_degraded_node_is_in_trouble_and_its_page_lists_what_the_agent_could_not_read(
    client: httpx.AsyncClient, homelab: Any
) -> None:
    # Bug: a broken NVIDIA driver, stored with the heartbeat as a problem, reached no page (the
    # node page said "No GPU found."), and a node lacking its declared GPU stayed Ready and
    # out of trouble. It is Ready (its agent reports) and Degraded, and its page says why.
    degraded_node(homelab)

    detail = (await client.get("/kinds/NebulaNode/home-ubuntu")).text
    table = (await client.get("/kinds/NebulaNode")).text

    head = text_of(detail[: detail.index('id="hardware"')])
    assert "Ready Degraded" in head
    why = f"declared 1 nvidia GPU, found no GPU; the agent could not read {NO_DRIVER}"
    assert f"HardwareDiffers: {why}" in head
    problems = re.search(r'<div id="problems"[^>]*>(.*?)</div>', detail, re.S)
    assert problems is not None
    assert text_of(problems[1]).strip() == f"What the agent could not read {NO_DRIVER}"
    assert "No GPU found: a GPU probe failed, see above what the agent could not read." in (
        text_of(detail)
    )
    [row] = cells(table, "resources")[1:]
    assert row[8] == "Ready Degraded"
    assert f"HardwareDiffers: {why}" in row[9]
    assert '<tr class="trouble">' in table
    assert "1 nebulanode: 1 need attention" in text_of(table)


async def test_cluster_scoped_objects_live_at_kind_and_name_namespaced_ones_under_a_namespace(
    client: httpx.AsyncClient, homelab: Any
) -> None:
    homelab.put(homelab.node("home-ubuntu"))
    homelab.put(homelab.model("llama", namespace="ai"))
    homelab.put(homelab.model("llama", namespace="lab"))

    node = await client.get("/kinds/NebulaNode/home-ubuntu")
    in_ai = await client.get("/kinds/NebulaModel/ai/llama")
    in_lab = await client.get("/kinds/NebulaModel/lab/llama")

    assert (node.status_code, in_ai.status_code, in_lab.status_code) == (200, 200, 200)
    assert "NebulaNode home-ubuntu" in text_of(node.text)
    assert "NebulaModel ai/llama" in text_of(in_ai.text)
    assert "NebulaModel lab/llama" in text_of(in_lab.text)


async def test_an_unknown_kind_is_a_404_page_that_lists_the_kinds_there_are(
    client: httpx.AsyncClient,
) -> None:
    for url in ("/kinds/NoSuchKind", "/kinds/nebulanode", "/kinds/NoSuchKind/x", "/kinds/A/b/c"):
        response = await client.get(url)

        assert response.status_code == 404, url
        assert response.headers["content-type"].startswith("text/html")
        assert "No kind named" in response.text
        for kind in KINDS:
            assert f'href="/kinds/{kind}"' in response.text


async def test_an_unknown_object_is_a_404_page_that_links_to_its_kind(
    client: httpx.AsyncClient, homelab: Any
) -> None:
    homelab.put(homelab.model("llama", namespace="ai"))

    for url in ("/kinds/NebulaNode/ghost", "/kinds/NebulaModel/ai/ghost", "/kinds/NebulaModel/x/a"):
        response = await client.get(url)

        assert response.status_code == 404, url
        assert "No Nebula" in text_of(response.text)
        kind = url.split("/")[2]
        assert f'<a href="/kinds/{kind}">Every {kind}</a>' in response.text


async def test_a_url_that_does_not_fit_the_kinds_scope_is_a_404_that_says_where_to_look(
    client: httpx.AsyncClient, homelab: Any
) -> None:
    homelab.put(homelab.node("home-ubuntu"))
    homelab.put(homelab.model("llama", namespace="ai"))

    namespaced = await client.get("/kinds/NebulaModel/llama")
    clustered = await client.get("/kinds/NebulaNode/default/home-ubuntu")

    assert namespaced.status_code == 404
    assert "NebulaModel is namespaced" in text_of(namespaced.text)
    assert clustered.status_code == 404
    assert "NebulaNode is cluster-scoped" in text_of(clustered.text)


async def test_html_in_a_spec_value_is_escaped_on_both_pages(
    client: httpx.AsyncClient, homelab: Any
) -> None:
    document = homelab.node("home-ubuntu")
    document["spec"]["description"] = "<script>alert('pwned')</script> & <b>bold</b>"
    document["metadata"]["labels"] = {"note": "<img src=x onerror=alert(1)>"}
    homelab.put(document, homelab.status("False", "Bad", "<i>not</i> ready"))

    detail = await client.get("/kinds/NebulaNode/home-ubuntu")
    table = await client.get("/kinds/NebulaNode")

    for page in (detail.text, table.text):
        assert "<script>" not in page
        assert "<b>" not in page and "<i>" not in page and "<img" not in page
    assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt; &amp; &lt;b&gt;bold" in detail.text
    assert "description: <script>alert('pwned')</script> & <b>bold</b>" in pre_yaml(
        detail.text, "spec"
    )
    assert "&lt;i&gt;not&lt;/i&gt; ready" in table.text


async def test_a_status_that_does_not_parse_still_shows_as_yaml(
    client: httpx.AsyncClient, homelab: Any
) -> None:
    # Written by hand or by an older controller: the page must show it, not fail.
    homelab.put(homelab.node("home-ubuntu"), {"conditions": "not a list", "hardware": 42})

    response = await client.get("/kinds/NebulaNode/home-ubuntu")

    assert response.status_code == 200
    status = pre_yaml(response.text, "status")
    assert "conditions: not a list\n" in status
    assert "hardware: 42\n" in status
    assert "StatusUnreadable" in response.text
    assert 'id="hardware"' not in response.text


async def test_multi_line_strings_read_as_yaml_blocks(
    client: httpx.AsyncClient, homelab: Any
) -> None:
    document = homelab.node("home-ubuntu")
    document["spec"]["description"] = "The GPU box.\nUnder the desk, on the left.\n"
    homelab.put(document)

    response = await client.get("/kinds/NebulaNode/home-ubuntu")

    spec = pre_yaml(response.text, "spec")
    assert "description: |\n  The GPU box.\n  Under the desk, on the left.\n" in spec


async def test_the_overview_links_every_kind_and_object_to_its_page(
    client: httpx.AsyncClient, homelab: Any
) -> None:
    homelab.put(homelab.node("home-ubuntu"), homelab.status("False", "HeartbeatStale", "gone"))
    homelab.put(homelab.model("llama", namespace="ai"))

    overview = (await client.get("/")).text

    for kind in KINDS:
        assert f'href="/kinds/{kind}"' in overview, kind
    links = set(re.findall(r'href="(/kinds/[^"#]+/[^"#]+)"', overview))
    assert links == {"/kinds/NebulaNode/home-ubuntu", "/kinds/NebulaModel/ai/llama"}
    for link in links:
        assert (await client.get(link)).status_code == 200, link


@dataclasses.dataclass
class CountingStore:
    """The real store, counting the reads a page makes (a seam: the ResourceStore protocol)."""

    store: PostgresStore
    reads: list[str] = dataclasses.field(default_factory=list)

    def inventory(self, source: str) -> Mapping[ResourceKey, AppliedState]:
        return self.store.inventory(source)

    def commit(self, source: str, plan: Plan) -> None:
        self.store.commit(source, plan)

    def get(self, key: ResourceKey) -> StoredObject | None:
        self.reads.append(f"get {key}")
        return self.store.get(key)

    def list(self, kind: str) -> list[StoredObject]:
        self.reads.append(f"list {kind}")
        return self.store.list(kind)

    def write_status(self, key: ResourceKey, status: Mapping[str, Any]) -> None:
        self.store.write_status(key, status)


async def test_each_page_costs_one_store_read_however_many_objects(
    store: PostgresStore, runs: History, trigger: Any, secrets: Any, homelab: Any
) -> None:
    for n in range(200):
        homelab.put(homelab.node(f"node-{n:03}"), homelab.status("True", "Reporting", **REPORTED))
    counting = CountingStore(store)
    app = api.create_app(store=counting, runs=runs, trigger=trigger, secrets=secrets)

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://nebula.test"
    ) as client:
        table = await client.get("/kinds/NebulaNode")
        read_by_table, counting.reads = counting.reads, []
        detail = await client.get("/kinds/NebulaNode/node-042")

    assert table.text.count('<a href="/kinds/NebulaNode/node-') == kinds.PAGE_SIZE
    assert read_by_table == ["list NebulaNode"]
    assert detail.status_code == 200
    assert counting.reads == ["get NebulaNode/node-042"]


async def test_the_pages_send_the_anonymous_to_sign_in_when_users_are_configured(
    guarded_app: fastapi.FastAPI, homelab: Any
) -> None:
    homelab.put(homelab.node("home-ubuntu"))
    transport = httpx.ASGITransport(app=guarded_app)

    async with httpx.AsyncClient(transport=transport, base_url="http://nebula.test") as client:
        table = await client.get("/kinds/NebulaNode")
        detail = await client.get("/kinds/NebulaNode/home-ubuntu")

    assert table.status_code == detail.status_code == 303
    assert detail.headers["location"] == "/login?next=%2Fkinds%2FNebulaNode%2Fhome-ubuntu"


async def test_a_large_kind_is_listed_a_page_at_a_time_with_the_count_and_links(
    client: httpx.AsyncClient, homelab: Any, store: PostgresStore
) -> None:
    # Bug (issue 11): the kind page rendered all 753 rows of a large homelab (555 KB). It now
    # lists PAGE_SIZE at a time, says how many there are in all, and links the other pages.
    total = 2 * kinds.PAGE_SIZE + 53
    for n in range(total):
        store.put(homelab.model(f"model-{n:04}"))

    first = (await client.get("/kinds/NebulaModel")).text
    last = await client.get("/kinds/NebulaModel", params={"page": "3"})
    past = await client.get("/kinds/NebulaModel", params={"page": "4"})
    wrong = await client.get("/kinds/NebulaModel", params={"page": "two"})

    assert first.count('<a href="/kinds/NebulaModel/ai/model-') == kinds.PAGE_SIZE
    assert '<a href="/kinds/NebulaModel/ai/model-0000">' in first
    assert f"1\u2013{kinds.PAGE_SIZE} of {total}" in text_of(first)
    assert f"{total} nebulamodels" in text_of(first)  # the tally counts them all
    assert 'href="/kinds/NebulaModel?page=2" rel="next"' in first
    assert 'href="/kinds/NebulaModel?page=3"' in first
    assert last.status_code == 200
    assert last.text.count('<a href="/kinds/NebulaModel/ai/model-') == 53
    assert f'<a href="/kinds/NebulaModel/ai/model-{total - 1:04}">' in last.text
    assert f"{2 * kinds.PAGE_SIZE + 1}\u2013{total} of {total}" in text_of(last.text)
    assert 'href="/kinds/NebulaModel?page=2" rel="prev"' in last.text
    assert (past.status_code, wrong.status_code) == (404, 400)
    assert "there is no page 4: NebulaModel has 3" in text_of(past.text)
    assert "give a whole number from 1 to 3" in text_of(wrong.text)
    assert len(first) < 200_000
