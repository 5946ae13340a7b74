from __future__ import annotations

from fastapi import APIRouter

from server.deps import EnginesDep
from server.errors import ErrorResponse
from server.schemas.tokenize import (
    DetokenizeRequest,
    DetokenizeResponse,
    TokenizeRequest,
    TokenizeResponse,
)
from server.serving import tokenize as serving

router = APIRouter(tags=["tokenize"])
ERRORS = {400: {"model": ErrorResponse}, 404: {"model": ErrorResponse}}


@router.post("/tokenize", response_model=TokenizeResponse, responses=ERRORS)
async def tokenize(body: TokenizeRequest, engines: EnginesDep) -> TokenizeResponse:
    """A prompt, or chat messages through the model's chat template (vLLM's shape)."""
    return serving.tokenize(body, engines)


@router.post("/detokenize", response_model=DetokenizeResponse, responses=ERRORS)
async def detokenize(body: DetokenizeRequest, engines: EnginesDep) -> DetokenizeResponse:
    return serving.detokenize(body, engines)
