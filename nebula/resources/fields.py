"""Constrained field types shared by every kind: names, quantities, durations, cron, images, URLs.

Pure data, no I/O. Each type is an ``Annotated`` alias that validates (and, where YAML may hand
us a number, coerces to text) and carries its own OpenAPI schema for the generated CRDs, so the
pydantic model and the CRD can never disagree on what a field accepts.
"""

from __future__ import annotations

import datetime
import decimal
import functools
import ipaddress
import re
import urllib.parse
import zoneinfo
from typing import Annotated, Any

import pydantic

__all__ = [
    "Cron",
    "DnsLabel",
    "DnsSubdomain",
    "Duration",
    "HostOrIp",
    "Hostname",
    "HttpUrl",
    "ImageRef",
    "LabelKey",
    "LabelValue",
    "Quantity",
    "Snowflake",
    "Timezone",
    "check_dns_label",
    "check_image",
    "parse_duration",
    "parse_quantity",
]

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS_LABEL_PATTERN = rf"^{_DNS_LABEL}$"
DNS_SUBDOMAIN_PATTERN = rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$"
_DNS_LABEL_RE = re.compile(DNS_LABEL_PATTERN)
_DNS_SUBDOMAIN_RE = re.compile(DNS_SUBDOMAIN_PATTERN)


def _as_text(value: Any) -> Any:
    """YAML turns ``size: 4`` or ``id: 1234`` into numbers; these fields are text on the wire."""
    if isinstance(value, bool):
        return value  # let the string validator refuse it: `true` is never a size or a name
    if isinstance(value, int | float | decimal.Decimal):
        return str(value)
    return value


def check_dns_label(value: str) -> str:
    if len(value) > 63 or not _DNS_LABEL_RE.match(value):
        raise ValueError(
            f"invalid name {value!r}: use at most 63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit (DNS-1123 label)"
        )
    return value


def _check_dns_subdomain(value: str) -> str:
    if len(value) > 253 or not _DNS_SUBDOMAIN_RE.match(value):
        raise ValueError(
            f"invalid name {value!r}: use lowercase letters, digits, '-' and '.', "
            "starting and ending with a letter or digit (DNS-1123 subdomain)"
        )
    return value


DnsLabel = Annotated[
    str,
    pydantic.AfterValidator(check_dns_label),
    pydantic.WithJsonSchema({"type": "string", "maxLength": 63, "pattern": DNS_LABEL_PATTERN}),
]
"""A DNS-1123 label: namespaces, names used in hostnames (services), step names."""

DnsSubdomain = Annotated[
    str,
    pydantic.AfterValidator(_check_dns_subdomain),
    pydantic.WithJsonSchema({"type": "string", "maxLength": 253, "pattern": DNS_SUBDOMAIN_PATTERN}),
]
"""A DNS-1123 subdomain: object names and references to them."""


# --- Labels ----------------------------------------------------------------------------------

_LABEL_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]"
_LABEL_KEY_RE = re.compile(rf"^({_DNS_LABEL}(\.{_DNS_LABEL})*/)?{_LABEL_NAME}$")
_LABEL_VALUE_RE = re.compile(rf"^({_LABEL_NAME})?$")


