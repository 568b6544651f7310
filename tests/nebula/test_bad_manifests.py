"""The corpus of bad manifests: every mistake is reported where a person would look for it.

Each case in ``bad_manifests/`` documents its own expected errors in ``# expect:`` lines (see
the README there). The loader must report them at exactly that line, column and field path,
never raise, and ``nebula validate`` must exit 1 with ``file:line:`` and no traceback.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import pathlib
import re
import subprocess
import sys

import pytest

from nebula import errors, manifests

CORPUS = pathlib.Path(__file__).parent / "bad_manifests"
CASES = sorted(p.name for p in CORPUS.iterdir() if p.suffix == ".yaml" or p.is_dir())
_EXPECT_RE = re.compile(r"^# expect: (\d+):(\d+) (\S+) (.+)$")


@dataclasses.dataclass(frozen=True)
class Expected:
    """One ``# expect:`` line: an error the case must produce."""

    file: str
    line: int
    column: int
    field: str
    message: str

    def matches(self, error: errors.ManifestError) -> bool:
        return self.at(error) and self.message in error.message

    def at(self, error: errors.ManifestError) -> bool:
        where = (error.file, error.line, error.column, error.field)
        return where == (self.file, self.line, self.column, self.field)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.field or '-'}: ...{self.message}..."


def case_files(case: pathlib.Path) -> list[tuple[pathlib.Path, str]]:
    """The files of a case, each with the name the loader shows for it."""
    if case.is_file():
        return [(case, case.name)]
    return [(p, f"{case.name}/{p.relative_to(case)}") for p in manifests.manifest_files(case)]


def expectations(case: pathlib.Path) -> list[Expected]:
    found = []
    for path, shown in case_files(case):
        # Some cases are not UTF-8 on purpose; their expectations are plain ASCII.
        for text in path.read_bytes().decode("utf-8", "replace").splitlines():
            if match := _EXPECT_RE.match(text):
                line, column, field, message = match.groups()
                field = "" if field == "-" else field
                found.append(Expected(shown, int(line), int(column), field, message))
    return found


def load(case: pathlib.Path) -> manifests.ManifestSet:
    return manifests.load_path(case, shown_as=case.name)


def listing(found: manifests.ManifestSet) -> str:
    return "\n".join(str(e) for e in found.errors) or "(no errors)"


@pytest.fixture(scope="module")
def validate_runs() -> dict[str, subprocess.CompletedProcess[str]]:
    """``nebula validate <case>`` for every case, run side by side (each is a fresh Python)."""

    def run(name: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "nebula", "validate", str(CORPUS / name)]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)

    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 4) as pool:
        return dict(zip(CASES, pool.map(run, CASES), strict=True))


def test_corpus_has_at_least_thirty_cases_each_with_an_expectation() -> None:
    assert len(CASES) >= 30
    for name in CASES:
        assert expectations(CORPUS / name), f"{name} has no '# expect:' line"


@pytest.mark.parametrize("name", CASES)
def test_bad_manifest_is_reported_at_its_line_column_and_field(name: str) -> None:
    found = load(CORPUS / name)
    for expected in expectations(CORPUS / name):
        assert any(expected.matches(e) for e in found.errors), (
            f"expected {expected}\nreported:\n{listing(found)}"
        )


@pytest.mark.parametrize("name", CASES)
def test_bad_manifest_reports_no_error_beyond_its_expectations(name: str) -> None:
    # A second error the case does not document is usually a cascade (an error about an
    # error) or a position that drifted: both are worth a look before updating the case.
    found = load(CORPUS / name)
    expected = expectations(CORPUS / name)
    extra = [e for e in found.errors if not any(x.at(e) for x in expected)]
    assert not extra, "undocumented:\n" + "\n".join(map(str, extra))


@pytest.mark.parametrize("name", CASES)
def test_validate_command_exits_1_and_names_the_file_and_line(
    name: str, validate_runs: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    result = validate_runs[name]
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert result.returncode == 1, output
    for expected in expectations(CORPUS / name):
        assert re.search(rf"{re.escape(expected.file)}:{expected.line}:", output), output


def test_the_whole_corpus_loads_as_one_set_without_raising_and_sorted() -> None:
    # Every kind of broken file side by side: one must not derail the reading of another.
    found = manifests.load_path(CORPUS, shown_as="corpus")
    keys = [(e.file, e.line, e.column) for e in found.errors]
    assert keys == sorted(keys)
    assert len({e.file for e in found.errors}) > len(CASES) // 2


def test_file_over_the_size_limit_is_refused_at_its_first_line(tmp_path: pathlib.Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("# a comment that pushes the file past the limit\n" * 4)
    found = manifests.load_path(big, shown_as="big.yaml", max_bytes=64)
    assert [(e.file, e.line, e.column, e.field) for e in found.errors] == [("big.yaml", 1, 1, "")]
    assert "larger than the limit" in found.errors[0].message
    assert found.resources == {}


def test_validate_command_refuses_a_file_over_the_default_limit(tmp_path: pathlib.Path) -> None:
    big = tmp_path / "huge.yaml"
    line = b"# padding " + b"x" * 53 + b"\n"
    big.write_bytes(line * (manifests.loading.DEFAULT_MAX_FILE_BYTES // len(line) + 1))
    command = [sys.executable, "-m", "nebula", "validate", str(big)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    assert "huge.yaml:1:" in result.stdout and "Traceback" not in result.stderr


def test_binary_bytes_written_now_are_refused_not_decoded(tmp_path: pathlib.Path) -> None:
    (tmp_path / "model.yaml").write_bytes(b"apiVersion: nebula.dev/v1alpha1\x00\x01\x02")
    found = manifests.load_path(tmp_path, shown_as="m")
    assert [str(e) for e in found.errors] == [
        "m/model.yaml:1:1: binary file (it contains NUL bytes), not a YAML manifest"
    ]
