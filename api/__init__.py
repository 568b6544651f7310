"""The FastAPI web UI and JSON API: read views of every kind, and the approval queue."""

from api.app import create_app

__all__ = ["create_app"]
