"""One way to open a PostgreSQL connection: a server that does not answer is a transient error.

Called by every module that talks to the database directly (history, heartbeats, the audit
log, change requests); the resource store uses a pool of its own.
"""

from __future__ import annotations

from typing import Any

import psycopg

from nebula import errors

__all__ = ["connect"]


def connect(conninfo: str) -> psycopg.Connection[Any]:
    """An autocommit connection; raises StoreUnavailable when PostgreSQL is down or refuses."""
    try:
        return psycopg.connect(conninfo, autocommit=True)
    # The server is down, refused us, or the address is wrong: the same call may work later.
    except psycopg.OperationalError as error:
        raise errors.StoreUnavailable(f"PostgreSQL did not answer: {error}") from None
