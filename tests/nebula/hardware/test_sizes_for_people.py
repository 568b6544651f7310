"""Sizes as people read them, and reported sizes against declared ones, with the shortfall real
hardware reports."""

from __future__ import annotations

import pytest

from nebula.hardware import quantities


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("24683584Ki", "23.5Gi"),  # a MemTotal, as the agent stores it
        ("264212084Ki", "252Gi"),
        ("24564Mi", "24Gi"),  # nvidia-smi's total of an RTX 4090
        ("7982Mi", "7.8Gi"),
        ("12272Mi", "12Gi"),  # rocm-smi's bytes of an RX 6700 XT
        ("116Mi", "116Mi"),
        ("1536", "1.5Ki"),
        ("4Ti", "4Ti"),
        ("4.9G", "4.6Gi"),
    ],
)
def test_a_stored_size_is_shown_rounded_to_one_decimal_in_the_largest_unit(
    stored: str, shown: str
) -> None:
    # Bug: pages showed 24683584Ki and 264212084Ki as stored; one helper shows every size.
    assert quantities.human(stored) == shown


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("24564Mi", "24Gi (24564Mi)"),
        ("24Gi", "24Gi (24576Mi)"),
        ("7982Mi", "7.8Gi (7982Mi)"),
        ("24683584Ki", "23.5Gi (24105Mi)"),
        ("512Mi", "512Mi"),
    ],
)
def test_an_exact_size_adds_the_whole_mib_so_two_sizes_never_read_the_same(
    stored: str, shown: str
) -> None:
    # Bug: "declared 24Gi VRAM ... found NVIDIA GeForce RTX 4090 with 24Gi": rounded alone,
    # 24564Mi reads as the 24Gi it was compared with.
    assert quantities.human(stored, exact=True) == shown


@pytest.mark.parametrize(
    ("found", "declared", "meets"),
    [
        # Whole cards as nvidia-smi reports them, against their nominal size.
        ("24564Mi", "24Gi", True),  # RTX 4090
        ("7982Mi", "8Gi", True),  # RTX 3070
        ("11019Mi", "11Gi", True),  # RTX 2080 Ti
        ("12045Mi", "12Gi", True),  # RTX 3060
        ("3911Mi", "4Gi", True),  # GTX 1650
        ("81251Mi", "80Gi", True),  # A100 80GB
        # The sizes cards come in stay apart.
        ("11019Mi", "12Gi", False),
        ("10240Mi", "11Gi", False),
        ("3019Mi", "4Gi", False),  # GTX 1060 3GB
        ("20Gi", "24Gi", False),
        # RAM as the kernel reports it (MemTotal of a 32 GiB server, of this test machine).
        ("32818656Ki", "32Gi", True),
        ("24684096Ki", "24Gi", True),
        ("24684096Ki", "32Gi", False),
        # More than declared is always enough.
        ("64Gi", "32Gi", True),
    ],
)
def test_a_reported_size_meets_a_declared_one_when_it_lacks_no_more_than_the_usual_shortfall(
    found: str, declared: str, meets: bool
) -> None:
    assert quantities.meets(found, declared=declared) is meets
