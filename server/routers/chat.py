from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from server.deps import AdmissionDep, EnginesDep, MetricsDep, SettingsDep
from server.errors import ErrorResponse
from server.schemas.chat import ChatCompletion, ChatCompletionRequest
from server.serving.chat import chat_response, chat_stream, prepare_chat
from server.serving.common import until_disconnected
from server.streaming import sse_stream

router = APIRouter(tags=["chat"])


@router.post("/v1/chat/completions", response_model=ChatCompletion,
             responses={400: {"model": ErrorResponse}, 404: {"model": ErrorResponse}})
async def create_chat_completion(body: ChatCompletionRequest, request: Request,
                                 engines: EnginesDep, metrics: MetricsDep,
                                 settings: SettingsDep, admission: AdmissionDep):
    decoding = prepare_chat(body, engines, metrics, settings)
    admission.reserve(body.model, decoding)
    if body.stream:
        return StreamingResponse(sse_stream(chat_stream(decoding, body)),
                                 media_type="text/event-stream")
    return await until_disconnected(request, chat_response(decoding, body))
