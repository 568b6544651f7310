"""Change requests against a real bare repository and a real PostgreSQL: open, approve, merge."""

from __future__ import annotations

import concurrent.futures
import pathlib
import subprocess

import pytest

from nebula import audit, db, errors
from nebula.changes import ChangeService, Person, intents
from nebula.changes import service as service_module
from nebula.resources.git_source import GitRef, GitSource
from nebula.sources import Mirror
from tests.conftest import GitRemote

ADA = Person("Ada Admin", "ada@homelab.example")
BOB = Person("Bob Approver", "bob@homelab.example")
ADD_TO_VM = intents.AddModelToNode(model="llama3-1-8b", node="windows-vm")


def _git(remote: GitRemote, *args: str) -> str:
    done = subprocess.run(
        ["git", "--git-dir", str(remote.bare), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.fixture
def changes(database: str, homelab_remote: GitRemote, tmp_path: pathlib.Path) -> ChangeService:
    db.migrate(database)
    source = GitSource.model_validate(
        {
            "apiVersion": "nebula.dev/v1alpha1",
            "kind": "GitSource",
            "metadata": {"name": "homelab", "namespace": "default"},
            "spec": {"url": homelab_remote.url, "path": "manifests"},
        }
    )
    return ChangeService(conninfo=database, source=source, mirror=Mirror(tmp_path / "changes.git"))


def test_opening_a_change_pushes_one_commit_on_its_branch_with_a_one_line_diff(
    changes: ChangeService, homelab_remote: GitRemote, database: str
) -> None:
    main_before = _git(homelab_remote, "rev-parse", "main")

    change = changes.open(ADD_TO_VM, requester=ADA, origin="cli")

    assert (change.state, change.title) == ("open", "Add model llama3-1-8b to node windows-vm")
    assert change.branch == f"changes/{change.id}" and change.file == "manifests/models.yaml"
    lines = change.diff.splitlines()
    added = [line for line in lines if line.startswith("+") and not line.startswith("+++")]
    removed = [line for line in lines if line.startswith("-") and not line.startswith("---")]
    # The flow list of the model's nodes is one line: it changes, nothing else does.
    assert removed == ["-    nodes: [home-ubuntu]"]
    assert added == ["+    nodes: [home-ubuntu, windows-vm]"]
    assert _git(homelab_remote, "rev-parse", change.branch) == change.head_revision
    assert _git(homelab_remote, "log", "-1", "--format=%an <%ae>", change.branch) == str(ADA)
    assert _git(homelab_remote, "rev-parse", "main") == main_before  # nothing merged yet
    # Comments of the file survive the edit.
    shown = _git(homelab_remote, "show", f"{change.branch}:manifests/models.yaml")
    assert shown.startswith("# AI models and the nodes that should hold them.")
    [opened] = audit.entries(database, subject=f"change/{change.id}")
    assert (opened.action, opened.actor) == ("change.opened", str(ADA))


def test_the_same_request_twice_opens_one_change(changes: ChangeService) -> None:
    first = changes.open(ADD_TO_VM, requester=ADA, origin="discord")
    again = changes.open(ADD_TO_VM, requester=ADA, origin="discord")

    assert again.id == first.id
    assert len(changes.store.list()) == 1


def test_a_change_that_would_be_invalid_commits_nothing(
    changes: ChangeService, homelab_remote: GitRemote
) -> None:
    branches = _git(homelab_remote, "branch", "--list")

    with pytest.raises(errors.InvalidChange, match="no NebulaNode named 'nas'"):
        changes.open(
            intents.AddModelToNode(model="llama3-1-8b", node="nas"), requester=ADA, origin="web"
        )
    with pytest.raises(errors.NothingToChange):
        changes.open(
            intents.AddModelToNode(model="llama3-1-8b", node="home-ubuntu"),
            requester=ADA,
            origin="web",
        )
    with pytest.raises(errors.ResourceNotFound, match="NebulaService/default/nope"):
        changes.open(intents.ScaleService(service="nope", replicas=2), requester=ADA, origin="web")

    assert _git(homelab_remote, "branch", "--list") == branches
    assert changes.store.list() == []


def test_an_edit_never_leaves_the_sources_folder(
    changes: ChangeService, homelab_remote: GitRemote
) -> None:
    # A model declared outside manifests/ is not the GitSource's to change.
    homelab_remote.write("elsewhere/extra.yaml", homelab_remote.read("manifests/models.yaml"))
    homelab_remote.remove("manifests/models.yaml")
    homelab_remote.commit("Models moved out of the synced folder")

    with pytest.raises(errors.ResourceNotFound, match="not declared under manifests/"):
        changes.open(ADD_TO_VM, requester=ADA, origin="web")
    with pytest.raises(errors.PermanentError, match="outside manifests/"):
        service_module._inside("manifests/../elsewhere/extra.yaml", "manifests")


def test_approving_merges_once_then_the_sync_makes_it_applied(
    changes: ChangeService, homelab_remote: GitRemote, database: str
) -> None:
    change = changes.open(ADD_TO_VM, requester=ADA, origin="cli")

    merged = changes.approve(change.id, approver=BOB)

    assert merged.state == "merged" and merged.decided_by == str(BOB)
    main = _git(homelab_remote, "rev-parse", "main")
    assert merged.merge_revision == main
    assert "windows-vm" in _git(homelab_remote, "show", "main:manifests/models.yaml")
    assert changes.follow("default.other", main) == []
    [applied] = changes.follow("default.homelab", main)
    assert applied.state == "applied"
    actions = [e.action for e in reversed(audit.entries(database, subject=f"change/{change.id}"))]
    assert actions == ["change.opened", "change.approved", "change.merged", "change.applied"]


def test_a_sync_that_fetched_before_the_merge_leaves_the_change_merged_until_it_holds_it(
    changes: ChangeService, homelab_remote: GitRemote, tmp_path: pathlib.Path
) -> None:
    """The sync's mirror fetched just before the approval pushed: it lacks the merge commit."""
    sync_mirror = Mirror(tmp_path / "sync.git")
    before = sync_mirror.fetch(homelab_remote.url, GitRef(branch="main"))
    change = changes.open(ADD_TO_VM, requester=ADA, origin="cli")
    merged = changes.approve(change.id, approver=BOB)

    found = service_module.follow(
        changes.store, source="default.homelab", revision=before.commit, mirror=sync_mirror
    )

    assert found == []
    assert changes.store.get(change.id).state == "merged"
    after = sync_mirror.fetch(homelab_remote.url, GitRef(branch="main"))
    assert after.commit == merged.merge_revision
    [applied] = service_module.follow(
        changes.store, source="default.homelab", revision=after.commit, mirror=sync_mirror
    )
    assert applied.id == change.id and applied.state == "applied"


def test_two_approvals_racing_merge_the_change_exactly_once(
    changes: ChangeService, homelab_remote: GitRemote, database: str
) -> None:
    # Main moves first, so approving needs a real merge commit, not a fast-forward.
    nodes = homelab_remote.read("manifests/nodes.yaml")
    homelab_remote.write("manifests/nodes.yaml", nodes.replace("role: ai", "role: worker", 1))
    change = changes.open(ADD_TO_VM, requester=ADA, origin="cli")
    homelab_remote.commit("Unrelated change on main")
    before = int(_git(homelab_remote, "rev-list", "--count", "main"))

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: changes.approve(change.id, approver=BOB), range(4)))

    assert {r.state for r in results} == {"merged"}
    assert len({r.merge_revision for r in results}) == 1
    # One merge commit and the change's own commit: two more commits, not four or eight.
    assert int(_git(homelab_remote, "rev-list", "--count", "main")) == before + 2
    merges = [
        e
        for e in audit.entries(database, subject=f"change/{change.id}")
        if e.action == "change.merged"
    ]
    assert len(merges) == 1


