"""What every strategy is: an async driver turning one request into text deltas."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Protocol

from decoding.engine import Engine
from decoding.errors import InvalidRequest
from decoding.types import (
    FinishReason,
    GenerationChunk,
    Message,
    SamplingOptions,
    TokenAccounting,
    TokenLogprob,
)


@dataclass(frozen=True, slots=True)
class DecodeRequest:
    """One request as a strategy sees it; `params` is the strategy's own dataclass."""

    request_id: str
    engine: Engine
    engines: Mapping[str, Engine]
    prompt_token_ids: list[int]
    options: SamplingOptions
    n: int = 1
    messages: tuple[Message, ...] | None = None
    params: Any = None


@dataclass(slots=True)
class TextDelta:
    """New final text for choice `index`; `finish_reason` set on its last delta."""

    index: int
    text: str
    token_ids: list[int]
    logprobs: list[TokenLogprob] | None = None
    finish_reason: FinishReason | None = None


@dataclass(slots=True)
class Progress:
    """The strategy is still working on choice `index` (no text yet): streamed responses
    may tell the client so; everything else ignores it."""

    index: int
    note: str


@dataclass(slots=True)
class DecodeRun:
    """Per-request bookkeeping a strategy fills in while it runs."""

    accounting: TokenAccounting = field(default_factory=TokenAccounting)
    stats: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)  # top-level `alignment` fields


class Strategy(Protocol):
    """A decoding strategy; its capabilities are declared, not discovered by trying."""

    name: str
    needs_messages: bool  # works on a conversation, not on a raw prompt
    supports_logprobs: bool
    greedy_default: bool  # temperature 0 unless the request sets one

    def check_options(self, options: SamplingOptions) -> None:
        """Raise `InvalidRequest` naming an option the strategy cannot honour."""
        ...

    def run(self, request: DecodeRequest, run: DecodeRun
            ) -> AsyncIterator[TextDelta | Progress]: ...


def refuse_response_format(options: SamplingOptions, strategy: str) -> None:
    """Structured outputs constrain one engine's sampling; a strategy that samples on
    its own terms cannot honour them."""
    if options.json_output is not None:
        raise InvalidRequest(f"response_format is not available with the {strategy} "
                             "strategy (only vanilla decodes with structured outputs).",
                             param="response_format")


async def metered(engine: Engine, prompt_token_ids: Sequence[int], options: SamplingOptions,
                  request_id: str, accounting: TokenAccounting, *, own_prompt: bool = False
                  ) -> AsyncIterator[GenerationChunk]:
    """One engine request's chunks, counted in `accounting`: the request (prompt and cache
    hits) on its first chunk, decoded tokens on each. Close it to abort the request."""
    first = True
    async with aclosing(engine.generate(prompt_token_ids, options, request_id)) as stream:
        async for chunk in stream:
            if first:
                first = False
                accounting.record_engine_request(chunk, engine.info.kv_block_size,
                                                 own_prompt=own_prompt)
            accounting.engine_generated_tokens += len(chunk.token_ids)
            yield chunk


async def merge_streams(streams: list[AsyncIterator[TextDelta]]) -> AsyncIterator[TextDelta]:
    """Interleave several choices' deltas as they come; cancel the rest on exit."""
    if len(streams) == 1:
        async with aclosing(streams[0]) as only:  # closed now, not when collected
            async for item in only:
                yield item
        return
    queue: asyncio.Queue[TextDelta | BaseException | None] = asyncio.Queue()

    async def pump(stream: AsyncIterator[TextDelta]) -> None:
        try:
            async for item in stream:
                await queue.put(item)
            await queue.put(None)
        except Exception as exc:  # handed to the consumer, which re-raises it
            await queue.put(exc)

    tasks = [asyncio.create_task(pump(s)) for s in streams]
    try:
        remaining = len(tasks)
        while remaining:
            item = await queue.get()
            if item is None:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
