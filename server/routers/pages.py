"""The pages a person opens: `/` (what runs here) and `/playground` (strategies side by side).

The playground is static files shipped in the package (no build step, nothing from a
CDN); the page calls the API with relative URLs, so it also works behind a gateway. The
pages hold no data and need no API key; the API calls they make carry it.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from server.errors import APIError

router = APIRouter(tags=["pages"], include_in_schema=False)
PLAYGROUND = resources.files("server") / "static" / "playground"
#: The playground's files beside its page, with their media types (nothing else is served).
ASSETS = {"playground.js": "text/javascript", "playground.css": "text/css"}
NO_CACHE = {"Cache-Control": "no-cache"}  # a server upgrade shows its own page at once

HOME = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>align-serve</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 2rem auto">
<h1>align-serve</h1>
<p>An OpenAI-compatible server for inference-time alignment (vanilla, nudging, RAIN).</p>
<ul>
  <li><a href="playground">Playground</a>: strategies side by side, with provenance</li>
  <li><a href="docs">API documentation</a> (<a href="openapi.json">OpenAPI schema</a>)</li>
  <li><a href="v1/models">Served models</a> and <a href="health">health</a></li>
</ul>
</body></html>
"""


@router.get("/", response_class=HTMLResponse)
async def home() -> HTMLResponse:
    return HTMLResponse(HOME, headers=NO_CACHE)


@router.get("/playground", response_class=HTMLResponse)
async def playground() -> HTMLResponse:
    return HTMLResponse((PLAYGROUND / "index.html").read_text(encoding="utf-8"), headers=NO_CACHE)


@router.get("/playground/{name}")
async def playground_asset(name: str) -> Response:
    if name not in ASSETS:
        raise APIError(404, f"No playground file {name!r}.", code="not_found")
    return Response((PLAYGROUND / name).read_bytes(), media_type=ASSETS[name], headers=NO_CACHE)