def test_a_conflict_merges_nothing_names_the_file_and_a_rebase_resolves_it(
    changes: ChangeService, homelab_remote: GitRemote
) -> None:
    change = changes.open(
        intents.SetServiceImage(service="dashboard", image="ghcr.io/example/dashboard:2.0.0"),
        requester=ADA,
        origin="web",
    )
    cloud = homelab_remote.read("manifests/services/cloud.yaml")
    old_image = next(line for line in cloud.splitlines() if "image:" in line)
    hotfix = cloud.replace(old_image, old_image + "-hotfix", 1)
    homelab_remote.write("manifests/services/cloud.yaml", hotfix)
    homelab_remote.commit("Hotfix the dashboard image on main")
    main_before = _git(homelab_remote, "rev-parse", "main")

    conflicted = changes.approve(change.id, approver=BOB)

    assert conflicted.state == "conflict"
    assert conflicted.conflict_files == ["manifests/services/cloud.yaml"]
    assert _git(homelab_remote, "rev-parse", "main") == main_before

    rebased = changes.rebase(conflicted.id, actor=ADA)
    assert (rebased.state, rebased.base_revision) == ("open", main_before)
    merged = changes.approve(rebased.id, approver=BOB)
    assert merged.state == "merged"
    assert "dashboard:2.0.0" in _git(homelab_remote, "show", "main:manifests/services/cloud.yaml")


