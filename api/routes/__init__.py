"""The web runtime's routers, one module per concern; :func:`api.app.create_app` mounts them.

``overview`` serves the status page, ``resources`` and ``sync`` the read-only JSON API,
``hooks`` the git webhook, ``health`` the probe. Routes hold no business rules: they parse at
the boundary, call the core, and turn its answers and errors into HTTP.
"""

from api.routes import health, hooks, overview, resources, sync

__all__ = ["health", "hooks", "overview", "resources", "sync"]