def _check_label_key(value: str) -> str:
    prefix, _, name = value.rpartition("/")
    if not _LABEL_KEY_RE.match(value) or len(prefix) > 253 or len(name) > 63:
        raise ValueError(
            f"invalid label key {value!r}: an optional DNS prefix and '/', then at most 63 "
            "letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        )
    return value


def _check_label_value(value: str) -> str:
    if len(value) > 63 or not _LABEL_VALUE_RE.match(value):
        raise ValueError(
            f"invalid label value {value!r}: at most 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    return value


LabelKey = Annotated[str, pydantic.AfterValidator(_check_label_key)]
LabelValue = Annotated[
    str, pydantic.BeforeValidator(_as_text), pydantic.AfterValidator(_check_label_value)
]


# --- Quantities ------------------------------------------------------------------------------

QUANTITY_PATTERN = r"^([0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
_QUANTITY_RE = re.compile(
    r"^(?P<number>[0-9]+(\.[0-9]*)?|\.[0-9]+)(?P<suffix>[A-Za-z]*|[eE][-+]?[0-9]+)$"
)
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL: dict[str, int | decimal.Decimal] = {
    "": 1, "m": decimal.Decimal("0.001"), "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
    "P": 10**15, "E": 10**18,
}  # fmt: skip


def parse_quantity(value: str) -> decimal.Decimal:
    """The value of a Kubernetes quantity (``24Gi``, ``1.5G``, ``500m``, ``1e3``) as a number.

    Raises ValueError for anything else, including negative quantities (no size is negative).
    """
    match = _QUANTITY_RE.match(value.strip())
    if not match:
        raise ValueError(
            f"invalid quantity {value!r}: expected a number with an optional unit such as "
            "'512Mi', '24Gi' or '1.5G'"
        )
    number, suffix = decimal.Decimal(match["number"]), match["suffix"]
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix in _DECIMAL:
        return number * _DECIMAL[suffix]
    if suffix[:1] in ("e", "E"):
        return number.scaleb(int(suffix[1:]))
    raise ValueError(
        f"invalid quantity {value!r}: unknown unit {suffix!r} "
        "(use Ki, Mi, Gi, Ti, Pi, Ei, or k, M, G, T, P, E, or m)"
    )


@functools.lru_cache(maxsize=4096)
def _check_quantity(value: str) -> str:
    parse_quantity(value)
    return value


Quantity = Annotated[
    str,
    pydantic.BeforeValidator(_as_text),
    pydantic.AfterValidator(_check_quantity),
    pydantic.WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
        }
    ),
]
"""A Kubernetes quantity (``24Gi``); kept as written, compared through :func:`parse_quantity`."""


# --- Durations -------------------------------------------------------------------------------

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_DURATION_RE = re.compile(DURATION_PATTERN)
_DURATION_PART_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@functools.lru_cache(maxsize=1024)
def parse_duration(value: str) -> datetime.timedelta:
    """A Go-style duration (``30s``, ``5m``, ``1h30m``, ``250ms``) as a timedelta."""
    if not _DURATION_RE.match(value):
        raise ValueError(
            f"invalid duration {value!r}: expected a number and a unit (ms, s, m, h), "
            "such as '30s', '5m' or '1h30m'"
        )
    seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART_RE.findall(value))
    return datetime.timedelta(seconds=seconds)


def _check_duration(value: str) -> str:
    if parse_duration(value) <= datetime.timedelta(0):
        raise ValueError(f"invalid duration {value!r}: must be longer than zero")
    return value


Duration = Annotated[
    str,
    pydantic.AfterValidator(_check_duration),
    pydantic.WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN}),
]


# --- Schedules -------------------------------------------------------------------------------

_CRON_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# name, lowest, highest, names for the values from lowest on
_CRON_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
_CRON_ITEM_RE = re.compile(r"^(\*|(\w+)(?:-(\w+))?)(?:/(\d+))?$")


def _cron_value(text: str, low: int, high: int, names: tuple[str, ...], field: str) -> int:
    if text.isdigit():
        value = int(text)
    elif text.lower() in names:
        value = names.index(text.lower()) + low
    else:
        raise ValueError(f"{field} {text!r} is not a number" + (" or a name" if names else ""))
    if not low <= value <= high:
        raise ValueError(f"{field} {value} is out of range {low}-{high}")
    return value


def _check_cron_field(text: str, field: str, low: int, high: int, names: tuple[str, ...]) -> None:
    for item in text.split(","):
        match = _CRON_ITEM_RE.match(item)
        if not match:
            raise ValueError(f"{field} {item!r} is not '*', a value, a range or a step")
        if match[2] is not None:
            first = _cron_value(match[2], low, high, names, field)
            if match[3] is not None and _cron_value(match[3], low, high, names, field) < first:
                raise ValueError(f"{field} range {match[1]!r} runs backwards")
        if match[4] is not None and not 1 <= int(match[4]) <= high:
            raise ValueError(f"{field} step {match[4]} is out of range 1-{high}")


