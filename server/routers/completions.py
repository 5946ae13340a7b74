from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from server.deps import AdmissionDep, AlignmentHeader, ServedDep
from server.errors import ErrorResponse
from server.schemas.completions import Completion, CompletionRequest
from server.serving.common import STRATEGY_HEADER, until_disconnected
from server.serving.completions import completion_response, completion_stream, prepare_completion
from server.streaming import sse_stream

router = APIRouter(tags=["completions"])


@router.post("/v1/completions", response_model=Completion,
             responses={400: {"model": ErrorResponse}, 404: {"model": ErrorResponse}})
async def create_completion(body: CompletionRequest, request: Request, response: Response,
                            served: ServedDep, admission: AdmissionDep,
                            x_alignment: AlignmentHeader = None):
    decoding = prepare_completion(body, served, x_alignment)
    admission.reserve(decoding.engine_model, decoding)
    headers = {STRATEGY_HEADER: decoding.alignment.strategy}
    if body.stream:
        return StreamingResponse(sse_stream(completion_stream(decoding, body)),
                                 media_type="text/event-stream", headers=headers)
    response.headers.update(headers)
    return await until_disconnected(request, completion_response(decoding, body))
