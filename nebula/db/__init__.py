"""PostgreSQL access for the core: the schema and its versioned migrations.

The runtimes call ``migrate`` at start-up and the CLI reports ``status``; the SQL files live in
``nebula/db/migrations/`` as package data. Nothing here knows of kopf, FastAPI or the bots, and
nothing here opens a connection at import time.
"""

from nebula.db.connecting import KEEP, Pool, close_idle, connect
from nebula.db.embedded import embedded_postgres
from nebula.db.migrating import Migration, MigrationState, discover, migrate, status

__all__ = [
    "KEEP",
    "Migration",
    "MigrationState",
    "Pool",
    "close_idle",
    "connect",
    "discover",
    "embedded_postgres",
    "migrate",
    "status",
]
