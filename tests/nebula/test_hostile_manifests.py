"""Whatever bytes arrive, the loader answers with located errors and never raises."""

from __future__ import annotations

import pathlib
import random

import pytest

from nebula import manifests
from nebula.resources import pipeline

EXAMPLE = pathlib.Path(__file__).parent.parent.parent / "manifests"
# Fragments that break YAML or the model in different ways, spliced into real manifests.
JUNK = [
    b"", b" ", b"\t", b":", b"- ", b"[", b"]", b"{", b"}", b"&a ", b"*a", b"!!int ", b"<<: ",
    b"---\n", b"~", b"null", b"1e999", b"-1", b"0x", b"'", b'"', b"#", b"\n", b"\xff", b"? ",
    b"|", b">", b"%YAML 1.2\n", b"@", b"`", b"9" * 40, b"true", b"[]", b"{}", b"!custom ",
    b"&x [*x]", b"\xef\xbb\xbf", b"\r\n", b"...\n", b"%TAG ! tag:x,2000:\n",
]  # fmt: skip


def _mutants(seed: int, count: int) -> list[bytes]:
    rng = random.Random(seed)
    originals = [path.read_bytes() for path in sorted(EXAMPLE.rglob("*.yaml"))]
    mutants = []
    for _ in range(count):
        data = bytearray(rng.choice(originals))
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data) + 1)
            if rng.random() < 0.5:
                data[at:at] = rng.choice(JUNK)
            else:
                del data[at : at + rng.randint(1, 20)]
        mutants.append(bytes(data))
    return mutants


@pytest.mark.parametrize("seed", range(4))
def test_mutated_example_manifests_never_crash_the_loader(seed: int) -> None:
    for data in _mutants(seed, 150):
        loaded = manifests.load_file("mutant.yaml", data)
        assembled = manifests.assemble([loaded])

        for error in assembled.errors:
            assert error.file == "mutant.yaml"
            assert error.line >= 1
            assert error.column >= 1
            assert error.message


def _pipeline(steps: int) -> bytes:
    lines = ["apiVersion: nebula.dev/v1alpha1", "kind: Pipeline", "metadata: {name: chain}"]
    lines += ["spec:", "  steps:"]
    for i in range(steps):
        needs = f"[s{i - 1}]" if i else "[]"
        lines.append(f"    - {{name: s{i}, needs: {needs}, approval: {{message: 'step {i}'}}}}")
    return "\n".join(lines).encode()


def test_a_long_chain_of_steps_is_checked_without_recursion() -> None:
    loaded = manifests.load_file("chain.yaml", _pipeline(pipeline.MAX_STEPS))

    assert loaded.errors == ()


def test_a_pipeline_with_too_many_steps_is_refused_at_the_steps_field() -> None:
    loaded = manifests.load_file("chain.yaml", _pipeline(pipeline.MAX_STEPS + 1))

    [error] = loaded.errors
    assert (error.line, error.field) == (5, "spec.steps")
    assert "at most 200" in error.message
