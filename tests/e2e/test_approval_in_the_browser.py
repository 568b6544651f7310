"""Issue 5's "done when": a person approves a change in a real browser and watches it apply.

The real ``nebula up`` runs in a child process with its own private PostgreSQL under a fresh
state folder and a users file; a change is opened through the real CLI; headless Debian
chromium (driven by Playwright, no browser download) signs in, finds the change, reads its
diff, approves it, and sees it become ``merged`` and then ``applied`` without reloading (the
page listens to ``/events``). The screenshots it takes on the way are the README's: run it with
``NEBULA_SCREENSHOTS=docs/screenshots`` to refresh them (otherwise they go to a temporary folder,
so a test run leaves the checkout as it was).
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
from playwright.sync_api import Page, expect, sync_playwright

from nebula import auth

ROOT = pathlib.Path(__file__).parent.parent.parent
CHROMIUM = "/usr/bin/chromium"
DESKTOP = {"width": 1280, "height": 860}
APPROVER, PASSWORD = "abe", "abe approves what is proposed"
VIEWER, VIEWER_PASSWORD = "vera", "vera only looks around"
TITLE = "Add model llama3-1-8b to node windows-vm"
WATCH = """
change => new Promise(opened => {
    window.nebulaNotReloaded = true;
    window.nebulaHeard = [];
    const events = new EventSource(document.body.dataset.events);
    events.addEventListener("change", event => {
        const moved = JSON.parse(event.data);
        if (moved.id === change) window.nebulaHeard.push(moved.state);
    });
    events.addEventListener("open", () => opened(true));
})
"""
"""Listens to /events in a page: the states the change moves to, in order; true once open."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _until(check: Callable[[], Any], *, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
        # Not listening yet, or answering 503 while it starts.
        except (httpx.HTTPError, KeyError):
            found = None
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"gave up after {timeout} s")