def test_a_rejected_change_cannot_be_approved(changes: ChangeService) -> None:
    change = changes.open(ADD_TO_VM, requester=ADA, origin="web")

    rejected = changes.reject(change.id, actor=BOB, reason="not now")

    assert (rejected.state, rejected.reason) == ("rejected", "not now")
    with pytest.raises(errors.PermanentError, match="is rejected, not open"):
        changes.approve(change.id, approver=BOB)
    # A rejected request may be asked for again: it opens a new change.
    assert changes.open(ADD_TO_VM, requester=ADA, origin="web").id != change.id


OLLAMA = "manifests/services/home.yaml"
OLLAMA_058 = intents.SetServiceImage(service="ollama", image="ollama/ollama:0.5.8")


def _main_edits(remote: GitRemote, path: str, old: str, new: str, message: str) -> str:
    """A commit on main replacing ``old`` with ``new`` in ``path``; its revision."""
    text = remote.read(path)
    assert old in text, f"{old!r} is not in {path}"
    remote.write(path, text.replace(old, new, 1))
    return remote.commit(message)


def test_a_change_no_longer_applies_as_soon_as_main_changes_its_lines_and_nothing_moves(
    changes: ChangeService, homelab_remote: GitRemote
) -> None:
    # Bug (issue 11): a conflict with main showed only once Approve was clicked. Reading the
    # change now says it no longer applies as soon as main changed the same lines, and
    # reading it moves nothing (it stays open, main stays as it was).
    change = changes.open(ADD_TO_VM, requester=ADA, origin="cli")
    assert changes.checks([change])[change.id].applies is True

    elsewhere = _main_edits(
        homelab_remote, OLLAMA, "ollama/ollama:0.5.7", "ollama/ollama:0.5.9", "Ollama 0.5.9"
    )
    moved = changes.checks([change])[change.id]
    assert (moved.applies, moved.target_revision) == (True, elsewhere)

    same_lines = _main_edits(
        homelab_remote, "manifests/models.yaml", "nodes: [home-ubuntu]",
        "nodes: [home-ubuntu]  # pinned", "Pin the model",
    )  # fmt: skip
    check = changes.checks([change])[change.id]

    assert (check.applies, check.target_revision) == (False, same_lines)
    assert check.conflict_files == ("manifests/models.yaml",)
    assert changes.store.get(change.id).state == "open"
    assert _git(homelab_remote, "rev-parse", "main") == same_lines
    # A decided change is not checked: it merges no more.
    rejected = changes.reject(change.id, actor=BOB)
    assert changes.checks([rejected]) == {}


