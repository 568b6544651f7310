"""``nebula sync --once`` and ``nebula plan`` on the embedded runtime's state."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from nebula import cli
from tests.conftest import EXAMPLE_MANIFESTS, GitRemote


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = cli.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out


def _store(database: str, tmp_path: pathlib.Path) -> list[str]:
    """Where the state is: what plan and change take."""
    return ["--database-url", database, "--state-dir", str(tmp_path / "state")]


def _state(database: str, tmp_path: pathlib.Path, remote: GitRemote) -> list[str]:
    """Where the state is and what to sync: what sync (and up) take."""
    return [*_store(database, tmp_path), "--repo", remote.url]


def _nebula(*args: str, cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    """``nebula`` in a child process, in ``cwd``, with no state named by the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEBULA_")}
    env.pop("DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "nebula", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_sync_once_applies_and_plan_then_shows_nothing_to_do(
    database: str,
    tmp_path: pathlib.Path,
    homelab_remote: GitRemote,
    capsys: pytest.CaptureFixture[str],
) -> None:
    state = _state(database, tmp_path, homelab_remote)

    code, out = _run(capsys, "sync", "--once", *state)
    assert code == 0
    assert "GitSource/default/local: ok Applied: revision" in out and "26 created" in out

    code, out = _run(capsys, "plan", *_store(database, tmp_path))
    assert code == 0
    assert "0 to create, 0 to update, 0 to prune, 26 unchanged" in out


def test_a_second_sync_once_says_it_had_nothing_to_do(
    database: str,
    tmp_path: pathlib.Path,
    homelab_remote: GitRemote,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Issue 11, point 13: a second `sync --once` with nothing to do printed "26 created", the
    # first run's message kept in Ready. It must print what this run did.
    state = _state(database, tmp_path, homelab_remote)
    _run(capsys, "sync", "--once", *state)

    code, out = _run(capsys, "sync", "--once", *state)

    assert code == cli.EXIT_OK
    assert "created" not in out
    assert "GitSource/default/local: ok Applied: revision " in out
    assert out.rstrip().endswith("is applied: nothing to do")


def test_plan_of_a_folder_shows_the_change_as_a_diff_and_writes_nothing(
    database: str,
    tmp_path: pathlib.Path,
    homelab_remote: GitRemote,
    capsys: pytest.CaptureFixture[str],
) -> None:
    state = _state(database, tmp_path, homelab_remote)
    _run(capsys, "sync", "--once", *state)
    models = homelab_remote.work / "manifests" / "models.yaml"
    models.write_text(models.read_text().replace("size: 4.9G", "size: 6G", 1))
    (homelab_remote.work / "manifests" / "workflows" / "upscale.yaml").unlink()

    store = _store(database, tmp_path)
    code, out = _run(capsys, "plan", str(homelab_remote.work / "manifests"), *store)
    again, _ = _run(capsys, "plan", str(homelab_remote.work / "manifests"), *store)

    assert (code, again) == (0, 0)
    assert "~ update NebulaModel/default/llama3-1-8b" in out
    assert "-  size: 4.9G" in out and "+  size: 6G" in out
    assert "- prune ComfyWorkflow/default/upscale" in out
    assert "0 to create, 1 to update, 1 to prune, 24 unchanged" in out


def test_sync_once_of_a_bad_revision_exits_one_and_names_the_line(
    database: str,
    tmp_path: pathlib.Path,
    homelab_remote: GitRemote,
    capsys: pytest.CaptureFixture[str],
) -> None:
    models = homelab_remote.read("manifests/models.yaml")
    homelab_remote.write("manifests/models.yaml", models.replace("size: 4.9G", "size: lots", 1))
    homelab_remote.commit("Oops")

    code, out = _run(capsys, "sync", "--once", *_state(database, tmp_path, homelab_remote))

    assert code == 1
    assert "FAILED ValidationFailed" in out
    assert "manifests/models.yaml:18:3: spec.size: invalid quantity 'lots'" in out


def test_plan_without_state_says_what_to_run_and_creates_nothing(tmp_path: pathlib.Path) -> None:
    # Issue 11, point 10: `nebula plan` with no state started a private PostgreSQL and made
    # ./.nebula/ in the current folder, though a plan writes nothing. It looks where
    # `nebula up` keeps its state ($NEBULA_STATE_DIR, else .nebula), and says there is none.
    result = _nebula("plan", cwd=tmp_path)

    assert result.returncode == cli.EXIT_INVALID
    assert result.stderr.splitlines() == [
        f"error: no Nebula state in {tmp_path.resolve() / '.nebula'}: run `nebula up` first, "
        "or `nebula plan FOLDER` to plan a working tree"
    ]
    assert list(tmp_path.iterdir()) == []


def test_change_commands_without_state_say_so_and_create_nothing(tmp_path: pathlib.Path) -> None:
    # Issue 11, point 10: the same for `nebula change`, which made a state to find no source.
    listed = _nebula("change", "list", cwd=tmp_path)
    opened = _nebula(
        "change", "open", "scale-service", "service=dashboard", "replicas=2", cwd=tmp_path
    )

    for result in (listed, opened):
        assert result.returncode == cli.EXIT_INVALID
        assert result.stderr.splitlines() == [
            f"error: no Nebula state in {tmp_path.resolve() / '.nebula'}: run `nebula up` first"
        ]
    assert list(tmp_path.iterdir()) == []


def test_plan_of_a_folder_without_state_shows_what_would_be_created(tmp_path: pathlib.Path) -> None:
    work = tmp_path / "work"
    work.mkdir()

    result = _nebula("plan", str(EXAMPLE_MANIFESTS), cwd=work)

    assert result.returncode == cli.EXIT_OK, result.stderr
    assert "compared with nothing applied" in result.stdout
    assert "+ create NebulaNode/home-ubuntu" in result.stdout
    assert "26 to create, 0 to update, 0 to prune, 0 unchanged" in result.stdout
    assert list(work.iterdir()) == []


def test_plan_finds_the_state_named_by_nebula_state_dir(
    database: str,
    tmp_path: pathlib.Path,
    homelab_remote: GitRemote,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The state folder of `nebula up --state-dir X` is found again through $NEBULA_STATE_DIR.
    _run(capsys, "sync", "--once", *_state(database, tmp_path, homelab_remote))
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEBULA_")}
    env |= {"NEBULA_STATE_DIR": str(tmp_path / "state"), "DATABASE_URL": database}

    result = subprocess.run(
        [sys.executable, "-m", "nebula", "plan"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == cli.EXIT_OK, result.stderr
    assert "0 to create, 0 to update, 0 to prune, 26 unchanged" in result.stdout
    assert not (tmp_path / ".nebula").exists()
