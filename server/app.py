"""Assembles the FastAPI app: lifespan (engines), middleware, error handlers, routers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from decoding.engine import Engine
from server.admission import Admission
from server.config import Settings
from server.deps import require_api_key
from server.draining import Drain
from server.engines import start_engines, stop_engines, warm_up
from server.errors import install_error_handlers
from server.metrics import Metrics
from server.middleware import BodySizeLimit, ErrorBoundary, RequestId
from server.routers import chat, completions, health, metrics, models, pages, tokenize
from server.selection import Capabilities


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
        app.state.admission = Admission(settings.max_concurrent_requests)
        app.state.metrics = Metrics(served, app.state.admission)
        app.state.capabilities = Capabilities.of(served, settings)
        app.state.started = int(time.time())
        try:
            yield
        finally:
            if owned:
                await stop_engines(served)

    app = FastAPI(title="align-serve", version="0.1.0", lifespan=lifespan,
                  description="OpenAI-compatible server for inference-time alignment")
    app.state.settings = settings
    app.state.drain = Drain()  # the runner brings its deadlines forward on shutdown
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(ErrorBoundary)
    app.add_middleware(RequestId)  # outside those: even an error answer carries the id
    if settings.allowed_origins:  # outermost: preflights need no key, errors get the headers
        app.add_middleware(CORSMiddleware, allow_origins=settings.allowed_origins,
                           allow_methods=["GET", "POST"], allow_headers=["*"],
                           expose_headers=["X-Request-Id", "X-Alignment-Strategy"])
    auth = [Depends(require_api_key)]
    for router in (chat.router, completions.router, models.router, tokenize.router,
                   metrics.router):
        app.include_router(router, dependencies=auth)
    app.include_router(health.router)
    app.include_router(pages.router)  # the pages need no key; the API calls they make do
    return app
