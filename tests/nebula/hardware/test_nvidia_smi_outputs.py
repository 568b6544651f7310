"""Real ``nvidia-smi`` outputs become the GPUs they describe; a failure is no GPU, not a crash."""

from __future__ import annotations

import pytest

from nebula.hardware import commands, nvidia
from nebula.resources.nebula_node import GpuInfo
from tests.nebula.hardware.replay import (
    DRIVER_NOT_LOADED,
    ReplayRunner,
    fixture,
    printed,
)


def test_consumer_card_gives_its_name_vram_driver_cuda_load_and_temperature() -> None:
    gpus = nvidia.parse_xml(fixture("nvidia-smi-q-x.rtx-3060.xml"))

    assert gpus == [
        GpuInfo(
            index=0,
            vendor="nvidia",
            model="NVIDIA GeForce RTX 3060",
            vram_total="12Gi",  # 12288 MiB
            vram_used="116Mi",
            driver="570.124.04",
            cuda_version="12.8",
            utilization=0,
            temperature=42,
        )
    ]


def test_data_centre_card_in_mig_mode_counts_once_with_its_whole_memory() -> None:
    # The A100's four MIG slices each repeat <fb_memory_usage> (19968 MiB); the card's own
    # memory is the direct child of <gpu>, and its load is N/A while MIG is on.
    gpus = nvidia.parse_xml(fixture("nvidia-smi-q-x.a100-sxm4-80gb-mig.xml"))

    assert gpus == [
        GpuInfo(
            index=0,
            vendor="nvidia",
            model="NVIDIA A100-SXM4-80GB",
            vram_total="80Gi",  # 81920 MiB
            vram_used="50Mi",
            driver="535.54.03",
            cuda_version="12.2",
            utilization=None,
            temperature=27,
        )
    ]


def test_two_card_machine_gives_both_cards_in_order() -> None:
    gpus = nvidia.parse_xml(fixture("nvidia-smi-q-x.2x-rtx-2080.xml"))

    assert [gpu.index for gpu in gpus] == [0, 1]
    assert {gpu.model for gpu in gpus} == {"NVIDIA GeForce RTX 2080"}
    assert [gpu.vram_total for gpu in gpus] == ["8Gi", "8Gi"]  # 8192 MiB each
    assert [gpu.vram_used for gpu in gpus] == ["1Mi", "1Mi"]
    assert {(gpu.driver, gpu.cuda_version) for gpu in gpus} == {("590.44.01", "13.1")}
    assert [(gpu.utilization, gpu.temperature) for gpu in gpus] == [(0, 15), (0, 15)]


def test_old_trimmed_output_without_driver_lines_leaves_driver_and_cuda_unknown() -> None:
    gpus = nvidia.parse_xml(fixture("nvidia-smi-q-x.gtx-1070-ti.xml"))

    assert gpus == [
        GpuInfo(
            index=0,
            vendor="nvidia",
            model="GeForce GTX 1070 Ti",
            vram_total="4Gi",
            vram_used="42Mi",
            driver=None,
            cuda_version=None,
            utilization=0,
            temperature=39,
        )
    ]


def test_detect_reads_the_xml_query_of_the_installed_tool() -> None:
    runner = ReplayRunner({nvidia.XML_COMMAND: printed(fixture("nvidia-smi-q-x.rtx-3060.xml"))})

    gpus = nvidia.detect(runner, timeout=5)

    assert [gpu.model for gpu in gpus] == ["NVIDIA GeForce RTX 3060"]
    assert runner.calls == [nvidia.XML_COMMAND]


def test_missing_nvidia_smi_means_no_nvidia_gpu_and_no_failure() -> None:
    assert nvidia.detect(ReplayRunner(), timeout=5) == []


def test_driver_that_does_not_answer_gives_no_gpu_and_a_failure_in_its_own_words() -> None:
    text = fixture("nvidia-smi.no-driver.txt")
    runner = ReplayRunner({nvidia.XML_COMMAND: printed(text, returncode=DRIVER_NOT_LOADED)})

    with pytest.raises(commands.ProbeFailed) as failure:
        nvidia.detect(runner, timeout=5)

    expected = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
    assert str(failure.value) == expected


