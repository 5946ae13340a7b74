"""Assembles the FastAPI app: lifespan (engines), middleware, error handlers, routers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from decoding.engine import Engine
from server.admission import Admission
from server.config import Settings
from server.deps import require_api_key
from server.engines import start_engines, stop_engines, warm_up
from server.errors import APIError, error_json, install_error_handlers
from server.metrics import Metrics
from server.routers import chat, completions, health, metrics, models


def build_app(settings: Settings, engines: Mapping[str, Engine] | None = None) -> FastAPI:
    """The app; with `engines` given (tests) it serves those instead of starting vLLM."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = engines is None
        served = await start_engines(settings) if owned else dict(engines)
        if owned:
            try:
                await warm_up(served)
            except BaseException:
                await stop_engines(served)
                raise
        app.state.engines = served
        app.state.metrics = Metrics(served)
        app.state.admission = Admission(settings.max_concurrent_requests)
        app.state.started = int(time.time())
        try:
            yield
        finally:
            if owned:
                await stop_engines(served)

    app = FastAPI(title="align-serve", version="0.1.0", lifespan=lifespan,
                  description="OpenAI-compatible server for inference-time alignment")
    app.state.settings = settings
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    auth = [Depends(require_api_key)]
    for router in (chat.router, completions.router, models.router, metrics.router):
        app.include_router(router, dependencies=auth)
    app.include_router(health.router)
    return app


class BodySizeLimit:
    """413 for bodies over the limit, by Content-Length or by counting a chunked body."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = APIError(413, f"Request body exceeds {self.max_bytes} bytes.",
                             code="request_too_large")
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await error_json(too_large)(scope, receive, send)
        seen = 0

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise too_large
            return message

        await self.app(scope, counted, send)