@functools.lru_cache(maxsize=1024)
def _check_cron(value: str) -> str:
    if value.strip() in _CRON_MACROS:
        return value
    parts = value.split()
    if len(parts) != 5:
        raise ValueError(
            f"invalid cron expression {value!r}: expected five fields "
            "(minute hour day-of-month month day-of-week) such as '0 9 * * 1', or @daily"
        )
    try:
        for part, (field, low, high, names) in zip(parts, _CRON_FIELDS, strict=True):
            _check_cron_field(part, field, low, high, names)
    # Say which field is wrong, inside the message about the whole expression.
    except ValueError as error:
        raise ValueError(f"invalid cron expression {value!r}: {error}") from None
    return value


Cron = Annotated[str, pydantic.AfterValidator(_check_cron)]
"""A five-field cron schedule (Vixie cron: ranges, lists, steps, month and day names) or a macro."""


def _check_timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    # Not an IANA name: ZoneInfoNotFoundError; a path-like or malformed key: ValueError.
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {value!r}: use an IANA name such as 'Europe/Berlin' or 'UTC'"
        ) from None
    return value


Timezone = Annotated[str, pydantic.AfterValidator(_check_timezone)]


# --- Images, hosts, URLs ---------------------------------------------------------------------

# The grammar of github.com/distribution/reference, spelled out.
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
IMAGE_PATTERN = (
    rf"^(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*(?::{_TAG})?(?:@{_DIGEST})?$"
)
_IMAGE_RE = re.compile(IMAGE_PATTERN)


def check_image(value: str) -> str:
    if len(value) > 255 or not _IMAGE_RE.match(value):
        raise ValueError(
            f"invalid image reference {value!r}: expected [registry/]name[:tag][@digest] "
            "with a lowercase name, such as 'ghcr.io/acme/dashboard:1.4.2' or 'redis:7'"
        )
    return value


ImageRef = Annotated[
    str,
    pydantic.AfterValidator(check_image),
    pydantic.WithJsonSchema({"type": "string", "maxLength": 255, "pattern": IMAGE_PATTERN}),
]

_HOSTNAME_RE = re.compile(
    r"^(\*\.)?([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]*[a-z0-9])?$", re.IGNORECASE
)


def _check_hostname(value: str) -> str:
    if len(value) > 253 or not _HOSTNAME_RE.match(value) or ".." in value:
        raise ValueError(
            f"invalid hostname {value!r}: expected a DNS name such as 'dash.example.com'"
        )
    return value


def _check_host_or_ip(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    # Not an IP literal: it must then be a DNS name (a MagicDNS or LAN name).
    except ValueError:
        if value.startswith("*"):
            raise ValueError(f"invalid address {value!r}: wildcards name no machine") from None
        try:
            _check_hostname(value)
        except ValueError:
            raise ValueError(
                f"invalid address {value!r}: expected an IP address or a DNS name"
            ) from None
    return value


Hostname = Annotated[str, pydantic.AfterValidator(_check_hostname)]
"""A DNS name a service is published under; ``*.example.com`` is allowed."""

HostOrIp = Annotated[str, pydantic.AfterValidator(_check_host_or_ip)]
"""How a machine is reached: an IP address or a DNS name."""


def _check_http_url(value: str) -> str:
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"invalid URL {value!r}: expected an http:// or https:// URL")
    if parsed.username or parsed.password:
        raise ValueError(
            f"invalid URL {value!r}: credentials do not belong in a URL in Git; use a secretRef"
        )
    return value


HttpUrl = Annotated[
    str,
    pydantic.AfterValidator(_check_http_url),
    pydantic.WithJsonSchema({"type": "string", "pattern": "^https?://"}),
]


def _check_snowflake(value: str) -> str:
    if not value.isdigit() or not 15 <= len(value) <= 21:
        raise ValueError(
            f"invalid Discord id {value!r}: expected a snowflake of 15 to 21 digits "
            '(quote it in YAML: id: "123456789012345678")'
        )
    return value


Snowflake = Annotated[
    str,
    pydantic.BeforeValidator(_as_text),
    pydantic.AfterValidator(_check_snowflake),
    pydantic.WithJsonSchema({"type": "string", "pattern": "^[0-9]{15,21}$"}),
]
"""A Discord id (guild, channel, role, user)."""
