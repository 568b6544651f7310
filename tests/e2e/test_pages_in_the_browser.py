"""The pages as a laptop's browser shows them, and the API docs without internet.

The app of :func:`api.create_app` over a real PostgreSQL store holding the example homelab (as
a sync applied it, its nodes with statuses as raw as real agents report them) and a page and a
half more models, served by uvicorn on 127.0.0.1; headless Debian chromium (driven by
Playwright, no browser download) loads the pages at 1280 and 1366 px wide and measures them.
"""

from __future__ import annotations

import collections.abc
import datetime
import pathlib
import socket
import threading
from typing import Any

import pytest
import uvicorn
from playwright.sync_api import Browser, Route, expect, sync_playwright

import api
from api.app import Server
from api.routes import kinds
from nebula import db, manifests
from nebula.resources import KINDS, ResourceKey, conditions
from nebula.secrets import EnvironmentSecrets
from nebula.store import Desired, Plan, PostgresStore, content_hash
from nebula.sync import History

ROOT = pathlib.Path(__file__).parent.parent.parent
CHROMIUM = "/usr/bin/chromium"
LAPTOPS = (1280, 1366)
"""The widths of the laptops the layout must fit (issue 11)."""
SOURCE = "default.local"
REVISION = "9899be18ba4c4bfbd0c1a2e3f4a5b6c7d8e9f001"
EXTRA_MODELS = kinds.PAGE_SIZE + 40
NO_AGENT = (
    "no agent reports as '{0}' or from 192.168.1.50, {0}.tail1234.ts.net: run "
    "`nebula agent --node {0}` on the machine"
)
MEASURE = """() => {
    const problems = [];
    const page = document.documentElement;
    if (page.scrollWidth > innerWidth) problems.push(`page ${page.scrollWidth} > ${innerWidth}`);
    for (const table of document.querySelectorAll("table")) {
        const card = table.parentElement.getBoundingClientRect();
        const own = table.getBoundingClientRect();
        const name = (table.closest("[id]") || {}).id + " " + table.className;
        if (own.right > card.right + 0.5 || table.scrollWidth > table.clientWidth + 1)
            problems.push(`${name}: ${Math.round(own.right)} > ${Math.round(card.right)}`);
        for (const cell of table.querySelectorAll("th, td, td > *")) {
            if (cell.getBoundingClientRect().right > own.right + 0.5)
                problems.push(`${name}: a cell ends past its table: ${cell.textContent}`);
        }
    }
    // A name breaks only after its namespace's slash, never inside a word.
    for (const word of document.querySelectorAll(".name .word")) {
        if (word.getClientRects().length > 1) problems.push(`broken name: ${word.textContent}`);
    }
    return problems;
}"""
"""What does not fit on the page in the browser: the page wider than the window, a table wider
than its card or a cell past its table, a name broken inside a word. Empty when all fits."""


def _status(
    ready: conditions.ConditionStatus, reason: str, message: str, **fields: Any
) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.UTC)
    found = conditions.set_condition(
        [], type_=conditions.READY, status=ready, reason=reason, message=message, now=now
    )
    dumped = conditions.Status(conditions=found, observed_generation=1).model_dump(mode="json")
    return {**dumped, **fields}


