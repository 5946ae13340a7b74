from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from server.deps import AdmissionDep, EnginesDep, MetricsDep, SettingsDep
from server.errors import ErrorResponse
from server.schemas.completions import Completion, CompletionRequest
from server.serving.common import until_disconnected
from server.serving.completions import completion_response, completion_stream, prepare_completion
from server.streaming import sse_stream

router = APIRouter(tags=["completions"])


@router.post("/v1/completions", response_model=Completion,
             responses={400: {"model": ErrorResponse}, 404: {"model": ErrorResponse}})
async def create_completion(body: CompletionRequest, request: Request, engines: EnginesDep,
                            metrics: MetricsDep, settings: SettingsDep,
                            admission: AdmissionDep):
    decoding = prepare_completion(body, engines, metrics, settings)
    admission.reserve(body.model, decoding)
    if body.stream:
        return StreamingResponse(sse_stream(completion_stream(decoding, body)),
                                 media_type="text/event-stream")
    return await until_disconnected(request, completion_response(decoding, body))
