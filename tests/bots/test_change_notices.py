"""What the bot posts when a change it opened moves, and that each move is posted once.

The wording is checked on change requests as values; the once-only rule against the real
change store, with a change rejected through the real change service.
"""

from __future__ import annotations

import dataclasses
import datetime
import threading
import time

import pytest

from bots import notifications
from nebula.changes import ChangeRequest, ChangeStore, Person
from tests.bots.conftest import ADA, CHANNEL, GUILD, UI_URL, Homelab

AT = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=datetime.UTC)
CHANGE = ChangeRequest(
    id=7, title="Scale dashboard to 2 replicas", intent={}, requester=str(ADA.person()),
    origin="discord", source="default.local", target_branch="main", branch="changes/7",
    file="manifests/services/cloud.yaml", base_revision="a" * 40, head_revision="b" * 40,
    merge_revision=None, diff="", state="open", conflict_files=[], decided_by=None, reason=None,
    idempotency_key="k", reply_to=f"discord:{GUILD}/{CHANNEL}", created_at=AT, updated_at=AT,
)  # fmt: skip
BOB = "Bob Approver <bob@homelab.example>"
LINK = f"\n{UI_URL}/changes/7"
PING = f"<@{ADA.user_id}> change #7 (Scale dashboard to 2 replicas)"


@pytest.mark.parametrize(
    ("moved", "text"),
    [
        ({"state": "approved", "decided_by": BOB},
         f"{PING} was approved by Bob Approver; merging it now."),
        ({"state": "merged"}, f"{PING} is merged; the sync applies it next."),
        ({"state": "applied"}, f"{PING} is applied: the homelab runs it now."),
        ({"state": "rejected", "decided_by": BOB, "reason": "not during the stream"},
         f"{PING} was rejected by Bob Approver: not during the stream"),
        ({"state": "conflict", "conflict_files": ["manifests/services/cloud.yaml"]},
         f"{PING} is in conflict (manifests/services/cloud.yaml); rebase it in the web UI."),
    ],
    ids=["approved", "merged", "applied", "rejected", "conflict"],
)  # fmt: skip
def test_every_move_after_opening_is_told_in_the_channel_it_was_asked_in(
    moved: dict[str, object], text: str
) -> None:
    found = notifications.notice(dataclasses.replace(CHANGE, **moved), ui_url=UI_URL)  # type: ignore[arg-type]

    assert found is not None
    assert found.destination == notifications.Destination(GUILD, CHANNEL)
    assert found.text == text + LINK


def test_nothing_is_told_for_an_open_change_or_one_no_chat_asked_for() -> None:
    assert notifications.notice(CHANGE, ui_url=UI_URL) is None
    from_web = dataclasses.replace(CHANGE, state="merged", reply_to=None, requester=BOB)
    assert notifications.notice(from_web, ui_url=UI_URL) is None


def test_a_requester_from_elsewhere_is_named_without_a_ping() -> None:
    someone = dataclasses.replace(CHANGE, state="merged", requester=str(Person("Ada", "a@b.c")))

    found = notifications.notice(someone, ui_url=UI_URL)

    assert found is not None and found.text.startswith("Change #7 (Scale dashboard")


def test_the_announcer_tells_each_move_once(homelab: Homelab) -> None:
    announcer = notifications.Announcer(ChangeStore(homelab.conninfo), ui_url=UI_URL)
    opened = homelab.handlers.service_scale(ADA, service="dashboard", replicas=2)
    assert opened.change is not None

    assert announcer.announce(opened.change) is None  # open: the command's reply said it
    homelab.changes.reject(opened.change, actor=Person.parse(BOB), reason="not now")
    rejected = announcer.announce(opened.change)
    again = announcer.announce(opened.change)

    assert rejected is not None and rejected.state == "rejected"
    assert rejected.text.endswith(
        f"was rejected by Bob Approver: not now\n{UI_URL}/changes/{opened.change}"
    )
    assert again is None
    assert announcer.announce(999_999) is None  # no such change


def test_a_move_is_told_once_across_announcers_and_restarts(homelab: Homelab) -> None:
    """Two bot processes, or one before and after a restart: the change store says who tells."""
    first = notifications.Announcer(ChangeStore(homelab.conninfo), ui_url=UI_URL)
    second = notifications.Announcer(ChangeStore(homelab.conninfo), ui_url=UI_URL)
    opened = homelab.handlers.service_scale(ADA, service="dashboard", replicas=2)
    assert opened.change is not None
    homelab.changes.reject(opened.change, actor=Person.parse(BOB), reason="not now")

    told = [first.announce(opened.change), second.announce(opened.change)]

    assert [n.state if n else None for n in told] == ["rejected", None]
    assert second.missed() == [] and first.missed() == []


def test_moves_made_while_no_bot_listened_are_told_when_one_starts(homelab: Homelab) -> None:
    rejected = homelab.handlers.service_scale(ADA, service="dashboard", replicas=2)
    still_open = homelab.handlers.service_scale(ADA, service="dashboard", replicas=3)
    assert rejected.change is not None and still_open.change is not None
    homelab.changes.reject(rejected.change, actor=Person.parse(BOB), reason="not now")
    announcer = notifications.Announcer(ChangeStore(homelab.conninfo), ui_url=UI_URL)
    sent: list[notifications.Notice] = []
    stop, listening = threading.Event(), threading.Event()
    thread = threading.Thread(
        target=notifications.listen,
        args=(homelab.conninfo, announcer, sent.append),
        kwargs={"stop": stop, "listening": listening, "poll": 0.05},
    )
    thread.start()
    try:
        assert listening.wait(10)
        # What moved before the bot listened was told first, once; the open change is not.
        assert [(n.change, n.state) for n in sent] == [(rejected.change, "rejected")]
        homelab.changes.reject(still_open.change, actor=Person.parse(BOB), reason="later")
        deadline = time.monotonic() + 10
        while len(sent) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        thread.join()
    assert [(n.change, n.state) for n in sent] == [
        (rejected.change, "rejected"),
        (still_open.change, "rejected"),
    ]


def test_moves_older_than_the_catch_up_window_are_not_told_late(homelab: Homelab) -> None:
    opened = homelab.handlers.service_scale(ADA, service="dashboard", replicas=2)
    assert opened.change is not None
    homelab.changes.reject(opened.change, actor=Person.parse(BOB), reason="not now")
    later = datetime.datetime.now(datetime.UTC) + notifications.CATCH_UP + datetime.timedelta(1)
    late = notifications.Announcer(
        ChangeStore(homelab.conninfo), ui_url=UI_URL, clock=lambda: later
    )

    assert late.missed() == []
    on_time = notifications.Announcer(ChangeStore(homelab.conninfo), ui_url=UI_URL)
    assert [n.change for n in on_time.missed()] == [opened.change]
