"""PostgreSQL access for the core: connections, the schema and its versioned migrations, and the
one LISTEN a process shares (:class:`Listener`).

The runtimes call ``migrate`` at start-up and the CLI reports ``status``; the SQL files live in
``nebula/db/migrations/`` as package data. Nothing here knows of kopf, FastAPI or the bots, and
nothing here opens a connection at import time.
"""

from nebula.db.connecting import KEEP, Pool, close_idle, connect
from nebula.db.embedded import EmbeddedPostgres, embedded_postgres
from nebula.db.listening import MISSED, Listener, Message, Missed, Subscriber
from nebula.db.migrating import Migration, MigrationState, discover, migrate, status

__all__ = [
    "KEEP",
    "MISSED",
    "EmbeddedPostgres",
    "Listener",
    "Message",
    "Migration",
    "MigrationState",
    "Missed",
    "Pool",
    "Subscriber",
    "close_idle",
    "connect",
    "discover",
    "embedded_postgres",
    "migrate",
    "status",
]