def test_a_check_against_a_remote_that_is_gone_is_unknown_not_an_error(
    changes: ChangeService, homelab_remote: GitRemote
) -> None:
    change = changes.open(ADD_TO_VM, requester=ADA, origin="cli")
    homelab_remote.bare.rename(homelab_remote.bare.with_name("moved.git"))

    check = changes.checks([change])[change.id]

    assert (check.applies, check.target_revision) == (None, None)
    assert check.problem and "there is no repository at" in check.problem


def test_a_rebase_clears_the_approval_so_the_new_commit_must_be_approved_again(
    changes: ChangeService, homelab_remote: GitRemote, database: str
) -> None:
    # Bug (issue 11): a change approved, then rebased after a conflict, still showed as
    # approved by its first approver: the new commit is another change and needs its own.
    change = changes.open(ADD_TO_VM, requester=ADA, origin="cli")
    _main_edits(
        homelab_remote, "manifests/models.yaml", "nodes: [home-ubuntu]",
        "nodes: [home-ubuntu]  # pinned", "Pin the model",
    )  # fmt: skip
    conflicted = changes.approve(change.id, approver=BOB)
    assert (conflicted.state, conflicted.decided_by) == ("conflict", str(BOB))

    rebased = changes.rebase(change.id, actor=ADA)

    assert (rebased.state, rebased.decided_by) == ("open", None)
    trail = audit.entries(database, subject=f"change/{change.id}")
    assert trail[0].action == "change.rebased"  # newest first
    assert trail[0].detail["approval cleared"] == str(BOB)
    merged = changes.approve(change.id, approver=ADA)
    assert (merged.state, merged.decided_by) == ("merged", str(ADA))
    actions = [entry.action for entry in audit.entries(database, subject=f"change/{change.id}")]
    assert actions.count("change.approved") == 2


def test_a_rebase_that_would_undo_a_newer_edit_on_main_says_so_with_its_diff(
    changes: ChangeService, homelab_remote: GitRemote, database: str
) -> None:
    # Bug (issue 11): a change setting ollama 0.5.7 -> 0.5.8, rebased after main moved to 0.5.9,
    # quietly became 0.5.9 -> 0.5.8: a downgrade of main's newer edit. The rebased change now
    # names the lines of main it replaces that main had changed since it was made.
    change = changes.open(OLLAMA_058, requester=ADA, origin="discord")
    assert change.overrides == []
    _main_edits(homelab_remote, OLLAMA, "ollama/ollama:0.5.7", "ollama/ollama:0.5.9", "0.5.9")
    assert changes.checks([change])[change.id].conflict_files == (OLLAMA,)

    rebased = changes.rebase(change.id, actor=BOB)

    assert rebased.overrides == ["  image: ollama/ollama:0.5.9"]
    assert "-  image: ollama/ollama:0.5.9" in rebased.diff.splitlines()
    assert "+  image: ollama/ollama:0.5.8" in rebased.diff.splitlines()
    assert changes.store.get(change.id).overrides == rebased.overrides
    trail = audit.entries(database, subject=f"change/{change.id}")
    assert trail[0].detail["overrides"] == ["  image: ollama/ollama:0.5.9"]
    # Main moves elsewhere and the change is rebased again: it still undoes that edit.
    _main_edits(
        homelab_remote, "manifests/models.yaml", "nodes: [home-ubuntu]",
        "nodes: [home-ubuntu]  # pinned", "Pin the model",
    )  # fmt: skip
    again = changes.rebase(change.id, actor=BOB)
    assert again.overrides == ["  image: ollama/ollama:0.5.9"]


def test_a_rebase_over_edits_elsewhere_overrides_nothing(
    changes: ChangeService, homelab_remote: GitRemote
) -> None:
    change = changes.open(OLLAMA_058, requester=ADA, origin="web")
    _main_edits(
        homelab_remote, "manifests/models.yaml", "nodes: [home-ubuntu]",
        "nodes: [home-ubuntu]  # pinned", "Pin the model",
    )  # fmt: skip

    rebased = changes.rebase(change.id, actor=BOB)

    assert (rebased.state, rebased.overrides) == ("open", [])
