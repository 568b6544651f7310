"""``/nebula`` commands that propose changes: each opens one change, or refuses and commits nothing.

The handlers run against the example homelab in a real bare remote, synced into a real
PostgreSQL store, with a real change service: a change that was committed has a branch on the
remote, so "nothing committed" is checked there.
"""

from __future__ import annotations

import datetime
import subprocess

import pytest

from bots import commands
from nebula.changes import Person
from nebula.resources.bot_config import BotConfig
from tests.bots.conftest import ADA, CHANNEL, CY, GUILD, MEL, OUTSIDER, TESS, UI_URL, Homelab


def _show(homelab: Homelab, branch: str, path: str) -> str:
    done = subprocess.run(
        ["git", "--git-dir", str(homelab.remote.bare), "show", f"{branch}:{path}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def test_model_add_opens_a_change_and_answers_with_its_id_diff_and_link(homelab: Homelab) -> None:
    reply = homelab.handlers.model_add(ADA, model="llama3-1-8b", node="windows-vm")

    assert not reply.ephemeral and reply.change is not None
    change = homelab.changes.store.get(reply.change)
    assert change.title == "Add model llama3-1-8b to node windows-vm"
    assert (change.state, change.origin) == ("open", "discord")
    assert change.requester == "ada <100000000000000001@discord.invalid>"
    assert change.reply_to == f"discord:{GUILD}/{CHANNEL}"
    link = f"{UI_URL}/changes/{change.id}"
    assert reply.text == (
        f"Change #{change.id} is open and waits for approval: {change.title}\n"
        f"`manifests/models.yaml: +1 -1` · {link}"
    )
    assert reply.embed is not None and reply.embed.url == link
    assert ("Diff", "`manifests/models.yaml: +1 -1`") in [
        (f.name, f.value) for f in reply.embed.fields
    ]
    assert "nodes: [home-ubuntu, windows-vm]" in _show(
        homelab, change.branch, "manifests/models.yaml"
    )


def test_each_mutating_command_opens_the_change_it_names(homelab: Homelab) -> None:
    handlers = homelab.handlers

    removed = handlers.model_remove(CY, model="llama3-1-8b", node="home-ubuntu")
    image = handlers.service_image(ADA, service="dashboard", image="ghcr.io/example/dash:1.5.0")
    scaled = handlers.service_scale(ADA, service="dashboard", replicas=3)
    feature = handlers.feature(ADA, name="leveling", state="on")

    titles = {
        reply.change: homelab.changes.store.get(reply.change).title
        for reply in (removed, image, scaled, feature)
        if reply.change is not None
    }
    assert sorted(titles.values()) == [
        "Remove model llama3-1-8b from node home-ubuntu",
        "Scale dashboard to 3 replicas",
        "Set the image of dashboard to ghcr.io/example/dash:1.5.0",
        f"Turn leveling on in guild {GUILD}",
    ]
    # Homelab Crew, as the BotConfig writes it, is the role "homelab crew" in Discord.
    assert homelab.changes.store.get(removed.change or 0).requester.startswith("cy <")
    toggled = homelab.changes.store.get(feature.change or 0)
    text = _show(homelab, toggled.branch, "manifests/bots.yaml")
    assert "leveling:\n            enabled: true" in text
    # Only this guild: the lab server's features are untouched.
    assert (
        text.count("enabled: true")
        == _show(homelab, "main", "manifests/bots.yaml").count("enabled: true") + 1
    )


def test_the_same_request_twice_opens_one_change(homelab: Homelab) -> None:
    first = homelab.handlers.model_add(ADA, model="llama3-1-8b", node="windows-vm")
    again = homelab.handlers.model_add(ADA, model="llama3-1-8b", node="windows-vm")

    assert first.change is not None and again.change == first.change
    assert again.text.startswith(f"Change #{first.change} already waits: ")
    assert len(homelab.changes.store.list()) == 1
    assert homelab.branches() == ["refs/heads/changes/" + str(first.change), "refs/heads/main"]


@pytest.mark.parametrize(
    ("propose", "said"),
    [
        pytest.param(
            lambda h: h.model_add(ADA, model="llama3-1-8b", node="nas"),
            "That change would not be valid: no NebulaNode named 'nas'",
            id="unknown node",
        ),
        pytest.param(
            lambda h: h.model_add(ADA, model="Llama 3.1!", node="windows-vm"),
            "Invalid model: invalid name 'Llama 3.1!'",
            id="invalid model name",
        ),
        pytest.param(
            lambda h: h.model_add(ADA, model="mistral-7b", node="windows-vm"),
            "Not found: NebulaModel/default/mistral-7b is not declared under manifests/",
            id="unknown model",
        ),
        pytest.param(
            lambda h: h.service_image(ADA, service="dashboard", image="ghcr.io/Example/Dash:"),
            "Invalid image: invalid image reference 'ghcr.io/Example/Dash:'",
            id="bad image reference",
        ),
        pytest.param(
            lambda h: h.service_scale(ADA, service="jellyfin-typo", replicas=2),
            "Not found: NebulaService/default/jellyfin-typo is not declared",
            id="unknown service",
        ),
        pytest.param(
            lambda h: h.service_scale(ADA, service="dashboard", replicas=51),
            "Invalid replicas: Input should be less than or equal to 50",
            id="too many replicas",
        ),
        pytest.param(
            lambda h: h.feature(ADA, name="jukebox", state="on"),
            "Invalid feature: unknown feature 'jukebox': one of tickets, welcome,",
            id="unknown feature",
        ),
        pytest.param(
            lambda h: h.model_add(ADA, model="llama3-1-8b", node="home-ubuntu"),
            "Nothing to change: model llama3-1-8b is already placed on home-ubuntu",
            id="already so",
        ),
        pytest.param(
            lambda h: h.feature(ADA, name="tickets", state="on"),
            "Nothing to change: tickets is already on there",
            id="feature already on",
        ),
    ],
)
def test_bad_input_answers_ephemerally_and_commits_nothing(
    homelab: Homelab, propose: object, said: str
) -> None:
    reply = propose(homelab.handlers)  # type: ignore[operator]

    assert reply.ephemeral and reply.change is None
    assert reply.text.startswith(said), reply.text
    assert homelab.branches() == ["refs/heads/main"]
    assert homelab.changes.store.list() == []


@pytest.mark.parametrize(
    ("caller", "said"),
    [
        pytest.param(MEL, "Sorry, your roles do not let you propose changes here.", id="no role"),
        pytest.param(TESS, "Sorry, your roles do not let you propose changes here.", id="tester"),
        pytest.param(OUTSIDER, commands.UNKNOWN_GUILD, id="unknown guild"),
    ],
)
def test_callers_without_an_open_changes_role_get_a_polite_refusal(
    homelab: Homelab, caller: commands.Caller, said: str
) -> None:
    reply = homelab.handlers.model_add(caller, model="llama3-1-8b", node="windows-vm")

    assert reply.ephemeral and reply.text.startswith(said)
    assert homelab.branches() == ["refs/heads/main"]


def test_the_refusal_names_the_roles_that_may(homelab: Homelab) -> None:
    reply = homelab.handlers.service_scale(MEL, service="dashboard", replicas=2)

    assert reply.text == commands.CANNOT_CHANGE.format(roles="Admins, Homelab Crew")


def test_a_user_past_the_hourly_limit_is_refused_until_the_hour_has_passed(
    homelab: Homelab,
) -> None:
    # The example allows 10 changes per user and hour; this BotConfig allows 2.
    config = homelab.bot_config()
    assert config is not None
    document = config.model_dump(mode="json", by_alias=True, exclude_none=True)
    document["spec"]["discord"]["rateLimit"] = {"changesPerHour": 2}
    limited = BotConfig.model_validate(document)
    handlers = commands.Handlers(
        store=homelab.store,
        changes=homelab.changes,
        bot_config=lambda: limited,
        ui_url=UI_URL,
        clock=homelab.clock,
    )
    homelab.clock.now = datetime.datetime.now(datetime.UTC)

    first = handlers.service_scale(ADA, service="dashboard", replicas=2)
    second = handlers.model_add(ADA, model="llama3-1-8b", node="windows-vm")
    third = handlers.service_scale(ADA, service="dashboard", replicas=4)
    repeated = handlers.model_add(ADA, model="llama3-1-8b", node="windows-vm")
    others = handlers.service_scale(CY, service="dashboard", replicas=4)

    assert first.change and second.change and not third.change
    assert third.ephemeral
    assert third.text == commands.RATE_LIMITED.format(count=2, limit=2)
    # Asking again for a change that waits costs nothing; another user has a limit of their own.
    assert repeated.change == second.change
    assert others.change is not None
    # An hour later the first two no longer count.
    homelab.clock.now += datetime.timedelta(hours=1, seconds=1)
    later = handlers.service_scale(ADA, service="dashboard", replicas=4)
    assert later.change is not None and later.change == others.change + 1


def test_the_requester_is_the_discord_user_with_a_stable_address() -> None:
    assert ADA.person() == Person("ada", "100000000000000001@discord.invalid")
    assert ADA.reply_to() == f"discord:{GUILD}/{CHANNEL}"
