from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from decoding.errors import EngineUnavailable
from server.deps import EnginesDep
from server.errors import APIError, error_json

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(engines: EnginesDep) -> Response:
    """200 when every engine can serve; 503 naming each one that cannot."""
    problems = []
    for engine in engines.values():
        try:
            await engine.check_health()
        except EngineUnavailable as exc:
            problems.append(exc.message)
    if problems:
        return error_json(APIError(503, "; ".join(problems), type="service_unavailable_error",
                                   code="engine_unavailable"))
    return JSONResponse({"status": "ok", "models": list(engines)})
