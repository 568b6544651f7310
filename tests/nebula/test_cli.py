"""The ``nebula`` command as a user runs it: output, exit codes, and no tracebacks."""

from __future__ import annotations

import argparse
import json
import pathlib
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator

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


# --- Usage ------------------------------------------------------------------------------------


def _usage_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    with pytest.raises(SystemExit) as raised:
        cli.main(list(args))
    assert raised.value.code == cli.EXIT_USAGE
    return capsys.readouterr().err


def test_an_unknown_option_prints_the_usage_of_the_subcommand_it_was_given_to(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Issue 11, point 13: `nebula up --prot` printed the usage of `nebula`, not of `up`.
    up = _usage_error(capsys, "up", "--prot")
    opening = _usage_error(capsys, "change", "open", "scale-service", "--prot")

    assert up.startswith("usage: nebula up ") and up.endswith(
        "nebula up: error: unrecognized arguments: --prot\n"
    )
    assert opening.startswith("usage: nebula change open ")
    assert "nebula change open: error: unrecognized arguments: --prot" in opening


def test_change_takes_no_options_of_what_to_sync(capsys: pytest.CaptureFixture[str]) -> None:
    # Issue 11, point 13: `change` took --repo, --manifests and --path and did nothing with them.
    for option in ("--repo=file:///x", "--manifests=m", "--path=p", "--branch=b"):
        assert "nebula change: error: unrecognized arguments" in _usage_error(
            capsys, "change", option, "intents"
        )


def test_bare_nebula_prints_help_and_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    # Issue 11, point 13: no command at all exited 1, as if the input were invalid.
    assert cli.main([]) == cli.EXIT_USAGE

    err = capsys.readouterr().err
    assert err.startswith("usage: nebula ")
    assert "validate" in err and "examples:" in err


def test_a_duration_that_is_not_one_is_a_one_line_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Issue 11, point 13: `nebula agent --interval fast` printed a traceback.
    for given in ("fast", "0s"):
        err = _usage_error(capsys, "agent", "--once", "--interval", given)
        assert err.splitlines()[-1].startswith(
            f"nebula agent: error: argument --interval: invalid duration '{given}': "
        )
        assert "Traceback" not in err


def _parsers(
    parser: argparse.ArgumentParser, words: tuple[str, ...] = ("nebula",)
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield words, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*words, name))


def test_every_command_has_runnable_examples_and_every_option_says_what_it_does() -> None:
    # Issue 11, point 13: subcommands had no examples and several options no help.
    for words, parser in _parsers(cli.parser()):
        command = " ".join(words)
        undocumented = [
            action.dest
            for action in parser._actions
            if not action.help
            and action.dest != "help"
            and not isinstance(action, argparse._SubParsersAction)
        ]
        assert undocumented == [], command
        assert parser.epilog and parser.epilog.startswith("examples:\n"), command
        lines = parser.epilog.splitlines()[1:]
        assert 1 <= len(lines) <= 3, command
        for line in lines:
            example = shlex.split(line.partition("  #")[0])
            assert example[0] == "nebula", line
            if "--help" in example:
                continue
            # Each example is a command line the parser takes as it is written.
            parsed = cli.parser().parse_args(example[1:])
            assert hasattr(parsed, "run"), line
