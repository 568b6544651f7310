"""The FastAPI web UI and JSON API: read views of every kind, and the approval queue."""
