"""The pages people open in a browser: ``/`` (submit and recent) and ``/g/{id}`` (watch one generation).

Plain HTML, CSS and a small script served from ``api/static`` (no build step, no CDN): the viewer uses the
browser's own EventSource, and renders model text with textContent or a DOM-only Markdown renderer.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

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


@router.get("/g/{generation_id}")
async def viewer_page(generation_id: str) -> FileResponse:
    """Watch one generation live (the page itself reports an unknown id)."""
    return FileResponse(STATIC_DIR / "viewer.html", headers=_HEADERS)
