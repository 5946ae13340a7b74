"""Text completions on raw prompts (strings or token ids), as base models need."""

from __future__ import annotations

from collections.abc import AsyncIterator

from decoding.engine import Engine
from decoding.prompts import resolve_max_tokens
from decoding.strategies.base import Progress
from decoding.types import TokenLogprob
from server.errors import APIError
from server.schemas.completions import (
    Completion,
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
)
from server.serving.common import Decoding, Served, check_n, framed_chunks, sampling_options


def prepare_completion(body: CompletionRequest, served: Served, header: str | None
                       ) -> Decoding:
    selection, engine = served.select(body, header)
    check_n(body, served.settings.max_n)
    if body.suffix is not None:
        raise APIError(400, "suffix is not supported.", param="suffix")
    if body.echo and body.logprobs is not None:
        raise APIError(400, "echo together with logprobs is not supported.", param="echo")
    prompts = _prompt_ids(engine, body.prompt)
    longest = max(prompts, key=len)
    max_tokens = resolve_max_tokens(engine.info, len(longest), body.max_tokens or 16)
    options = sampling_options(body, max_tokens=max_tokens, logprobs=body.logprobs)
    return Decoding.prepare(prefix="cmpl", endpoint="completions", served=served,
                            selection=selection, body=body, prompts=prompts, options=options,
                            messages=None)


def _prompt_ids(engine: Engine, prompt: str | list[str] | list[int] | list[list[int]]
                ) -> list[list[int]]:
    if isinstance(prompt, str):
        prompt = [prompt]
    if not prompt or any(isinstance(p, (str, list)) and not p for p in prompt):
        raise APIError(400, "prompt must not be empty.", param="prompt")
    if all(isinstance(p, int) for p in prompt):
        prompt = [prompt]  # one prompt given as token ids
    ids = [engine.tokenize(p, add_special_tokens=True) if isinstance(p, str) else list(p)
           for p in prompt]
    vocab = engine.info.vocab_size
    if any(not 0 <= t < vocab for p in ids for t in p):
        raise APIError(400, f"prompt token ids must lie in [0, {vocab}).", param="prompt")
    return ids


def _logprobs(entries: list[TokenLogprob], offset: int) -> CompletionLogprobs:
    tokens, offsets = [], []
    for entry in entries:
        tokens.append(entry.token)
        offsets.append(offset)
        offset += len(entry.token)
    return CompletionLogprobs(
        tokens=tokens, token_logprobs=[e.logprob for e in entries],
        top_logprobs=[{t.token: t.logprob for t in e.top} for e in entries],
        text_offset=offsets,
    )


def _echo(decoding: Decoding, index: int, body: CompletionRequest) -> str:
    if not body.echo:
        return ""
    request = decoding.requests[index // body.n]
    return request.engine.detokenize(request.prompt_token_ids)


async def completion_response(decoding: Decoding, body: CompletionRequest) -> Completion:
    choices = await decoding.collect()
    return Completion(
        id=decoding.request_id, created=decoding.created, model=decoding.model,
        choices=[
            CompletionChoice(
                index=i, text=_echo(decoding, i, body) + c.text, finish_reason=c.finish_reason,
                logprobs=_logprobs(c.logprobs, 0) if body.logprobs is not None else None)
            for i, c in enumerate(choices)
        ],
        usage=decoding.usage(), alignment=decoding.alignment_info(),
    )


async def completion_stream(decoding: Decoding, body: CompletionRequest) -> AsyncIterator[str]:
    offsets = [0] * (len(decoding.requests) * body.n)
    echoed = [False] * len(offsets)

    def chunk(choices: list[CompletionChoice]) -> Completion:
        return Completion(id=decoding.request_id, created=decoding.created,
                          model=decoding.model, choices=choices)

    async def chunks() -> AsyncIterator[tuple[Completion, bool] | Progress]:
        async for delta in decoding.deltas():
            if isinstance(delta, Progress):
                yield delta
                continue
            text = delta.text
            if not echoed[delta.index]:
                echoed[delta.index] = True
                text = _echo(decoding, delta.index, body) + text
            logprobs = None
            if body.logprobs is not None:
                logprobs = _logprobs(delta.logprobs or [], offsets[delta.index])
            offsets[delta.index] += len(delta.text)
            yield chunk([CompletionChoice(index=delta.index, text=text, logprobs=logprobs,
                                          finish_reason=delta.finish_reason)]), \
                delta.finish_reason is not None

    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    async for event in framed_chunks(decoding, chunks(), include_usage=include_usage,
                                     empty=lambda: chunk([])):
        yield event
