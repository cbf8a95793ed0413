"""The pages people open in a browser: ``/`` (submit and recent) and ``/g/{id}`` (watch one generation).

Plain HTML, CSS and a small script served from ``api/static`` (no build step, no CDN): the viewer uses the
browser's own EventSource, and renders model text with textContent or a DOM-only Markdown renderer.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse, Response

from reasonq.api.deps import StoreDep

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
router = APIRouter(include_in_schema=False)
_HEADERS = {
    # Scripts and styles only from this origin; no inline script, no plugin, no framing by others.
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@router.get("/")
async def index_page() -> FileResponse:
    """Submit a prompt; recent generations."""
    return FileResponse(STATIC_DIR / "index.html", headers=_HEADERS)


_NOT_FOUND_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>reasonq · not found</title><link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/static/style.css"></head>
<body><main><header><a class="brand" href="/">reasonq</a><span class="status unavailable">not found</span></header>
<section class="card"><p>There is no generation <code>{id}</code> here: it never existed, or it has expired
(finished generations are kept for a limited time).</p><p><a href="/">Submit a new prompt</a></p></section>
</main></body></html>"""


@router.get("/g/{generation_id}", response_model=None)
async def viewer_page(generation_id: str, store: StoreDep) -> Response:
    """Watch one generation live; an id that does not exist (or expired) is an HTTP 404 page.

    Ids are 128 random bits, so saying that one exists reveals nothing an owner has not shared; whether the
    caller may read it is still decided by the API calls the page makes (key or share link).
    """
    if await store.records.access_of(generation_id) is None:
        return HTMLResponse(_NOT_FOUND_PAGE.format(id=escape(generation_id[:100])), 404, headers=_HEADERS)
    return FileResponse(STATIC_DIR / "viewer.html", headers=_HEADERS)


@router.get("/favicon.ico")
async def favicon() -> FileResponse:
    """The icon browsers ask for by themselves."""
    return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")
