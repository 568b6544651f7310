"""What someone who runs ``/nebula …`` sees, and who else sees it, through discord.py's real
command tree: the local Discord (:mod:`tests.bots.discord_server`) sends the INTERACTION_CREATE
and records every answer (the interaction callback, follow-ups, deletes of the original).

A refusal is for its caller only: an ephemeral message (flag 64) as the first and only answer,
with no "thinking…" shown to the channel before it. A command that opens a change thinks for
its caller only (the repository may still refuse it) and posts the opened change publicly.
"""

from __future__ import annotations

from typing import Any

from bots import commands
from tests.bots.conftest import ADA, CHANNEL, GUILD, MEL, UI_URL, Homelab, serving
from tests.bots.discord_server import EPHEMERAL, Call, FakeDiscord, Interaction, until

MESSAGE, THINKING = 4, 5  # interaction callback types: a message, a deferred one
ADMINS = "500000000000000001"  # ADA's role in the fake guild


def _flags(call: Call) -> int:
    """The flags of an answer: a callback's are in its ``data``, a follow-up's in its body."""
    body: dict[str, Any] = call.body or {}
    if call.path.endswith("/callback"):
        body = body.get("data") or {}
    return int(body.get("flags") or 0)


async def _answered(fake: FakeDiscord, interaction: Interaction) -> list[Call]:
    """The answers to ``interaction`` once one carries what the bot says (text or a card)."""

    def said() -> bool:
        for call in fake.answers_to(interaction):
            body = call.body or {}
            if call.path.endswith("/callback"):
                body = body.get("data") or {}
            if body.get("content") or body.get("embeds"):
                return True
        return False

    await until(said, what="the bot's answer")
    return fake.answers_to(interaction)


async def test_bad_input_is_answered_to_its_caller_only_without_thinking_in_public(
    lab: Homelab, fake: FakeDiscord
) -> None:
    # Regression: the bot deferred publicly ("nebula is thinking…" for the whole channel)
    # before it validated the arguments, then deleted that and answered ephemerally. A
    # refused command must answer only the user who typed it, at once.
    async with serving(lab, fake):
        asked = await fake.interact(
            guild=GUILD,
            channel=CHANNEL,
            user=(ADA.user_id, ADA.name),
            roles=[ADMINS],
            command="service image",
            service="dashboard",
            image="ghcr.io/Example/Dash:",
        )
        [answer] = await _answered(fake, asked)

    assert answer.path == f"/interactions/{asked.id}/{asked.token}/callback"
    assert answer.body["type"] == MESSAGE
    assert answer.body["data"]["flags"] == EPHEMERAL
    assert "image" in answer.body["data"]["content"]
    assert lab.branches() == ["refs/heads/main"]  # nothing was committed


async def test_a_caller_without_the_role_is_refused_to_them_only(
    lab: Homelab, fake: FakeDiscord
) -> None:
    async with serving(lab, fake):
        asked = await fake.interact(
            guild=GUILD,
            channel=CHANNEL,
            user=(MEL.user_id, MEL.name),
            roles=[],
            command="model add",
            model="llama3-1-8b",
            node="windows-vm",
        )
        [answer] = await _answered(fake, asked)

    assert (answer.body["type"], _flags(answer)) == (MESSAGE, EPHEMERAL)
    assert answer.body["data"]["content"].startswith("Sorry, your roles do not let you propose")


async def test_a_change_the_repository_refuses_thinks_and_answers_for_its_caller_only(
    lab: Homelab, fake: FakeDiscord
) -> None:
    # The node is unknown: only the change service, over the repository, can say so.
    async with serving(lab, fake):
        asked = await fake.interact(
            guild=GUILD,
            channel=CHANNEL,
            user=(ADA.user_id, ADA.name),
            roles=[ADMINS],
            command="model add",
            model="llama3-1-8b",
            node="nas",
        )
        answers = await _answered(fake, asked)

    thinking, answer = answers
    assert (thinking.body["type"], _flags(thinking)) == (THINKING, EPHEMERAL)
    assert answer.method == "POST" and _flags(answer) == EPHEMERAL
    assert "Nothing was committed" in answer.body["content"]
    assert lab.branches() == ["refs/heads/main"]


async def test_an_opened_change_is_posted_for_everyone_in_the_channel(
    lab: Homelab, fake: FakeDiscord
) -> None:
    async with serving(lab, fake):
        asked = await fake.interact(
            guild=GUILD,
            channel=CHANNEL,
            user=(ADA.user_id, ADA.name),
            roles=[ADMINS],
            command="model add",
            model="llama3-1-8b",
            node="windows-vm",
        )
        answers = await _answered(fake, asked)

    # Thinking for the caller, then that replaced by the public card of the change.
    thinking, deleted, posted = answers
    assert (thinking.body["type"], _flags(thinking)) == (THINKING, EPHEMERAL)
    assert deleted.method == "DELETE" and deleted.path.endswith("/messages/@original")
    assert posted.method == "POST" and _flags(posted) == 0
    [card] = posted.body["embeds"]
    assert card["title"].startswith("Change #") and "llama3-1-8b" in card["title"]
    [change] = lab.changes.store.list()
    assert card["url"] == commands.change_url(UI_URL, change.id)


async def test_a_read_command_thinks_in_public_and_answers_in_public(
    lab: Homelab, fake: FakeDiscord
) -> None:
    async with serving(lab, fake):
        asked = await fake.interact(
            guild=GUILD,
            channel=CHANNEL,
            user=(ADA.user_id, ADA.name),
            roles=[ADMINS],
            command="status",
        )
        answers = await _answered(fake, asked)

    thinking, posted = answers
    assert (thinking.body["type"], _flags(thinking)) == (THINKING, 0)
    assert posted.method == "POST" and _flags(posted) == 0
    assert posted.body["embeds"][0]["title"] == "Homelab status"
