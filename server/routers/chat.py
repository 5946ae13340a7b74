from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from server.deps import AdmissionDep, AlignmentHeader, ServedDep
from server.errors import ErrorResponse
from server.schemas.chat import ChatCompletion, ChatCompletionRequest
from server.serving.chat import chat_response, chat_stream, prepare_chat
from server.serving.common import STRATEGY_HEADER, until_disconnected
from server.streaming import sse_stream

router = APIRouter(tags=["chat"])


@router.post("/v1/chat/completions", response_model=ChatCompletion,
             responses={400: {"model": ErrorResponse}, 404: {"model": ErrorResponse}})
async def create_chat_completion(body: ChatCompletionRequest, request: Request,
                                 response: Response, served: ServedDep,
                                 admission: AdmissionDep, x_alignment: AlignmentHeader = None):
    decoding = prepare_chat(body, served, x_alignment)
    admission.reserve(decoding.engine_model, decoding)
    headers = {STRATEGY_HEADER: decoding.alignment.strategy}
    if body.stream:
        return StreamingResponse(sse_stream(chat_stream(decoding, body)),
                                 media_type="text/event-stream", headers=headers)
    response.headers.update(headers)
    return await until_disconnected(request, chat_response(decoding, body))
