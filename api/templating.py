"""The Jinja2 environment of the server-rendered pages: where templates live, and their filters.

Built once by :func:`api.app.create_app` and handed to the page routes through
:mod:`api.deps`. Autoescaping is always on: every string on a page came from Git, a commit or a
controller, and none of it is trusted HTML. The filters only format; they never look anything
up.
"""

from __future__ import annotations

import datetime
import pathlib

import jinja2
import starlette.templating

from nebula import hardware

__all__ = ["STATIC", "TEMPLATES", "ago", "short_revision", "size", "templates", "timestamp"]

TEMPLATES = pathlib.Path(__file__).parent / "templates"
"""The page templates, shipped as package data."""
STATIC = pathlib.Path(__file__).parent / "static"
"""The stylesheet (no scripts, no build step), shipped as package data."""


def short_revision(revision: str | None) -> str:
    """A commit as people quote it: its first seven hex digits, or an em dash when unknown."""
    return revision[:7] if revision else "—"


def size(quantity: str | None) -> str:
    """A reported size as every page shows it (``23.5Gi``, see ``nebula.hardware.human``), or
    an em dash when unknown; the stored quantity stays exact in the status and the JSON."""
    if quantity is None:
        return "—"
    return hardware.human(quantity)


def timestamp(when: datetime.datetime | None) -> str:
    """A time in UTC to the minute (``2025-06-01 14:03 UTC``), or an em dash when unknown."""
    if when is None:
        return "—"
    return when.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def ago(when: datetime.datetime | None, now: datetime.datetime) -> str:
    """How long before ``now`` a time was, roughly (``5 min ago``); empty when unknown."""
    if when is None:
        return ""
    seconds = int((now - when).total_seconds())
    if seconds < 60:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return ""  # unreachable: seconds >= 60 here


def templates() -> starlette.templating.Jinja2Templates:
    """A fresh template renderer with the pages' filters; safe to build once per app."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.filters["short"] = short_revision
    environment.filters["timestamp"] = timestamp
    environment.filters["ago"] = ago
    environment.filters["size"] = size
    return starlette.templating.Jinja2Templates(env=environment)