def _fill(store: PostgresStore) -> None:
    """The example homelab as a sync applied it, and EXTRA_MODELS more models."""
    example = manifests.load_path(ROOT / "manifests", shown_as="manifests")
    assert not example.errors
    documents = [
        resource.model_dump(mode="json", by_alias=True, exclude_none=True)
        for resource in example.resources.values()
    ]
    for n in range(EXTRA_MODELS):
        documents.append({
            "apiVersion": "nebula.dev/v1alpha1", "kind": "NebulaModel",
            "metadata": {"name": f"qwen2-5-coder-32b-instruct-q4-k-m-{n:04}", "namespace": "ai"},
            "spec": {"provider": "ollama", "model": "qwen2.5-coder:32b-instruct-q4_K_M",
                     "placement": {"nodes": ["home-ubuntu"]}},
        })  # fmt: skip
    plan = [
        Desired(
            ResourceKey(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]),
            d,
            content_hash(d),
        )
        for d in documents
        if KINDS[d["kind"]].info.scope == "Cluster" or d["metadata"].get("namespace")
    ]
    store.commit(SOURCE, Plan(create=plan))
    # Statuses as the controllers write them, quantities as raw as an agent reports them.
    reported = {
        "gpu": "NVIDIA GeForce RTX 4090", "vram": "24564Mi", "cpu": "32 cores",
        "memory": "264212084Ki", "address": "100.64.0.7", "agentVersion": "0.4.1",
    }  # fmt: skip
    store.write_status(
        ResourceKey("NebulaNode", None, "home-ubuntu"),
        _status("True", "Reporting", "NVIDIA GeForce RTX 4090 with 24564Mi", **reported),
    )
    for node in ("linode-vps", "windows-vm"):
        store.write_status(
            ResourceKey("NebulaNode", None, node),
            _status("False", "NoHeartbeat", NO_AGENT.format(node)),
        )
    for key in store.inventory(SOURCE):
        if key.kind == "GitSource":
            store.write_status(
                key,
                _status(
                    "True", "Applied", f"revision {REVISION[:12]} applied: 26 created",
                    lastAppliedRevision=REVISION, lastAttemptedRevision=REVISION,
                    lastSyncResult="Applied", resources=26,
                ),
            )  # fmt: skip


class _Trigger:
    def request(self, source: ResourceKey) -> None:
        """Nothing syncs here: the test filled the store itself."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def served(database: str) -> collections.abc.Iterator[str]:
    """The app over the filled store, served on 127.0.0.1; its base URL."""
    db.migrate(database)
    with PostgresStore(database) as store:
        _fill(store)
        app = api.create_app(
            store=store, runs=History(database), trigger=_Trigger(), secrets=EnvironmentSecrets({})
        )
        port = _free_port()
        server = Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, name="uvicorn")
        thread.start()
        try:
            pause = threading.Event()  # never set: a wait that polls
            while not server.started and thread.is_alive():
                pause.wait(0.05)
            assert server.started, "uvicorn did not start"
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(timeout=30)


@pytest.fixture
def browser() -> collections.abc.Iterator[Browser]:
    """Headless Debian chromium."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        yield launched
        launched.close()


def test_every_page_fits_a_laptop_screen_and_no_name_breaks_inside_a_word(
    served: str, browser: Browser
) -> None:
    # Bug (issue 11): at 1280-1366 px names broke letter by letter ("defau/lt/cad/dy") and the
    # services and GitSource tables ran past their cards (a full revision, a long URL). Every
    # table now fits its card, the page never scrolls sideways, names wrap after a "/" only.
    pages = ["/", *(f"/kinds/{kind}" for kind in KINDS), "/kinds/NebulaModel?page=2",
             "/kinds/NebulaNode/home-ubuntu", "/changes"]  # fmt: skip
    for width in LAPTOPS:
        page = browser.new_page(viewport={"width": width, "height": 900})
        for path in pages:
            page.goto(served + path)
            expect(page.locator("main")).to_be_visible()
            assert page.evaluate(MEASURE) == [], f"{path} at {width} px"
        page.close()


def test_the_api_docs_render_an_operation_with_every_other_host_blocked(
    served: str, browser: Browser
) -> None:
    # Bug (issue 11): /api/docs loaded Swagger UI from a CDN: without internet, a blank page.
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    elsewhere: list[str] = []

    def only_this_server(route: Route) -> None:
        if route.request.url.startswith(served + "/"):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context.route("**/*", only_this_server)
    page = context.new_page()
    page.goto(f"{served}/api/docs")

    operation = page.locator(".opblock-summary-path", has_text="/api/v1/resources").first
    expect(operation).to_be_visible(timeout=15_000)
    expect(page.locator(".info .title")).to_contain_text("Nebula Command")
    assert elsewhere == []
    context.close()
