"""``nebula change open`` and ``intents``: each parameter explained as its JSON schema has it."""

from __future__ import annotations

import json
import pathlib

import pytest

from nebula import cli
from nebula.changes import intents
from nebula.resources import bot_config
from tests.conftest import GitRemote


def _state(database: str, tmp_path: pathlib.Path) -> list[str]:
    return ["--database-url", database, "--state-dir", str(tmp_path / "state")]


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (
            ["toggle-bot-feature", "botConfig=homelab-bots", "feature=imageGeneration",
             "enabled=true"],
            "toggle-bot-feature: feature: unknown feature 'imageGeneration': one of tickets, ",
        ),
        (
            ["scale-service", "service=dashboard", "replicas=abc"],
            "scale-service: replicas: 'abc' is not a whole number from 0 to 50",
        ),
        (
            ["add-model-to-node", "model=llama3-1-8b"],
            "add-model-to-node: node is required: a name of lowercase letters, digits, '-' and "
            "'.' (The NebulaNode)",
        ),
        (
            ["set-service-image", "service=dashboard", "image=Dashboard 2"],
            "set-service-image: image: invalid image reference 'Dashboard 2': expected "
            "name[:tag] with a lowercase name, such as 'ghcr.io/acme/dashboard:1.4.2'",
        ),
        (
            ["scale-service", "service=dashboard", "replica=2"],
            "scale-service: replica is not a parameter of scale-service (did you mean replicas?",
        ),
    ],
)  # fmt: skip
def test_a_bad_parameter_is_one_line_naming_it_and_what_it_takes(
    words: list[str],
    expected: str,
    database: str,
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Issue 11, point 5: ordinary mistakes in `nebula change open` printed pydantic's
    # traceback. Now: one line naming the parameter and what it takes, exit 1.
    code = cli.main(["change", *_state(database, tmp_path), "open", *words])

    err = capsys.readouterr().err
    assert code == cli.EXIT_INVALID
    assert err.startswith(f"error: {expected}"), err
    assert len(err.splitlines()) == 1, err


def test_intents_lists_each_parameter_with_what_it_takes_and_whether_it_is_required(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Issue 11, point 5: `nebula change intents` listed bare field names; a person needs the
    # type, whether it is required and the allowed values, as the schema tells a bot.
    assert cli.main(["change", "intents"]) == cli.EXIT_OK

    lines = [" ".join(line.split()) for line in capsys.readouterr().out.splitlines()]
    assert (
        "replicas= required a whole number from 0 to 50. How many copies to run (0 stops it)."
        in lines
    )
    assert "enabled= required true or false. On or off." in lines
    assert (
        "namespace= default: default a name of at most 63 lowercase letters, digits and '-'."
        in " ".join(lines)
    )
    feature = next(line for line in lines if line.startswith("feature="))
    assert feature.startswith(f"feature= required one of {', '.join(bot_config.FEATURES)}.")
    assert any(line.startswith("requestedAt= optional text.") for line in lines)
    mapping = "parameters.NAME= optional a mapping of names to text."
    assert any(line.startswith(mapping) for line in lines)


def test_intents_as_json_are_the_schemas_the_bots_are_offered(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["change", "intents", "--output", "json"]) == cli.EXIT_OK

    assert json.loads(capsys.readouterr().out) == intents.schemas()


def test_a_pipeline_run_opens_without_a_hand_typed_time(
    database: str,
    tmp_path: pathlib.Path,
    homelab_remote: GitRemote,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Issue 11, point 5: run-pipeline refused to open without requestedAt=<ISO 8601 time>;
    # the time a run is asked for is now, unless given.
    state = _state(database, tmp_path)
    assert cli.main(["sync", "--once", *state, "--repo", homelab_remote.url]) == cli.EXIT_OK
    capsys.readouterr()

    code = cli.main(
        ["change", *state, "--as", "Ada <ada@example>", "open", "run-pipeline",
         "pipeline=daily-content", "parameters.topic=GPUs"]
    )  # fmt: skip

    out = capsys.readouterr().out
    assert code == cli.EXIT_OK, out
    assert "open: Run pipeline daily-content (topic=GPUs)" in out
    assert "+    nebula.dev/run-requested-at: '20" in out
    assert "+    nebula.dev/run.topic: GPUs" in out
