"""The Jinja2 environment of the server-rendered pages: where templates live, and their filters.

Built once by :func:`api.app.create_app` and handed to the page routes through
:mod:`api.deps`. Autoescaping is always on: every string on a page came from Git, a commit or a
controller, and none of it is trusted HTML. The filters only format; they never look anything
up.
"""

from __future__ import annotations

import datetime
import pathlib
import re

import jinja2
import markupsafe
import starlette.templating

from nebula import hardware

__all__ = [
    "STATIC",
    "TEMPLATES",
    "WHOLE_UP_TO",
    "ago",
    "breakable",
    "cell",
    "object_name",
    "short_revision",
    "size",
    "templates",
    "timestamp",
]

_FULL_REVISION = re.compile(r"[0-9a-f]{40}")
WHOLE_UP_TO = 24
"""The longest part of a name a table keeps on one line (``default/`` and ``stream-bot`` are)."""

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


def breakable(text: str) -> markupsafe.Markup:
    """``text`` escaped, free to wrap after each ``/`` and nowhere inside a word.

    For names (``default/stream-bot``), images and URLs in narrow table cells: the browser
    breaks them where a person would, and the table never squeezes them letter by letter.
    """
    return markupsafe.Markup("/<wbr>").join(markupsafe.escape(text).split("/"))


def object_name(path: str) -> markupsafe.Markup:
    """An object's ``namespace/name`` for a table's name column: free to wrap after the ``/``,
    each part kept whole (``stream-bot`` never becomes ``stream-`` over ``bot``) unless it is
    longer than :data:`WHOLE_UP_TO` characters: such a part may wrap after a hyphen, or it
    would push the table past its card."""
    parts = path.split("/")
    words = [f"{part}/" for part in parts[:-1]] + parts[-1:]
    return markupsafe.Markup("<wbr>").join(
        markupsafe.Markup('<span class="word">{0}</span>').format(word)
        if len(word) <= WHOLE_UP_TO
        else markupsafe.escape(word)
        for word in words
    )


def cell(value: str | None) -> markupsafe.Markup:
    """A printer column's value in a table cell: an em dash when empty, a full commit as its
    first twelve digits (the whole in its title), anything else :func:`breakable`."""
    if not value:
        return markupsafe.Markup("—")
    if _FULL_REVISION.fullmatch(value):
        return markupsafe.Markup('<code title="{0}">{1}</code>').format(value, value[:12])
    return breakable(value)


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
    environment.filters["breakable"] = breakable
    environment.filters["cell"] = cell
    environment.filters["object_name"] = object_name
    return starlette.templating.Jinja2Templates(env=environment)
