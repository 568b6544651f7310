"""One typed settings object for every process, read from the environment (``NEBULA_*``).

Runtimes build it once at start-up and pass it down; the core never reads the environment itself.
"""

from __future__ import annotations

import pathlib

import pydantic
import pydantic_settings

__all__ = ["Settings"]


class Settings(pydantic_settings.BaseSettings):
    """Where Nebula keeps its state and how it reaches its services."""

    model_config = pydantic_settings.SettingsConfigDict(env_prefix="NEBULA_", extra="ignore")

    # None means "start the embedded PostgreSQL under state_dir" (the `nebula up` default).
    database_url: str | None = pydantic.Field(
        default=None,
        validation_alias=pydantic.AliasChoices("NEBULA_DATABASE_URL", "DATABASE_URL"),
    )
    # None means "use the in-process event bus" (one process only).
    redis_url: str | None = pydantic.Field(
        default=None,
        validation_alias=pydantic.AliasChoices("NEBULA_REDIS_URL", "REDIS_URL"),
    )
    state_dir: pathlib.Path = pathlib.Path(".nebula")
    # The bearer token remote node agents present to the web server; None: `nebula up` makes
    # one in its state folder, `nebula serve` takes none.
    agent_token: str | None = None
    # Who may sign in to the web UI; None: it is open to anyone who can reach it.
    users_file: pathlib.Path | None = None
    # The NebulaNode this machine's agent reports as; None: the machine's host name.
    node_name: str | None = None
    # Who proposes changes from the CLI (`Name <email>`); None: the login name.
    user: str | None = None
