"""The nudging loop: the nudger writes a word, the base continues until it is unsure.

Both models keep a token-id ledger (prompt + answer so far, in their own tokens), so
each call sends the whole ledger and the engine's prefix cache serves all but the
new words. The nudger is streamed and stopped as soon as its word is complete; the
base is streamed with top-1 log-probabilities and stopped at its first uncertain
token. Text is emitted as soon as it can no longer change.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field, replace

from decoding.engine import Engine, TokenSession
from decoding.prompts import PLAIN_STOP, render_plain
from decoding.strategies.base import DecodeRequest, DecodeRun, TextDelta, merge_streams
from decoding.strategies.nudging.params import NudgingParams
from decoding.strategies.nudging.policy import (
    RepeatGuard,
    Source,
    Span,
    find_stop,
    is_uncertain,
    keep_whole_words,
    merge_spans,
    repeats_written,
    tokens_before,
    word_done,
)
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
    """The token ids one model has been given: its prompt, then the answer so far.

    Greedy runs go through one `TokenSession` kept open across the rounds: each step
    sends only the ledger's new tokens, and the token a run stopped at (the base's
    uncertain one, the nudger's next word start) is served again if the ledger did not
    change. Other runs, and engines without sessions, send the whole ledger as a new
    request and rely on the prefix cache.
    """

    engine: Engine
    ids: list[int]
    prompt_tokens: int = 0
    requests: int = 0
    sent_tokens: int = 0
    cached_tokens: int = 0
    generated_tokens: int = 0  # received from the engine, kept or not
    cacheable_tokens: int = 0  # the most the engine could have reused
    finish: FinishReason | None = None  # how the last run's engine request ended
    session: TokenSession | None = None
    submitted: list[int] = field(default_factory=list)  # the session's context
    pending: GenerationChunk | None = None  # its last token, not in its context

    def add_text(self, text: str) -> None:
        self.ids += self.engine.tokenize(text, add_special_tokens=False)

    async def tokens(self, options: SamplingOptions, request_id: str,
                     accounting: TokenAccounting) -> AsyncIterator[tuple[int, TokenLogprob]]:
        """The model's next tokens after the ledger, one at a time. Asking for another
        token accepts the one before; closing the iterator leaves the rest unread."""
        self.finish = None
        if _session_fits(options) and await self._open_session(request_id):
            async for item in self._session_tokens(options, accounting):
                yield item
            return
        async with aclosing(self.engine.generate(self.ids, options, request_id)) as chunks:
            first = True
            async for chunk in chunks:
                if first:
                    first = False
                    self.requests += 1
                    self._count(chunk, self.engine.info.kv_block_size, accounting)
                self.generated_tokens += len(chunk.token_ids)
                self.finish = chunk.finish_reason
                for item in zip(chunk.token_ids, chunk.logprobs or [], strict=False):
                    yield item

    async def _open_session(self, request_id: str) -> bool:
        """A session whose context is a prefix of the ledger (a new one if it diverged)."""
        if self.session is not None and self.ids[:len(self.submitted)] == self.submitted:
            return True
        await self.close_session()
        self.session = self.engine.open_session(request_id)
        return self.session is not None

    async def _session_tokens(self, options: SamplingOptions, accounting: TokenAccounting
                              ) -> AsyncIterator[tuple[int, TokenLogprob]]:
        assert self.session is not None
        new = self.ids[len(self.submitted):]
        if not self.submitted:  # a new session is one engine request for many runs
            self.requests += 1
        for step in range(options.max_tokens):
            if new or self.pending is None:
                chunk = await self.session.step(new, options)
                self.submitted += new
                self.generated_tokens += 1
                if step == 0:  # a session reuses all but its new tokens
                    self._count(chunk, 1, accounting)
            else:  # nothing was added since this token: it is still the next one
                chunk = self.pending
            self.pending = chunk
            yield chunk.token_ids[0], chunk.logprobs[0]
            self.pending, new = None, chunk.token_ids[:1]
        self.finish = "length"

    def _count(self, chunk: GenerationChunk, block: int, accounting: TokenAccounting) -> None:
        """One run's prompt: what was sent, what the engine reused, what it could have."""
        self.sent_tokens += chunk.prompt_tokens
        self.cached_tokens += chunk.cached_tokens
        self.cacheable_tokens += cacheable(chunk.prompt_tokens, block)
        accounting.record_engine_request(chunk, block)

    async def close_session(self) -> None:
        if self.session is not None:
            session, self.session = self.session, None
            self.submitted, self.pending = [], None
            await session.close()


def _session_fits(options: SamplingOptions) -> bool:
    """Sessions decode greedily without penalties: a penalty would see only the
    tokens of one step as the output, not the whole run."""
    return (options.temperature == 0 and options.presence_penalty == 0
            and options.frequency_penalty == 0 and options.repetition_penalty == 1)


