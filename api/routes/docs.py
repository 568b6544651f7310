"""``GET /api/docs``: the interactive API documentation (Swagger UI), working without internet.

FastAPI's own docs page loads Swagger UI from a CDN, so a homelab without internet (or a
browser that blocks third parties) gets a blank page. This one is FastAPI's self-hosted docs
recipe: the same page, its script, stylesheet and icon served by this app from
:data:`ASSETS` (the files the ``fastapi-offline`` wheel ships), mounted by
:func:`api.app.create_app` at :data:`ASSETS_PATH`. The page stays behind the sign-in gate like
every page; its assets are static files, public like the stylesheet. Nothing here writes.
"""

from __future__ import annotations

import importlib.resources
import pathlib

import fastapi
import fastapi.openapi.docs
import fastapi.responses

__all__ = ["ASSETS", "ASSETS_NAME", "ASSETS_PATH", "router", "swagger_ui_html"]

router = fastapi.APIRouter()

ASSETS = pathlib.Path(str(importlib.resources.files("fastapi_offline") / "static"))
"""Swagger UI's script and stylesheet as the ``fastapi-offline`` wheel ships them (its
``static/`` folder; we use its files only, not its app factory)."""
ASSETS_PATH = "/static/docs"
"""Where the app serves :data:`ASSETS`: under ``/static/``, which the sign-in gate lets through."""
ASSETS_NAME = "docs_assets"
"""The route name of the mounted assets, for ``url_for``."""


@router.get("/api/docs", name="swagger_ui_html", include_in_schema=False)
def swagger_ui_html(request: fastapi.Request) -> fastapi.responses.HTMLResponse:
    """Swagger UI over this app's OpenAPI document, every URL on this server."""
    root = request.scope.get("root_path", "")

    def asset(name: str) -> str:
        return request.url_for(ASSETS_NAME, path=name).path

    return fastapi.openapi.docs.get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} · API",
        swagger_js_url=asset("swagger-ui-bundle.js"),
        swagger_css_url=asset("swagger-ui.css"),
        swagger_favicon_url=asset("favicon.png"),
    )
