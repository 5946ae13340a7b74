"""One model's side of a nudging run: the token ids it has been given, and its engine.

Greedy runs keep one `TokenSession` open per model: each step sends only the tokens
added since the last one. The session remembers what it decoded beyond the ledger
(the rest of a nudger chunk that was not taken, the base's uncertain token), so when
the ledger grows by exactly those tokens, or not at all, they are served again without
a decoding step. Other runs (sampling, penalties) and engines without sessions send
the whole ledger as a new request; the prefix cache serves all but its last block.

A session can be handed over (`detach`) to whoever still reads it, e.g. a nudger chunk
whose tail is decoded only for its EOS check while the next round already begins on a
new session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field

from decoding.engine import Engine, TokenSession
from decoding.types import (
    FinishReason,
    GenerationChunk,
    SamplingOptions,
    TokenAccounting,
    TokenLogprob,
    cacheable,
)


@dataclass(slots=True)
class Ledger:
    engine: Engine
    ids: list[int]
    prompt_tokens: int = 0
    requests: int = 0
    sent_tokens: int = 0
    cached_tokens: int = 0
    generated_tokens: int = 0  # decoded by the engine, kept or not
    cacheable_tokens: int = 0  # the most the engine could have reused
    prompt_cached: int | None = None  # prompt tokens the first request found cached
    session: TokenSession | None = None
    stream: list[int] = field(default_factory=list)  # the session's context + its last token
    decoded: dict[int, TokenLogprob] = field(default_factory=dict)  # by position in stream

    def add_text(self, text: str) -> None:
        self.ids += self.engine.tokenize(text, add_special_tokens=False)

    async def tokens(self, options: SamplingOptions, request_id: str,
                     accounting: TokenAccounting, reading: Reading | None = None
                     ) -> AsyncIterator[tuple[int, TokenLogprob]]:
        """The model's next tokens after the ledger, one at a time. Asking for another
        token accepts the one before; closing the iterator leaves the rest unread.
        `reading.finish` says how the engine request ended."""
        reading = reading or Reading()
        if session_fits(options) and await self._session_ready(request_id):
            # closed with this iterator, not later by the garbage collector: a session
            # must not be stepped by a generator nobody reads
            async with aclosing(self._session_tokens(options, accounting, reading)) as items:
                async for item in items:
                    yield item
            return
        # a copy: the ledger may grow while this request runs (a chunk's tail, decoded
        # while the next round begins)
        async with aclosing(self.engine.generate(list(self.ids), options, request_id)
                            ) as chunks:
            first = True
            async for chunk in chunks:
                if first:
                    first = False
                    self.requests += 1
                    self._count(chunk, self.engine.info.kv_block_size, accounting)
                self.generated_tokens += len(chunk.token_ids)
                reading.finish = chunk.finish_reason
                for item in zip(chunk.token_ids, chunk.logprobs or [], strict=False):
                    yield item

    def _ahead(self) -> bool:
        """The session decoded past the ledger along it: those tokens can be served."""
        return len(self.stream) > len(self.ids) and self.stream[:len(self.ids)] == self.ids

    async def _session_ready(self, request_id: str) -> bool:
        """A session that can continue the ledger (a new one when it diverged)."""
        if self.session is not None and (
                self._ahead() or self.ids[:len(self.stream) - 1] == self.stream[:-1]):
            return True
        await self.close_session()
        self.session = self.engine.open_session(request_id)
        if self.session is not None:
            self.requests += 1
        return self.session is not None

    async def _session_tokens(self, options: SamplingOptions, accounting: TokenAccounting,
                              reading: Reading) -> AsyncIterator[tuple[int, TokenLogprob]]:
        # held here, not read from self: after `detach` this reader keeps its session
        session, stream, decoded = self.session, self.stream, self.decoded
        assert session is not None
        reading.finish = "length"
        given = 0
        if self._ahead():  # decoded before: served again, then decoding goes on after them
            for position in range(len(self.ids), len(stream)):
                if given == options.max_tokens:
                    return
                given += 1
                yield stream[position], decoded[position]
            new = stream[-1:]  # the last decoded token, now sent
        else:  # the session's context is a prefix of the ledger: send the rest
            new = self.ids[max(0, len(stream) - 1):]
            del stream[max(0, len(stream) - 1):]
            stream += new
        # here `stream` is the context the next step gives the engine (`new` at its end)
        for _ in range(options.max_tokens - given):
            opened = len(stream) == len(new)
            chunk = await session.step(new, options)
            self.generated_tokens += 1
            if opened:  # a session reuses all but the tokens of its first step
                self._count(chunk, self.engine.info.kv_block_size, accounting)
            token_id, entry = chunk.token_ids[0], chunk.logprobs[0]
            stream.append(token_id)  # in place: no copy of the context per token
            decoded[len(stream) - 1] = entry
            yield token_id, entry
            new = [token_id]

    def _count(self, chunk: GenerationChunk, block: int, accounting: TokenAccounting) -> None:
        """One request's prompt: what was sent, what the engine reused, what it could have."""
        self.sent_tokens += chunk.prompt_tokens
        if self.prompt_cached is None:
            self.prompt_cached = min(chunk.cached_tokens, self.prompt_tokens)
        self.cached_tokens += chunk.cached_tokens
        self.cacheable_tokens += cacheable(chunk.prompt_tokens, block)
        accounting.record_engine_request(chunk, block)

    def detach(self) -> TokenSession | None:
        """Hand the open session to its current reader, who closes it; the next run
        starts a new one."""
        session, self.session = self.session, None
        self.stream, self.decoded = [], {}
        return session

    async def close_session(self) -> None:
        session = self.detach()
        if session is not None:
            await session.close()


@dataclass(slots=True)
class Reading:
    """How one run of `Ledger.tokens` ended: the engine's finish reason."""

    finish: FinishReason | None = None


def session_fits(options: SamplingOptions) -> bool:
    """Sessions decode greedily without penalties: a penalty would see only the
    tokens of one step as the output, not the whole run."""
    return (options.temperature == 0 and options.presence_penalty == 0
            and options.frequency_penalty == 0 and options.repetition_penalty == 1)