@dataclass(slots=True)
class Answer:
    """The answer being built, its spans, and how much of it the client has seen."""

    stops: tuple[str, ...]
    text: str = ""
    spans: list[Span] = field(default_factory=list)
    emitted: int = 0
    tokens: dict[str, int] = field(default_factory=lambda: {"base": 0, "nudger": 0})
    stopped: bool = False

    def add(self, source: Source, text: str, tokens: int) -> None:
        cut = find_stop(self.text + text, self.stops)
        if cut is not None:
            text, self.stopped = (self.text + text)[:cut][len(self.text):], True
        self.text += text
        self.spans.append(Span(source, text))
        self.tokens[source] += tokens

    def final_text(self, done: bool) -> str:
        """New text no later stop string can cut (all of it once `done`)."""
        hold = 0 if done or self.stopped else max((len(s) - 1 for s in self.stops), default=0)
        upto = max(self.emitted, len(self.text) - hold)
        new, self.emitted = self.text[self.emitted:upto], upto
        return new


@dataclass(slots=True)
class NudgeState:
    """Everything one choice's nudging run keeps between rounds."""

    base: Ledger
    nudger: Ledger
    answer: Answer
    budget: int
    guard: RepeatGuard
    base_needs_space: bool
    request_id: str
    rounds: int = 0
    nudged_words: int = 0
    base_discarded: int = 0
    finish: FinishReason | None = None
    end: str = ""

    @property
    def room(self) -> int:
        return self.budget - sum(self.answer.tokens.values())

    async def close_sessions(self) -> None:
        await self.base.close_session()
        await self.nudger.close_session()


class NudgingStrategy:
    name = "nudging"
    needs_messages = True
    supports_logprobs = False
    greedy_default = True

    async def run(self, request: DecodeRequest, run: DecodeRun) -> AsyncIterator[TextDelta]:
        params: NudgingParams = request.params
        states: list[NudgeState] = []
        choices = [self._choice(request, run, params, i, states) for i in range(request.n)]
        async for delta in merge_streams(choices):
            yield delta
        run.accounting.prompt_tokens = states[0].base.prompt_tokens if states else 0
        run.stats.update(_stats(states, params))
        if params.return_spans:
            spans = [[{"source": sp.source, "text": sp.text} for sp in merge_spans(s.answer.spans)]
                     for s in states]
            run.extras["spans"] = spans[0] if len(spans) == 1 else spans

    async def _choice(self, request: DecodeRequest, run: DecodeRun, params: NudgingParams,
                      index: int, states: list[NudgeState]) -> AsyncIterator[TextDelta]:
        state = _start(request, params, request.engines[params.nudging_model], index)
        states.append(state)
        options = request.options
        seed = None if options.seed is None else options.seed + index * 100_003
        try:
            while state.finish is None:
                state.rounds += 1
                await self._nudge(state, params, options, seed, run.accounting)
                if state.finish is None:
                    await self._continue_base(state, params, options, seed, run.accounting)
                if state.finish is None and state.answer.stopped:
                    state.finish, state.end = "stop", "stop_string"
                if state.finish is None and state.room <= 0:
                    state.finish, state.end = "length", "max_tokens"
                if state.finish is not None:  # both engines idle before the last delta
                    await state.close_sessions()
                text = state.answer.final_text(done=state.finish is not None)
                if text or state.finish:
                    yield TextDelta(index, text, [], None, state.finish)
        finally:
            await state.close_sessions()
        run.accounting.completion_tokens += sum(state.answer.tokens.values())

    async def _nudge(self, state: NudgeState, params: NudgingParams, options: SamplingOptions,
                     seed: int | None, accounting: TokenAccounting) -> None:
        """The nudger writes one word; EOS from it ends the answer."""
        sampling = replace(
            options, max_tokens=min(params.max_word_tokens, state.room),
            temperature=_pick(params.nudger_temperature, options.temperature),
            top_p=_pick(params.nudger_top_p, options.top_p), logprobs=0, stop=(),
            seed=None if seed is None else seed + state.rounds, stop_token_ids=(),
            ignore_eos=False, min_tokens=0, logit_bias=())  # the bias names base token ids
        word_ids: list[int] = []
        word_texts: list[str] = []
        eos = False
        eos_ids = state.nudger.engine.info.eos_token_ids
        tokens = state.nudger.tokens(sampling, _rid(state, "n"), accounting)
        async with aclosing(tokens) as stream:
            async for token_id, entry in stream:
                if token_id in eos_ids:
                    eos = True
                    break
                if word_done(word_texts, entry.token):
                    break
                word_ids.append(token_id)
                word_texts.append(entry.token)
            else:
                eos = state.nudger.finish == "stop"
        word = "".join(word_texts)
        if word and state.guard.exhausted(word):
            state.finish, state.end = "stop", "repeated_nudge"
            return
        if word:
            state.nudged_words += 1
            state.answer.add("nudger", word, len(word_ids))
            state.nudger.ids += word_ids
            state.base.add_text(_base_view(state, word))
        if eos:
            state.finish, state.end = "stop", "nudger_eos"
        elif not word and state.room > 0 and not state.answer.stopped:
            state.finish, state.end = "stop", "nudger_empty"

    async def _continue_base(self, state: NudgeState, params: NudgingParams,
                             options: SamplingOptions, seed: int | None,
                             accounting: TokenAccounting) -> None:
        """The base writes until its first uncertain token, which is dropped."""
        if state.room <= 0 or state.answer.stopped:
            return
        sampling = replace(
            options, max_tokens=state.room, logprobs=1, stop=(), stop_token_ids=(),
            temperature=_pick(params.base_temperature, options.temperature),
            top_p=_pick(params.base_top_p, options.top_p), ignore_eos=False, min_tokens=0,
            seed=None if seed is None else seed + 50_000 + state.rounds)
        ids: list[int] = []
        texts: list[str] = []
        rejected: str | None = None
        received = 0
        run_text = ""
        longest_stop = max(len(s) for s in PLAIN_STOP)
        eos_ids = state.base.engine.info.eos_token_ids
        tokens = state.base.tokens(sampling, _rid(state, "b"), accounting)
        async with aclosing(tokens) as stream:
            async for token_id, entry in stream:
                received += 1
                if token_id in eos_ids:
                    break
                if is_uncertain(entry.top[0].logprob, params.gamma):
                    rejected = entry.token
                    break
                ids.append(token_id)
                texts.append(entry.token)
                run_text += entry.token
                # only the newest characters can complete a stop string
                tail = run_text[-(longest_stop + len(entry.token)):]
                if find_stop(tail, PLAIN_STOP) is not None:
                    break  # the base starts a new turn: its answer is over
        keep = keep_whole_words(state.answer.text, texts, rejected)
        cut = find_stop("".join(texts[:keep]), PLAIN_STOP)
        if cut is not None:
            keep = tokens_before(texts, cut)
        run = "".join(texts[:keep])
        if run and repeats_written(run, state.answer.text):
            keep, run = 0, ""
        state.base_discarded += received - keep
        if not run:
            return
        state.answer.add("base", run, keep)
        state.base.ids += ids[:keep]
        state.nudger.add_text(run)


