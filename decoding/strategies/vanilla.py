"""Ordinary decoding: the engine's own sampling, streamed straight through."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, replace

from decoding.seeds import choice_seed
from decoding.strategies.base import DecodeRequest, DecodeRun, TextDelta, merge_streams


@dataclass(frozen=True, slots=True)
class VanillaParams:
    """Vanilla has no parameters of its own."""


class VanillaStrategy:
    name = "vanilla"
    needs_messages = False
    supports_logprobs = True
    greedy_default = False
    supports_response_format = True  # the engine's own sampling, so its structured outputs

    async def run(self, request: DecodeRequest, run: DecodeRun) -> AsyncIterator[TextDelta]:
        run.accounting.prompt_tokens = len(request.prompt_token_ids)
        choices = [self._choice(request, run, index) for index in range(request.n)]
        async for delta in merge_streams(choices):
            yield delta
        run.stats["engine_requests"] = run.accounting.engine_requests
        run.stats["prefix_cache_hit_rate"] = round(run.accounting.prefix_cache_hit_rate, 4)

    async def _choice(
        self, request: DecodeRequest, run: DecodeRun, index: int
    ) -> AsyncIterator[TextDelta]:
        options = replace(request.options, seed=choice_seed(request.options.seed, index))
        stream = request.engine.generate(
            request.prompt_token_ids, options, f"{request.request_id}-{index}"
        )
        first = True
        async with aclosing(stream):
            async for chunk in stream:
                if first:
                    first = False
                    run.accounting.record_engine_request(chunk, request.engine.info.kv_block_size)
                run.accounting.completion_tokens += len(chunk.token_ids)
                yield TextDelta(
                    index, chunk.text, chunk.token_ids, chunk.logprobs, chunk.finish_reason
                )