def test_no_devices_found_is_a_fact_not_a_failure() -> None:
    # nvidia-smi's message when the driver is loaded but no GPU is visible (e.g. a container
    # started without --gpus), exit status 6 ("A query to find an object was unsuccessful").
    runner = ReplayRunner({nvidia.XML_COMMAND: printed("No devices were found\n", returncode=6)})

    assert nvidia.detect(runner, timeout=5) == []


def test_a_hung_nvidia_smi_is_reported_as_a_timeout() -> None:
    runner = ReplayRunner({nvidia.XML_COMMAND: commands.CommandTimedOut("no answer within 5s")})

    with pytest.raises(commands.CommandTimedOut):
        nvidia.detect(runner, timeout=5)


def test_truncated_xml_falls_back_to_the_csv_query() -> None:
    # A real output cut short, as when the tool is killed mid-write; the CSV rows are this
    # same card's values in the query's noheader,nounits form.
    truncated = fixture("nvidia-smi-q-x.rtx-3060.xml")[:5000]
    rows = "0, NVIDIA GeForce RTX 3060, 12288, 116, 570.124.04, 0, 42\n"
    runner = ReplayRunner(
        {nvidia.XML_COMMAND: printed(truncated), nvidia.CSV_COMMAND: printed(rows)}
    )

    gpus = nvidia.detect(runner, timeout=5)

    assert runner.calls == [nvidia.XML_COMMAND, nvidia.CSV_COMMAND]
    assert gpus == [
        GpuInfo(
            index=0,
            vendor="nvidia",
            model="NVIDIA GeForce RTX 3060",
            vram_total="12Gi",
            vram_used="116Mi",
            driver="570.124.04",
            cuda_version=None,  # no query field carries it
            utilization=0,
            temperature=42,
        )
    ]


def test_unreadable_xml_and_failing_csv_name_both_reasons() -> None:
    runner = ReplayRunner(
        {
            nvidia.XML_COMMAND: printed("<nvidia_smi_log><gpu>"),
            nvidia.CSV_COMMAND: printed("Unknown Error\n", returncode=15),
        }
    )

    with pytest.raises(commands.ProbeFailed) as failure:
        nvidia.detect(runner, timeout=5)

    assert str(failure.value).startswith("unreadable XML")
    assert str(failure.value).endswith("CSV query: Unknown Error")


def test_csv_values_nvidia_smi_cannot_tell_become_unknown_not_zero() -> None:
    # Both spellings nvidia-smi uses in CSV: "[N/A]" and "[Not Supported]".
    rows = "1, Tesla T4, 15360, [N/A], 515.105.01, [Not Supported], [N/A]\n"

    (gpu,) = nvidia.parse_csv(rows)

    assert (gpu.index, gpu.model, gpu.vram_total) == (1, "Tesla T4", "15Gi")
    assert (gpu.vram_used, gpu.utilization, gpu.temperature) == (None, None, None)


def test_csv_with_its_header_and_units_reads_the_same() -> None:
    text = (
        "index, name, memory.total [MiB], memory.used [MiB], driver_version, "
        "utilization.gpu [%], temperature.gpu\n"
        "0, NVIDIA GeForce RTX 3060, 12288 MiB, 116 MiB, 570.124.04, 0 %, 42\n"
    )

    (gpu,) = nvidia.parse_csv(text)

    assert (gpu.vram_total, gpu.vram_used, gpu.utilization, gpu.temperature) == (
        "12Gi",
        "116Mi",
        0,
        42,
    )


def test_csv_row_of_the_wrong_width_is_refused_with_the_row() -> None:
    with pytest.raises(ValueError, match="expected 7 columns, got 2"):
        nvidia.parse_csv("0, NVIDIA GeForce RTX 3060\n")


def test_text_that_is_not_nvidia_smi_xml_is_refused() -> None:
    with pytest.raises(ValueError, match="expected <nvidia_smi_log>"):
        nvidia.parse_xml("<rocm/>")