def _start(request: DecodeRequest, params: NudgingParams, nudger: Engine,
           index: int) -> NudgeState:
    """Both ledgers from the conversation; a final assistant message is the answer's start."""
    messages = list(request.messages or ())
    prefill = messages.pop().content if messages and messages[-1].role == "assistant" else ""
    base_ids = request.engine.tokenize(render_plain(messages), add_special_tokens=True)
    nudger_ids = nudger.tokenize(nudger.render_chat(messages), add_special_tokens=False)
    state = NudgeState(
        base=Ledger(request.engine, base_ids, prompt_tokens=len(base_ids)),
        nudger=Ledger(nudger, nudger_ids, prompt_tokens=len(nudger_ids)),
        answer=Answer(stops=request.options.stop), budget=request.options.max_tokens,
        guard=RepeatGuard(params.repeat_limit), base_needs_space=True,
        request_id=f"{request.request_id}-{index}",
    )
    if prefill:  # context for both models, not part of the returned text
        state.base.add_text(_base_view(state, prefill))
        state.nudger.add_text(prefill)
    return state


def _base_view(state: NudgeState, text: str) -> str:
    """The base's transcript ends with 'Answer:'; its answer starts after a space."""
    if state.base_needs_space:
        state.base_needs_space = False
        if text and not text[0].isspace():
            return " " + text
    return text


def _rid(state: NudgeState, kind: str) -> str:
    return f"{state.request_id}-r{state.rounds}{kind}"


def _pick(override: float | None, default: float) -> float:
    return default if override is None else override


def _stats(states: list[NudgeState], params: NudgingParams) -> dict:
    answer_tokens = sum(sum(s.answer.tokens.values()) for s in states)
    nudged = sum(s.answer.tokens["nudger"] for s in states)
    stats = {
        "nudging_model": params.nudging_model,
        "gamma": params.gamma,
        "nudge_ratio": round(nudged / answer_tokens, 4) if answer_tokens else 0.0,
        "nudged_words": sum(s.nudged_words for s in states),
        "nudged_tokens": nudged,
        "base_tokens_kept": sum(s.answer.tokens["base"] for s in states),
        "base_tokens_discarded": sum(s.base_discarded for s in states),
        "handoffs": sum(s.rounds for s in states),
        "end": [s.end for s in states] if len(states) > 1 else states[0].end,
        "prefix_cache_hit_rate": _per_role(states, "cached_tokens"),
        "prefix_cache_hit_ceiling": _per_role(states, "cacheable_tokens"),
        "engine_requests": {role: sum(getattr(s, role).requests for s in states)
                            for role in ("base", "nudger")},
        "engine_generated_tokens": {role: sum(getattr(s, role).generated_tokens for s in states)
                                    for role in ("base", "nudger")},
    }
    return stats


def _per_role(states: list[NudgeState], counter: str) -> dict[str, float]:
    """A ledger counter as a share of the prompt tokens sent, per model."""
    return {role: round(sum(getattr(getattr(s, role), counter) for s in states)
                        / max(1, sum(getattr(s, role).sent_tokens for s in states)), 4)
            for role in ("base", "nudger")}
