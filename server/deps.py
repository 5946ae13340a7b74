"""Dependencies the routers declare: settings, engines, metrics, and the API-key check."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Annotated

from fastapi import Depends, Header, Request

from decoding.engine import Engine
from server.admission import Admission
from server.config import Settings
from server.errors import APIError
from server.metrics import Metrics
from server.selection import Capabilities
from server.serving.common import Served


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_engines(request: Request) -> Mapping[str, Engine]:
    return request.app.state.engines


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


def get_admission(request: Request) -> Admission:
    return request.app.state.admission


def get_capabilities(request: Request) -> Capabilities:
    return request.app.state.capabilities


def get_served(request: Request) -> Served:
    state = request.app.state
    return Served(state.engines, state.capabilities, state.metrics, state.settings,
                  state.drain)


SettingsDep = Annotated[Settings, Depends(get_settings)]
EnginesDep = Annotated[Mapping[str, Engine], Depends(get_engines)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
AdmissionDep = Annotated[Admission, Depends(get_admission)]
CapabilitiesDep = Annotated[Capabilities, Depends(get_capabilities)]
ServedDep = Annotated[Served, Depends(get_served)]
#: The `X-Alignment` request header (see `server.selection`).
AlignmentHeader = Annotated[str | None, Header(
    alias="X-Alignment", description='the body\'s `alignment` as JSON, or a strategy name')]


async def require_api_key(request: Request, settings: SettingsDep) -> None:
    """Bearer auth when keys are configured; compared in constant time."""
    if not settings.api_keys:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not any(
        secrets.compare_digest(token.encode(), key.encode()) for key in settings.api_keys
    ):
        raise APIError(401, "Incorrect API key provided.", code="invalid_api_key",
                       headers={"WWW-Authenticate": "Bearer"})
