"""Chat completions: messages → prompt → strategy → OpenAI response or chunks."""

from __future__ import annotations

from collections.abc import AsyncIterator

from decoding.prompts import chat_prompt, resolve_max_tokens
from decoding.strategies.base import Progress
from decoding.types import Message, TokenLogprob
from server.schemas.chat import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChoiceLogprobs,
    DeltaMessage,
    TokenLogprobOut,
    TopLogprobOut,
)
from server.serving.common import Decoding, Served, check_n, framed_chunks, sampling_options
from server.streaming import sse


def prepare_chat(body: ChatCompletionRequest, served: Served, header: str | None) -> Decoding:
    """Validate everything that can fail before the first byte is sent."""
    selection, engine = served.select(body, header)
    check_n(body, served.settings.max_n)
    messages = tuple(
        Message("system" if m.role == "developer" else m.role, m.text()) for m in body.messages
    )
    prompt = chat_prompt(engine, messages)
    max_tokens = resolve_max_tokens(engine.info, len(prompt.token_ids), body.completion_budget())
    top = (body.top_logprobs or 0) if body.logprobs else None
    options = sampling_options(body, max_tokens=max_tokens, extra_stop=prompt.stop, logprobs=top)
    return Decoding.prepare(prefix="chatcmpl", endpoint="chat", served=served,
                            selection=selection, body=body, prompts=[prompt.token_ids],
                            options=options, messages=messages)


def _logprobs(entries: list[TokenLogprob] | None, wanted: bool) -> ChoiceLogprobs | None:
    if not wanted:
        return None
    return ChoiceLogprobs(content=[
        TokenLogprobOut(
            token=e.token, logprob=e.logprob, bytes=list(e.token.encode()),
            top_logprobs=[TopLogprobOut(token=t.token, logprob=t.logprob,
                                        bytes=list(t.token.encode())) for t in e.top],
        )
        for e in entries or ()
    ])


async def chat_response(decoding: Decoding, body: ChatCompletionRequest) -> ChatCompletion:
    choices = await decoding.collect()
    return ChatCompletion(
        id=decoding.request_id, created=decoding.created, model=decoding.model,
        choices=[
            ChatChoice(index=i, message=AssistantMessage(content=c.text),
                       logprobs=_logprobs(c.logprobs, body.logprobs),
                       finish_reason=c.finish_reason)
            for i, c in enumerate(choices)
        ],
        usage=decoding.usage(), alignment=decoding.alignment_info(),
    )


async def chat_stream(decoding: Decoding, body: ChatCompletionRequest) -> AsyncIterator[str]:
    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    def chunk(choices: list[ChatChunkChoice]) -> ChatCompletionChunk:
        return ChatCompletionChunk(id=decoding.request_id, created=decoding.created,
                                   model=decoding.model, choices=choices)

    hidden = {"alignment"} if include_usage else {"alignment", "usage"}
    for index in range(len(decoding.requests) * body.n):
        first = ChatChunkChoice(index=index, delta=DeltaMessage(role="assistant", content=""))
        yield sse(chunk([first]), exclude=hidden)

    async def chunks() -> AsyncIterator[tuple[ChatCompletionChunk, bool] | Progress]:
        async for delta in decoding.deltas():
            if isinstance(delta, Progress):
                yield delta
                continue
            content = delta.text if delta.text or not delta.finish_reason else None
            yield chunk([ChatChunkChoice(
                index=delta.index, delta=DeltaMessage(content=content),
                logprobs=_logprobs(delta.logprobs, body.logprobs),
                finish_reason=delta.finish_reason,
            )]), delta.finish_reason is not None

    async for event in framed_chunks(decoding, chunks(), include_usage=include_usage,
                                     empty=lambda: chunk([])):
        yield event
