"""The web dashboard: `/` and its static files from `assets/` (plain HTML, CSS and JavaScript)."""

from __future__ import annotations

import functools
import mimetypes
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import HTMLResponse, Response

from app.paths import assets_dir

router = APIRouter(include_in_schema=False)

ASSET_MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".html": "text/html"}
NO_CACHE = {"Cache-Control": "no-cache"}


@functools.cache
def _asset_names() -> frozenset[str]:
    """Files the dashboard may serve: what `assets/` holds (flat), nothing outside it."""
    folder = assets_dir()
    return frozenset(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else frozenset()


def _read_asset(name: str) -> bytes:
    if name not in _asset_names():
        raise HTTPException(404, f"no asset {name!r}")
    return (assets_dir() / name).read_bytes()


@router.get("/", response_class=HTMLResponse)
def dashboard(token: Annotated[str | None, Query(max_length=256)] = None) -> HTMLResponse:
    html = _read_asset("index.html").decode("utf-8")
    if token:
        # The token already passed the auth middleware; the page's own asset links need it too.
        suffix = "?token=" + quote(token, safe="")
        for name in _asset_names():
            html = html.replace(f'"assets/{name}"', f'"assets/{name}{suffix}"')
    return HTMLResponse(html, headers=NO_CACHE)


@router.get("/assets/{name}")
def asset(name: str) -> Response:
    media_type = ASSET_MEDIA_TYPES.get(Path(name).suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Response(_read_asset(name), media_type=media_type, headers=NO_CACHE)
