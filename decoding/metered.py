"""An engine seen through one request: counts the tokens it decodes for that request.

The server hands strategies these views so "engine tokens per answer token" is measured
the same way for every strategy, whatever each strategy's own statistics report.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from decoding.engine import Engine, TokenSession
from decoding.types import GenerationChunk, SamplingOptions


@dataclass(slots=True)
class Tally:
    generated: int = 0


class MeteredEngine:
    """Delegates to `engine`; `generate` and session steps add to `tally`."""

    def __init__(self, engine: Engine, tally: Tally) -> None:
        self._engine = engine
        self._tally = tally

    def __getattr__(self, name: str) -> Any:  # info, counters, tokenizer methods, abort...
        return getattr(self._engine, name)

    async def generate(self, prompt_token_ids: Sequence[int], options: SamplingOptions,
                       request_id: str) -> AsyncIterator[GenerationChunk]:
        stream = self._engine.generate(prompt_token_ids, options, request_id)
        try:
            async for chunk in stream:
                self._tally.generated += len(chunk.token_ids)
                yield chunk
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    def open_session(self, request_id: str) -> TokenSession | None:
        session = self._engine.open_session(request_id)
        return None if session is None else _MeteredSession(session, self._tally)


class _MeteredSession:
    def __init__(self, session: TokenSession, tally: Tally) -> None:
        self._session = session
        self._tally = tally

    async def step(self, new_token_ids: Sequence[int], options: SamplingOptions
                   ) -> GenerationChunk:
        chunk = await self._session.step(new_token_ids, options)
        self._tally.generated += len(chunk.token_ids)
        return chunk

    async def close(self) -> None:
        await self._session.close()
