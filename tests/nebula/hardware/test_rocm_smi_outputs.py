"""Real ``rocm-smi --json`` outputs become the AMD GPUs they describe; no ROCm means no AMD GPU."""

from __future__ import annotations

import pytest

from nebula.hardware import amd, commands
from nebula.resources.nebula_node import GpuInfo
from tests.nebula.hardware.replay import ReplayRunner, fixture, printed


def test_consumer_card_gives_its_series_vram_driver_load_and_edge_temperature() -> None:
    gpus = amd.parse_json(fixture("rocm-smi-json.rx-6700-xt.json"))

    assert gpus == [
        GpuInfo(
            index=0,
            vendor="amd",
            model="Navi 22 [Radeon RX 6700/6700 XT / 6800M]",
            vram_total="12272Mi",  # 12868124672 bytes
            vram_used="1535896Ki",  # 1572757504 bytes
            driver="6.3.6",
            utilization=0,
            temperature=45,
        )
    ]


def test_four_card_machine_gives_every_card_in_card_order() -> None:
    gpus = amd.parse_json(fixture("rocm-smi-json.4x-mi100.json"))

    assert [gpu.index for gpu in gpus] == [0, 1, 2, 3]
    assert {gpu.model for gpu in gpus} == {"Arcturus GL-XL [Instinct MI100]"}
    assert {gpu.vram_total for gpu in gpus} == {"32752Mi"}  # 34342961152 bytes
    assert {gpu.vram_used for gpu in gpus} == {"6592Ki"}  # 6750208 bytes
    assert [gpu.temperature for gpu in gpus] == [53, 55, 54, 51]
    assert {(gpu.driver, gpu.utilization, gpu.cuda_version) for gpu in gpus} == {("6.3.6", 0, None)}


def test_lines_printed_before_the_json_are_skipped() -> None:
    # rocm-smi prints its warnings on stdout, ahead of the JSON object.
    text = "WARNING: (a line rocm-smi printed before its JSON)\n"
    text += fixture("rocm-smi-json.rx-6700-xt.json")

    assert [gpu.model for gpu in amd.parse_json(text)] == [
        "Navi 22 [Radeon RX 6700/6700 XT / 6800M]"
    ]


def test_detect_runs_the_one_rocm_smi_query() -> None:
    runner = ReplayRunner({amd.COMMAND: printed(fixture("rocm-smi-json.4x-mi100.json"))})

    assert len(amd.detect(runner, timeout=5)) == 4
    assert runner.calls == [amd.COMMAND]


def test_missing_rocm_smi_means_no_amd_gpu_and_no_failure() -> None:
    assert amd.detect(ReplayRunner(), timeout=5) == []


def test_rocm_without_the_amdgpu_driver_means_no_amd_gpu() -> None:
    # rocm-smi exits 0 with nothing on stdout and this line on stderr when amdgpu is not loaded.
    silent = commands.CommandResult(
        returncode=0,
        stdout="",
        stderr="ERROR:root:Driver not initialized (amdgpu not found in modules)\n",
    )

    assert amd.detect(ReplayRunner({amd.COMMAND: silent}), timeout=5) == []


def test_output_that_is_not_json_is_a_failure_that_quotes_it() -> None:
    runner = ReplayRunner({amd.COMMAND: printed("(not JSON)\n", returncode=1)})

    with pytest.raises(commands.ProbeFailed, match="no JSON object in rocm-smi output"):
        amd.detect(runner, timeout=5)
