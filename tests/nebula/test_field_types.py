"""The constrained field types accept what Kubernetes and cron accept, and explain refusals."""

from __future__ import annotations

import datetime
import decimal

import croniter
import pydantic
import pytest

from nebula.resources import fields


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("24Gi", 24 * 2**30),
        ("512Mi", 512 * 2**20),
        ("1.5G", 1_500_000_000),
        ("500m", decimal.Decimal("0.5")),
        ("1e3", 1000),
        ("4", 4),
        (".5Ki", 512),
    ],
)
def test_quantities_parse_like_kubernetes(text: str, value: decimal.Decimal | int) -> None:
    assert fields.parse_quantity(text) == value


@pytest.mark.parametrize("text", ["lots", "-4Gi", "12XB", "4 Gi", "", "Gi", "1.2.3Gi"])
def test_bad_quantities_are_refused_with_an_example(text: str) -> None:
    with pytest.raises(ValueError, match="quantity"):
        fields.parse_quantity(text)


def test_a_number_from_yaml_is_a_quantity_too() -> None:
    adapter = pydantic.TypeAdapter(fields.Quantity)

    assert adapter.validate_python(8) == "8"
    with pytest.raises(pydantic.ValidationError):
        adapter.validate_python(True)


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25)]
)
def test_durations_parse_like_go(text: str, seconds: float) -> None:
    assert fields.parse_duration(text) == datetime.timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["30", "5 minutes", "1d", "-5s", "0s"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="duration"):
        pydantic.TypeAdapter(fields.Duration).validate_python(text)


CRONS = [
    "0 9 * * 1", "*/5 * * * *", "0 0 1 jan-mar mon,fri", "30 4 1,15 * 5", "0 22 * * 1-5",
    "0 0 * * 0", "0 0 * * 7", "15 14 1 * *", "0-59/15 * * * *", "5 4 * * sun", "0 */2 * * *",
]  # fmt: skip
BAD_CRONS = ["0 25 * * *", "60 * * * *", "0 9 * * 8", "0 9 * *", "0 9 * * * *", "a b c d e",
             "*/0 * * * *", "0 0 32 * *", "0 0 * 13 *", "0 0 * foo *"]  # fmt: skip


@pytest.mark.parametrize("text", CRONS)
def test_cron_expressions_that_croniter_accepts_are_accepted(text: str) -> None:
    assert croniter.croniter.is_valid(text)
    assert pydantic.TypeAdapter(fields.Cron).validate_python(text) == text


@pytest.mark.parametrize("text", BAD_CRONS)
def test_cron_expressions_that_croniter_refuses_are_refused(text: str) -> None:
    assert not croniter.croniter.is_valid(text) or len(text.split()) != 5
    with pytest.raises(pydantic.ValidationError, match="cron expression"):
        pydantic.TypeAdapter(fields.Cron).validate_python(text)


def test_a_backwards_range_is_refused_although_croniter_would_wrap_it() -> None:
    # croniter reads "5-2" as 5..59,0..2; Vixie cron, and we, refuse it as a likely typo.
    with pytest.raises(pydantic.ValidationError, match="runs backwards"):
        pydantic.TypeAdapter(fields.Cron).validate_python("5-2 * * * *")


def test_a_cron_error_names_the_field_and_its_range() -> None:
    with pytest.raises(pydantic.ValidationError, match="hour 25 is out of range 0-23"):
        pydantic.TypeAdapter(fields.Cron).validate_python("0 25 * * *")


@pytest.mark.parametrize(
    "image",
    [
        "redis:7",
        "ghcr.io/acme/dashboard:1.4.2",
        "localhost:5000/tools/caddy",
        "ollama/ollama@sha256:" + "a" * 64,
        "docker.io/library/postgres:16-alpine",
    ],
)
def test_image_references_follow_the_distribution_grammar(image: str) -> None:
    assert pydantic.TypeAdapter(fields.ImageRef).validate_python(image) == image


@pytest.mark.parametrize("image", ["Redis:7", "ghcr.io/acme/dash board", "redis:", "-x/y", ""])
def test_bad_image_references_are_refused(image: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="image reference"):
        pydantic.TypeAdapter(fields.ImageRef).validate_python(image)


@pytest.mark.parametrize(
    ("value", "ok"),
    [("100.101.102.103", True), ("home-gpu.tail0123.ts.net", True), ("::1", True),
     ("*.example.com", False), ("bad host", False)],
)  # fmt: skip
def test_addresses_are_ips_or_dns_names(value: str, ok: bool) -> None:
    adapter = pydantic.TypeAdapter(fields.HostOrIp)
    if ok:
        assert adapter.validate_python(value) == value
    else:
        with pytest.raises(pydantic.ValidationError, match="address"):
            adapter.validate_python(value)


def test_urls_with_credentials_are_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="credentials"):
        pydantic.TypeAdapter(fields.HttpUrl).validate_python("https://user:pw@example.com/x")


def test_discord_ids_from_yaml_numbers_stay_exact() -> None:
    assert pydantic.TypeAdapter(fields.Snowflake).validate_python(123456789012345678) == (
        "123456789012345678"
    )