def _nebula(*args: str, folder: pathlib.Path, stdin: str | None = None) -> str:
    """Runs the real CLI to the end; its standard output."""
    environment = {**os.environ, "NEBULA_STATE_DIR": str(folder / ".nebula")}
    environment.pop("DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "nebula", *args],
        cwd=folder,
        env=environment,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _users_file(folder: pathlib.Path) -> tuple[pathlib.Path, str]:
    """Abe approves (hashed here), Vera views (hashed by `nebula user hash`), and a script's
    viewer token (made by `nebula token new`); the file, and that token."""
    viewer_hash = _nebula("user", "hash", folder=folder, stdin=VIEWER_PASSWORD + "\n").strip()
    made = dict(line.split(": ", 1) for line in _nebula("token", "new", folder=folder).splitlines())
    path = folder / "users.yaml"
    path.write_text(
        "users:\n"
        f"  - name: {APPROVER}\n"
        f"    password_hash: '{auth.hash_password(PASSWORD)}'\n"
        "    role: approver\n"
        f"  - name: {VIEWER}\n"
        f"    password_hash: '{viewer_hash}'\n"
        "    role: viewer\n"
        "tokens:\n"
        "  - name: status-board\n"
        f"    token_hash: '{made['token_hash']}'\n"
        "    role: viewer\n"
    )
    return path, made["token"]


def _sign_in(page: Page, base: str) -> None:
    page.goto(f"{base}/changes")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fchanges$"))
    page.fill("#name", APPROVER)
    page.fill("#password", PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{base}/changes")


def test_an_approver_approves_a_cli_change_in_the_browser_and_watches_it_apply(
    tmp_path: pathlib.Path,
) -> None:
    shutil.copytree(ROOT / "manifests", tmp_path / "manifests")
    screenshots = pathlib.Path(os.environ.get("NEBULA_SCREENSHOTS") or tmp_path / "screenshots")
    users, token = _users_file(tmp_path)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    environment = {**os.environ, "NEBULA_STATE_DIR": str(tmp_path / ".nebula")}
    environment.pop("DATABASE_URL", None)
    log = tmp_path / "up.log"
    with log.open("w") as sink:
        up = subprocess.Popen(
            [sys.executable, "-m", "nebula", "up", "--port", str(port), "--users", str(users)],
            cwd=tmp_path,
            env=environment,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    script = {"Authorization": f"Bearer {token}"}
    try:
        _until(lambda: up.poll() is None and httpx.get(f"{base}/healthz").status_code == 200)
        # Anyone else is turned away; the script's token and Vera's password (hashed by the
        # CLI) open the doors their role allows.
        assert httpx.get(f"{base}/api/v1/changes").status_code == 401
        vera = httpx.post(
            f"{base}/login", data={"name": VIEWER, "password": VIEWER_PASSWORD, "next": "/"}
        )
        assert vera.status_code == 303
        _until(
            lambda: any(
                model["metadata"]["name"] == "llama3-1-8b"
                for model in httpx.get(
                    f"{base}/api/v1/resources/NebulaModel", headers=script
                ).json()
            )
        )

        # A change from a terminal, and one more so the queue has something waiting.
        opened = _nebula(
            "change", "--as", "Ada <ada@example>", "open", "add-model-to-node",
            "model=llama3-1-8b", "node=windows-vm", folder=tmp_path,
        )  # fmt: skip
        found = re.match(r"#(\d+) open: (.*)$", opened.splitlines()[0])
        assert found and found.group(2) == TITLE, opened
        change = int(found.group(1))
        _nebula(
            "change", "--as", "Bo Builder <bo@example>", "open", "scale-service",
            "service=dashboard", "replicas=2", folder=tmp_path,
        )  # fmt: skip

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=["--disable-dev-shm-usage"]
            )
            context = browser.new_context(viewport=DESKTOP)
            page = context.new_page()
            _sign_in(page, base)
            expect(page.locator("#live")).to_have_text("live")
            expect(page.locator(".session .who")).to_contain_text(APPROVER)

            # The queue lists the change: who asked, from where, how big.
            row = page.locator(f"#change-{change}")
            expect(row).to_contain_text(TITLE)
            expect(row).to_contain_text("Ada <ada@example>")
            expect(row).to_contain_text("cli")
            expect(row).to_contain_text("models.yaml: +1 -1")
            expect(row.locator(".badge")).to_have_text("open")
            row.get_by_role("link", name=TITLE).click()
            expect(page).to_have_url(f"{base}/changes/{change}")

            # Its diff: the added line is green and names the node.
            added = page.locator("pre.diff .line.add")
            expect(added).to_have_text("+    nodes: [home-ubuntu, windows-vm]")
            expect(page.locator("pre.diff .line.remove")).to_have_text("-    nodes: [home-ubuntu]")
            # --add-bg of the light scheme (headless chromium prefers light).
            expect(added).to_have_css("background-color", "rgb(218, 251, 225)")
            expect(page.locator("#live")).to_have_text("live")
            screenshots.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=screenshots / "change.png")

            # A second tab keeps the queue open, and notes every move of the change it hears.
            queue = context.new_page()
            queue.goto(f"{base}/changes")
            expect(queue.locator("#live")).to_have_text("live")
            assert queue.evaluate(WATCH, change)

            # Approve: the form posts, the change merges at once, and the page comes back
            # merged (or already applied: the sync may be that quick).
            page.get_by_role("button", name="Approve").click()
            expect(page).to_have_url(f"{base}/changes/{change}")
            state = page.locator("#state")
            expect(state).to_have_text(re.compile(r"^(merged|applied)$"))
            page.evaluate("window.nebulaNotReloaded = true")
            expect(state).to_have_text("applied", timeout=30_000)
            assert page.evaluate("window.nebulaNotReloaded === true"), "the page was reloaded"
            trail = page.locator("#trail tbody")
            expect(trail.locator("tr")).to_have_count(4)
            actions = trail.locator("td[data-label=What]").all_text_contents()
            assert actions == [
                "change.opened",
                "change.approved",
                "change.merged",
                "change.applied",
            ]
            expect(trail).to_contain_text(f"{APPROVER} <{APPROVER}@nebula.invalid>")
            expect(page.locator("#decide")).to_have_count(0)

            # The queue, untouched since before the approval, moved the change by itself.
            expect(queue.locator(f"#decided #change-{change} .badge")).to_have_text("applied")
            expect(queue.locator("#queue")).to_contain_text("Scale dashboard to 2 replicas")
            assert queue.evaluate("window.nebulaNotReloaded === true"), "the queue was reloaded"
            assert queue.evaluate("window.nebulaHeard") == ["approved", "merged", "applied"]
            listed = httpx.get(f"{base}/api/v1/changes/{change}", headers=script).json()
            assert (listed["state"], listed["decidedBy"]) == ("applied", "abe <abe@nebula.invalid>")
            queue.screenshot(path=screenshots / "changes.png")

            page.goto(f"{base}/")
            expect(page.locator("#sources")).to_contain_text("Applied")
            expect(page.locator("#live")).to_have_text("live")
            page.screenshot(path=screenshots / "overview.png")

            # Stopping with live streams open: they end, and the server does not wait for them.
            started = time.monotonic()
            up.send_signal(signal.SIGINT)
            up.wait(timeout=30)
            stopped_in = time.monotonic() - started
            expect(page.locator("#live")).not_to_have_text("live")
            browser.close()
    except BaseException:
        print(f"nebula up said:\n{log.read_text()}")  # shown with the failure
        raise
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            up.wait(timeout=30)
    output = log.read_text()
    assert up.returncode == 0, output
    assert "Sign in as a user of" in output and "open to anyone" not in output
    assert "Traceback" not in output
    assert stopped_in < 10, f"nebula up took {stopped_in:.1f} s to stop"
