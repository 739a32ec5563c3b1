"""/ui: the registry's web console, served from this package's own files.

The page needs no token to load: it asks for one and keeps it in the tab's
sessionStorage. It is plain HTML, CSS and JavaScript (no build step, no CDN). Every
value a holder controls reaches the page as data and is written with ``textContent``,
never as markup; the Content-Security-Policy allows scripts, styles and connections
from this origin only, so an injected string could not run even if it were markup.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
ASSETS = "/ui/static"

#: Sent with the page: nothing but this origin may run, style, connect or frame it.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def install(app: FastAPI) -> None:
    """Serve /ui and its static files."""
    app.mount(ASSETS, StaticFiles(directory=STATIC), name="console-static")

    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html", headers=HEADERS)

    async def slash() -> RedirectResponse:
        return RedirectResponse("/ui", status_code=308)

    app.add_api_route("/ui", page, include_in_schema=False)
    app.add_api_route("/ui/", slash, include_in_schema=False)
