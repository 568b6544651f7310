"""The ``nebula`` command as a user runs it: output, exit codes, and no tracebacks."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys

import pytest

from nebula import cli, db

ROOT = pathlib.Path(__file__).parent.parent.parent
EXAMPLE = ROOT / "manifests"


def test_validate_prints_one_line_per_kind_and_exits_zero(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = cli.main(["validate", str(EXAMPLE)])

    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert lines[0].endswith("all valid")
    kinds = [line.split()[0] for line in lines[1:]]
    expected = ["NebulaNode", "NebulaService", "NebulaModel", "ComfyWorkflow", "BotConfig"]
    assert kinds == [*expected, "Pipeline", "GitSource"]


def test_validate_reports_every_error_and_exits_one(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(EXAMPLE, tmp_path / "m")
    nodes = tmp_path / "m" / "nodes.yaml"
    nodes.write_text(nodes.read_text().replace("role: ai", "role: gpu-box", 1) + "\nbroken: [\n")

    code = cli.main(["validate", str(tmp_path / "m")])

    out = capsys.readouterr().out
    assert code == 1
    assert f"{tmp_path / 'm' / 'nodes.yaml'}:" in out
    assert "nothing would be applied" in out


def test_validate_json_lists_resources_and_errors(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "model.yaml"
    bad.write_text(
        "apiVersion: nebula.dev/v1alpha1\nkind: NebulaModel\nmetadata: {name: m}\n"
        "spec: {provider: ollama, model: 'llama3.1:8b', size: lots}\n"
    )

    code = cli.main(["validate", str(bad), "--output", "json"])

    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert report["valid"] is False
    assert report["errors"] == [
        {
            "file": str(bad),
            "line": 4,
            "column": 48,
            "field": "spec.size",
            "message": "invalid quantity 'lots': expected a number with an optional unit "
            "such as '512Mi', '24Gi' or '1.5G'",
        }
    ]


def test_validate_of_a_missing_path_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", "no/such/folder"]) == 1
    assert "no/such/folder: no such file or folder" in capsys.readouterr().err


def test_crds_check_fails_on_a_stale_folder_until_crds_are_written(tmp_path: pathlib.Path) -> None:
    folder = tmp_path / "crds"

    assert cli.main(["crds", str(folder), "--check"]) == 1
    assert cli.main(["crds", str(folder)]) == 0
    assert cli.main(["crds", str(folder), "--check"]) == 0


def test_db_migrate_applies_once_and_status_lists_what_is_applied(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["db", "migrate", "--database-url", database]) == 0
    assert cli.main(["db", "migrate", "--database-url", database]) == 0
    assert cli.main(["db", "status", "--database-url", database]) == 0

    out = capsys.readouterr().out
    assert f"applied {len(db.discover())} migrations" in out
    assert "the database is up to date" in out
    assert "0001  audit_log" in out
    assert "pending" not in out


def test_db_commands_without_a_database_explain_what_to_set() -> None:
    # A child process, so that the test runner's own DATABASE_URL (if any) is not inherited.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "nebula", "db", "status"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )

    assert result.returncode == 1
    assert "set DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreachable_database_is_reported_as_unavailable(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"postgresql://nobody@/nebula?host={tmp_path}&connect_timeout=2"

    assert cli.main(["db", "status", "--database-url", url]) == 3
    assert "unavailable" in capsys.readouterr().err
