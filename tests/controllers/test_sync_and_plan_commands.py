"""``nebula sync --once`` and ``nebula plan`` on the embedded runtime's state."""

from __future__ import annotations

import pathlib

import pytest

from nebula import cli
from tests.conftest import GitRemote


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = cli.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out


def _state(database: str, tmp_path: pathlib.Path, remote: GitRemote) -> list[str]:
    return [
        "--database-url",
        database,
        "--state-dir",
        str(tmp_path / "state"),
        "--repo",
        remote.url,
    ]


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

    code, out = _run(capsys, "plan", *state)
    assert code == 0
    assert "0 to create, 0 to update, 0 to prune, 26 unchanged" in out


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

    code, out = _run(capsys, "plan", str(homelab_remote.work / "manifests"), *state)
    again, _ = _run(capsys, "plan", str(homelab_remote.work / "manifests"), *state)

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
