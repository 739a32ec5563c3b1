"""/docs (Swagger UI) and /redoc (ReDoc) served from this server: their files come from
installed packages (``swagger-ui-py``, ``fastapi-standalone-docs``), not a CDN, so the
pages work where the browser has no internet access."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs/assets"
REDOC_ASSETS = "/redoc/assets"


def _package_files(package: str, *parts: str) -> Path | None:
    """A folder of an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)


def swagger_ui_files() -> Path | None:
    """Where the installed Swagger UI keeps its files."""
    static = _package_files("swagger_ui", "static")
    return static if static and (static / "swagger-ui-bundle.js").is_file() else None


def redoc_files() -> Path | None:
    """Where the installed ReDoc standalone bundle is."""
    static = _package_files("fastapi_standalone_docs", "static", "redoc")
    return static if static and (static / "redoc.standalone.js").is_file() else None


def install(app: FastAPI, title: str) -> None:
    """Serve /docs and /redoc (and their assets) from the installed files."""
    files = swagger_ui_files()
    assert files is not None, "swagger-ui-py is a dependency of pageholder"
    redoc = redoc_files()
    assert redoc is not None, "fastapi-standalone-docs is a dependency of pageholder"
    app.mount(ASSETS, StaticFiles(directory=files), name="docs-assets")
    app.mount(REDOC_ASSETS, StaticFiles(directory=redoc), name="redoc-assets")
    spec_url = app.openapi_url or "/openapi.json"
    favicon = f"{ASSETS}/favicon-32x32.png"

    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=spec_url,
            title=f"{title} - API docs",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=favicon,
            swagger_ui_parameters={"persistAuthorization": True},
        )

    async def redoc_page() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=spec_url,
            title=f"{title} - API reference",
            redoc_js_url=f"{REDOC_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=favicon,
            with_google_fonts=False,
        )

    app.add_api_route("/docs", docs, include_in_schema=False)
    app.add_api_route("/redoc", redoc_page, include_in_schema=False)
