"""The nudging loop, round by round, as the authors' released code runs it.

A round: the nudger writes a chunk (16 tokens); EOS in it ends the answer with the
whole chunk. Otherwise its first word is always taken, and at each further word
boundary the base is asked for its next token: when that token starts the nudger's
next word, or the base is certain of it (top-1 ≥ γ), the base takes over from there
with that token; when no boundary qualifies, all but the chunk's last word are taken.
The base then writes on, read in chunks of 16 tokens, until its first uncertain token,
EOS, or a repetition; that token and what follows are dropped, and the next round
begins. Both models keep token-id ledgers (see `ledger`), so each step sends only new
tokens; text is emitted as soon as no later stop string can cut it.

The rest of a chunk after the take-over matters only for its EOS check. When the answer
has left the chunk (so the next chunk needs a new nudger session anyway), the round is
kept provisionally and the next one begins while the tail is still decoded, side by
side on the nudger's engine; should the tail end in EOS, both rounds are undone and the
answer ends with the whole chunk, as the reference ends it. Nothing of a provisional
round reaches the client before its tail is read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field, replace

from decoding.engine import Engine, TokenSession
from decoding.errors import DecodingError, InvalidRequest
from decoding.prompts import PLAIN_STOP, render_plain
from decoding.seeds import derive_seed
from decoding.strategies.base import (
    DecodeRequest,
    DecodeRun,
    TextDelta,
    merge_streams,
    refuse_response_format,
)
from decoding.strategies.nudging.ledger import Ledger, Reading
from decoding.strategies.nudging.params import NudgingParams
from decoding.strategies.nudging.policy import (
    ChunkWords,
    RepeatGuard,
    Source,
    Span,
    Stretch,
    base_takes_over,
    is_uncertain,
    keep_whole_words,
    merge_spans,
    whole_tokens,
)
from decoding.text import find_stop, stop_safe_length, tokens_before
from decoding.types import FinishReason, SamplingOptions, TokenAccounting, TokenLogprob

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Piece:
    """Text one model added, with the lengths of the tokens it came in."""

    source: Source
    text: str
    token_lengths: tuple[int, ...]


@dataclass(slots=True)
class Answer:
    """The answer being built, piece by piece, and how much of it the client has seen."""

    stops: tuple[str, ...]
    pieces: list[Piece] = field(default_factory=list)
    text: str = ""
    emitted: int = 0
    stopped: bool = False
    held: int | None = None  # text from here on is provisional: not emitted yet

    def add(self, source: Source, text: str, token_lengths: Sequence[int]) -> None:
        """Append a model's text; a stop string (even one that began in text already
        written) cuts the answer where it starts, and nothing is added after that."""
        if self.stopped or not text:
            return
        self.pieces.append(Piece(source, text, tuple(token_lengths)))
        self.text += text
        cut = find_stop(self.text, self.stops)
        if cut is not None:
            self.stopped = True
            self._truncate(cut)

    def _truncate(self, length: int) -> None:
        """Keep the first `length` characters; a token cut by the stop still counts
        (as vLLM counts the token a stop string ends in)."""
        kept, end = [], 0
        for piece in self.pieces:
            room = length - end
            if room <= 0:
                break
            lengths, used = [], 0
            for size in piece.token_lengths:
                if used >= room:
                    break
                lengths.append(size)
                used += size
            kept.append(Piece(piece.source, piece.text[:room], tuple(lengths)))
            end += len(kept[-1].text)
        self.pieces = [piece for piece in kept if piece.text]
        self.text = self.text[:length]

    @property
    def spans(self) -> list[Span]:
        return [Span(piece.source, piece.text) for piece in self.pieces]

    @property
    def tokens(self) -> dict[str, int]:
        counts = {"base": 0, "nudger": 0}
        for piece in self.pieces:
            counts[piece.source] += len(piece.token_lengths)
        return counts

    def final_text(self, done: bool) -> str:
        """New text that no later stop string can cut (all of it once `done`). While a
        round is provisional only the text before it counts: undoing the round may bring
        a stop string the provisional text ruled out."""
        if self.held is not None:
            upto = stop_safe_length(self.text[:self.held], self.stops)
        elif done or self.stopped:
            upto = len(self.text)
        else:
            upto = stop_safe_length(self.text, self.stops)
        upto = max(self.emitted, upto)
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
    request_id: str
    seed: int | None
    base_started: bool = False  # the base's transcript ends 'Answer:': it needs a space
    chunk: Chunk | None = None  # the nudger's chunk of this round
    chunk_chars: int = 0  # how much of it the nudger's ledger holds (-1: it diverged)
    rounds: int = 0
    nudged_words: int = 0
    base_discarded: int = 0
    finish: FinishReason | None = None
    end: str = ""
    pending: Pending | None = None  # a provisional round whose chunk is still decoded
    provisional_rounds: int = 0  # kept before their chunk's tail was read
    rounds_undone: int = 0  # begun after a provisional round whose tail ended in EOS

    @property
    def room(self) -> int:
        return self.budget - sum(self.answer.tokens.values())

    def ended(self, finish: FinishReason, end: str) -> None:
        self.finish, self.end = finish, end

    def base_text(self, text: str) -> None:
        """Give the base new answer text (its answer starts after 'Answer:' and a space)."""
        if not self.base_started and text:
            self.base_started = True
            if not text[0].isspace():
                text = " " + text
        self.base.add_text(text)

    def nudge_tokens(self, nudge: str) -> int:
        """The nudger's tokens for a nudge taken from this round's chunk."""
        count = whole_tokens(self.chunk.texts, len(nudge)) if self.chunk else None
        return count if count is not None else len(
            self.nudger.engine.tokenize(nudge, add_special_tokens=False))

    def nudger_text(self, text: str) -> list[int]:
        """Give the nudger new answer text; the lengths of its tokens for it. While the
        text goes on along the nudger's own chunk (on its token boundaries), the ledger
        takes the chunk's own ids, so what the nudger decoded beyond stays reusable."""
        chunk = self.chunk
        along = chunk.tokens_along(self.chunk_chars, text) if chunk is not None else None
        if along is not None:
            self.nudger.ids += chunk.ids[along]
            self.chunk_chars += len(text)
            return [len(t) for t in chunk.texts[along]]
        self.chunk_chars = -1
        before = len(self.nudger.ids)
        self.nudger.add_text(text)
        table = self.nudger.engine.token_texts()
        return [len(table[i]) for i in self.nudger.ids[before:]]

    def rid(self, kind: str, step: int = 0) -> str:
        return f"{self.request_id}-r{self.rounds}{kind}{step or ''}"

    async def close_sessions(self) -> None:
        try:
            if self.pending is not None:
                await self.pending.feed.cancel()
                self.pending = None
        finally:
            try:
                await self.base.close_session()
            finally:
                await self.nudger.close_session()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A run's state before a provisional round, to undo it (ledgers only grow)."""

    answer: Answer
    guard: RepeatGuard
    base_ids: int
    nudger_ids: int
    base_started: bool
    chunk: Chunk | None
    chunk_chars: int
    rounds: int
    nudged_words: int
    base_discarded: int

    @classmethod
    def of(cls, state: NudgeState) -> Snapshot:
        answer = replace(state.answer, pieces=list(state.answer.pieces))
        return cls(answer, replace(state.guard), len(state.base.ids), len(state.nudger.ids),
                   state.base_started, state.chunk, state.chunk_chars, state.rounds,
                   state.nudged_words, state.base_discarded)

    def restore(self, state: NudgeState) -> None:
        emitted = state.answer.emitted  # what the client has seen stays seen
        state.answer = replace(self.answer, pieces=list(self.answer.pieces), emitted=emitted)
        state.guard = replace(self.guard)
        del state.base.ids[self.base_ids:]
        del state.nudger.ids[self.nudger_ids:]
        state.base_started, state.chunk = self.base_started, self.chunk
        state.chunk_chars = self.chunk_chars
        state.rounds_undone += state.rounds - self.rounds
        state.rounds, state.nudged_words = self.rounds, self.nudged_words
        state.base_discarded = self.base_discarded
        state.finish, state.end = None, ""


@dataclass(frozen=True, slots=True)
class Pending:
    """A provisional round: its chunk's feed (still decoding) and the state before it."""

    feed: ChunkFeed
    before: Snapshot


@dataclass(slots=True)
class Chunk:
    """What the nudger wrote this round (its own tokens)."""

    ids: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    eos: bool = False

    @property
    def text(self) -> str:
        return "".join(self.texts)

    def copy(self) -> Chunk:
        return Chunk(list(self.ids), list(self.texts), self.eos)

    def tokens_along(self, start: int, text: str) -> slice | None:
        """The chunk's tokens that spell `text` from character `start` on, when the
        text goes on along the chunk and both its ends fall on token boundaries."""
        if start < 0 or not self.text.startswith(text, start):
            return None
        first = whole_tokens(self.texts, start)
        last = whole_tokens(self.texts, start + len(text))
        return None if first is None or last is None else slice(first, last)


class NudgingStrategy:
    name = "nudging"
    needs_messages = True
    supports_logprobs = False
    greedy_default = True

    def check_options(self, options: SamplingOptions) -> None:
        """Token-level options name one model's tokens or end-of-text: refused, not dropped."""
        refuse_response_format(options, "nudging")
        for name, value in (("stop_token_ids", options.stop_token_ids),
                            ("ignore_eos", options.ignore_eos),
                            ("min_tokens", options.min_tokens)):
            if value:
                raise InvalidRequest(f"{name} is not available with the nudging strategy "
                                     "(two models with different tokenizers write the "
                                     "answer).", param=name)

    async def run(self, request: DecodeRequest, run: DecodeRun) -> AsyncIterator[TextDelta]:
        params: NudgingParams = request.params
        states: list[NudgeState] = []
        choices = [self._choice(request, run, params, i, states) for i in range(request.n)]
        async for delta in merge_streams(choices):
            yield delta
        if states:  # the request's prompt is the base's: its cache hits are the usage's
            run.accounting.prompt_tokens = states[0].base.prompt_tokens
            run.accounting.cached_prompt_tokens = states[0].base.prompt_cached or 0
        run.stats.update(_stats(states, params))
        if params.return_spans:
            spans = [[{"source": sp.source, "text": sp.text} for sp in merge_spans(s.answer.spans)]
                     for s in states]
            run.extras["spans"] = spans[0] if len(spans) == 1 else spans

    async def _choice(self, request: DecodeRequest, run: DecodeRun, params: NudgingParams,
                      index: int, states: list[NudgeState]) -> AsyncIterator[TextDelta]:
        state = _start(request, params, request.engines[params.nudging_model], index)
        states.append(state)
        try:
            while state.finish is None:
                state.rounds += 1
                await self._round(state, params, request.options, run.accounting)
                if state.finish is None and state.answer.stopped:
                    state.ended("stop", "stop_string")
                if state.finish is None and state.room <= 0:
                    state.ended("length", "max_tokens")
                if state.finish is None and state.rounds >= params.max_rounds:
                    state.ended("length", "max_rounds")
                if state.finish is not None:
                    await self._settle(state)  # a provisional round's chunk may end it
                    await state.close_sessions()  # both engines idle before the last delta
                text = state.answer.final_text(done=state.finish is not None)
                if text or state.finish:
                    yield TextDelta(index, text, [], None, state.finish)
        finally:
            await state.close_sessions()
        run.accounting.completion_tokens += sum(state.answer.tokens.values())

    async def _round(self, state: NudgeState, params: NudgingParams, options: SamplingOptions,
                     accounting: TokenAccounting) -> None:
        """One round. The nudger's chunk is decoded in the background: the base is asked
        about each word boundary as soon as the words before it are written, and writes
        its stretch while the chunk is finished; the chunk's EOS check comes before
        anything is kept for good. A round begun early that fails gives way to the last
        round's chunk if that ended in EOS (the reference never began this round)."""
        feed = ChunkFeed(state, params, options, accounting)
        try:
            await self._round_with(state, params, options, accounting, feed)
        except DecodingError as exc:  # an engine's refusal or death, not a bug of ours
            if state.pending is None:
                raise
            await feed.cancel()
            if await self._settle(state):
                raise
            logger.info("%s: a round begun early failed (%s); the last chunk's EOS ended "
                        "the answer", state.request_id, exc)
        finally:
            if state.pending is None or state.pending.feed is not feed:
                await feed.cancel()

    async def _round_with(self, state: NudgeState, params: NudgingParams,
                          options: SamplingOptions, accounting: TokenAccounting,
                          feed: ChunkFeed) -> None:
        state.chunk, state.chunk_chars = feed.chunk, 0
        sampling = _base_options(state, params, options)
        eos_ids = state.base.engine.info.eos_token_ids
        boundary = 0
        fed = 0  # characters of the chunk the base's ledger holds
        stream: AsyncIterator[tuple[int, TokenLogprob]] | None = None
        takeover: tuple[int, TokenLogprob] | None = None
        try:
            while takeover is None:
                words = await feed.words(boundary + 1)
                if boundary + 1 >= len(words.words):
                    break  # the chunk is complete and has no further word boundary
                boundary += 1
                if len(words.words) > boundary + 1 and not words.words[boundary]:
                    continue  # a double space: no word to compare, the base is not asked
                state.base_text(words.prefix(boundary)[fed:])
                fed = len(words.prefix(boundary))
                stream = state.base.tokens(sampling, state.rid("b", boundary), accounting)
                token_id, entry = await anext(stream)
                candidate = (await feed.words(boundary + 1)).candidate(boundary)
                if (candidate != " " and token_id not in eos_ids and base_takes_over(
                        candidate, entry.token, entry.top[0].logprob, params.gamma)):
                    takeover = token_id, entry
                    break
                await stream.aclose()
                if candidate != " " and token_id in eos_ids:
                    break  # the base would end the answer here: the nudger is asked again
            taken = boundary if takeover is not None else max(boundary, 1)
            nudge = (await feed.words(taken)).prefix(taken)
            stretch: Stretch | None = None
            exhausted = bool(nudge) and state.guard.exhausted(nudge)
            if takeover is not None and stream is not None and not exhausted:
                stretch = await self._base_stretch(state, params, nudge, takeover, stream)
        finally:
            if stream is not None:
                await stream.aclose()
        if not await self._settle(state):
            return  # the last round's chunk ended in EOS: this round is undone with it
        if stretch is not None and self._start_next_early(state, feed, nudge, taken, fed,
                                                          stretch):
            return
        chunk = await feed.complete()
        if chunk.eos:
            self._end_with_chunk(state, chunk)
            return
        if not nudge or exhausted:
            state.ended("stop", "repeated_nudge" if nudge else "nudger_empty")
            return
        self._keep_round(state, nudge, taken, fed, stretch)

    def _keep_round(self, state: NudgeState, nudge: str, taken: int, fed: int,
                    stretch: Stretch | None) -> None:
        """The round's nudge and the base's stretch join the answer."""
        self._take_nudge(state, nudge, taken)
        if state.answer.stopped:
            return
        state.base_text(nudge[fed:])
        if stretch is not None:
            self._keep_stretch(state, stretch)

    def _end_with_chunk(self, state: NudgeState, chunk: Chunk) -> None:
        """The reference appends the nudger's whole chunk when it holds EOS, and stops."""
        words_written = len(ChunkWords.split(chunk.text).words) if chunk.text else 0
        self._take_nudge(state, chunk.text, words_written)
        state.ended("stop", "nudger_eos")

    def _start_next_early(self, state: NudgeState, feed: ChunkFeed, nudge: str, taken: int,
                          fed: int, stretch: Stretch) -> bool:
        """Keep the round provisionally while its chunk's tail is decoded, when what the
        round keeps no longer depends on that tail, the answer has left the chunk
        (otherwise the tail is the next chunk's start, served again: it is waited for),
        and the nudge does not end the answer (no round would follow)."""
        if feed.done:
            return False
        partial = feed.chunk.copy()
        run = "".join(_kept(nudge[-1:], stretch)[1])
        seen = partial.text[len(nudge):]
        if not run or (len(seen) < len(run) and run.startswith(seen)):
            return False  # the tail could still bear the stretch out
        if find_stop(state.answer.text + nudge, state.answer.stops) is not None:
            return False  # the nudge ends the answer: no round follows to begin early
        if (partial.tokens_along(state.chunk_chars, nudge) is not None
                and partial.tokens_along(state.chunk_chars + len(nudge), run) is not None):
            return False  # the answer is still along the chunk
        before = Snapshot.of(state)
        state.chunk = partial  # what the ledger takes from it is settled by the part decoded
        self._keep_round(state, nudge, taken, fed, stretch)
        feed.own(state.nudger.detach())
        state.pending = Pending(feed, before)
        state.answer.held = len(before.answer.text)
        state.provisional_rounds += 1
        return True

    async def _settle(self, state: NudgeState) -> bool:
        """Wait for a provisional round's chunk; if it ended in EOS, undo the rounds since
        and end the answer with that chunk. False when it did."""
        if state.pending is None:
            return True
        feed, before = state.pending.feed, state.pending.before
        chunk = await feed.complete()
        state.pending = None
        state.answer.held = None
        if not chunk.eos:
            return True
        before.restore(state)
        self._end_with_chunk(state, chunk)
        return False

    def _take_nudge(self, state: NudgeState, nudge: str, words: int) -> None:
        """The nudge joins the answer (the nudger's ledger keeps its own tokens for it)."""
        lengths = state.nudger_text(nudge)
        if nudge:
            state.nudged_words += words
            state.answer.add("nudger", nudge, lengths)

    async def _base_stretch(self, state: NudgeState, params: NudgingParams, nudge: str,
                            takeover: tuple[int, TokenLogprob],
                            stream: AsyncIterator[tuple[int, TokenLogprob]]) -> Stretch:
        """The base writes on after `nudge` from its take-over token (see `Stretch`), and
        also stops at EOS or where it starts a new `Question:` turn."""
        room = state.room - state.nudge_tokens(nudge)
        stretch = Stretch(state.answer.text + nudge, params.chunk_tokens, room,
                          [takeover[0]], [takeover[1].token])
        eos_ids = state.base.engine.info.eos_token_ids
        reading = room > 1
        while reading:
            try:
                token_id, entry = await anext(stream)
            except StopAsyncIteration:
                stretch.close_part()
                break
            if token_id in eos_ids:
                stretch.close_part()
                break
            reading = stretch.add(token_id, entry.token,
                                  is_uncertain(entry.top[0].logprob, params.gamma))
            if reading and find_stop("".join(stretch.texts[-8:] + stretch.part_texts),
                                     PLAIN_STOP) is not None:
                stretch.close_part()  # the base starts a new turn: its answer is over
                break
        del stretch.ids[max(0, room):]
        return stretch

    def _keep_stretch(self, state: NudgeState, stretch: Stretch) -> None:
        ids, texts = _kept(state.answer.text, stretch)
        state.base_discarded += len(stretch.ids) - len(ids)
        run = "".join(texts)
        if not run:
            return
        state.answer.add("base", run, [len(t) for t in texts])
        state.base.ids += ids
        state.nudger_text(run)


def _kept(previous: str, stretch: Stretch) -> tuple[list[int], list[str]]:
    """The stretch's tokens kept after `previous` (the answer so far): up to a boundary
    both tokenizers see alike, and before any new turn the base began."""
    ids, texts = stretch.ids, stretch.texts[:len(stretch.ids)]
    keep = keep_whole_words(previous, texts, stretch.rejected)
    cut = find_stop("".join(texts[:keep]), PLAIN_STOP)
    if cut is not None:
        keep = tokens_before(texts, cut)
    return ids[:keep], texts[:keep]


class ChunkFeed:
    """The nudger's chunk (`chunk_tokens` tokens, fewer at EOS or the end of the
    budget), decoded by a task of its own so the base can work meanwhile."""

    def __init__(self, state: NudgeState, params: NudgingParams, options: SamplingOptions,
                 accounting: TokenAccounting) -> None:
        sampling = replace(
            options, max_tokens=min(params.chunk_tokens, state.room),
            temperature=_pick(params.nudger_temperature, options.temperature),
            top_p=_pick(params.nudger_top_p, options.top_p), logprobs=0, stop=(),
            seed=derive_seed(state.seed, "nudger", state.rounds),
            logit_bias=())  # the bias names base token ids
        self.chunk = Chunk()
        self._eos_ids = state.nudger.engine.info.eos_token_ids
        self._reading = Reading()
        self._session: TokenSession | None = None  # owned once the ledger hands it over
        self._grew = asyncio.Event()
        self._task = asyncio.create_task(self._decode(
            state.nudger.tokens(sampling, state.rid("n"), accounting, self._reading)))

    async def _decode(self, tokens: AsyncIterator[tuple[int, TokenLogprob]]) -> None:
        try:
            async with aclosing(tokens) as stream:
                async for token_id, entry in stream:
                    if token_id in self._eos_ids:
                        self.chunk.eos = True
                        break
                    self.chunk.ids.append(token_id)
                    self.chunk.texts.append(entry.token)
                    self._grew.set()
                else:
                    self.chunk.eos = self._reading.finish == "stop"
        finally:
            self._grew.set()

    @property
    def done(self) -> bool:
        return self._task.done()

    def own(self, session: TokenSession | None) -> None:
        """Take the session this chunk is decoded on: closed once the chunk is read."""
        self._session = session

    async def words(self, complete: int) -> ChunkWords:
        """The chunk's words once its first `complete` words are final (a later word
        has begun) or the chunk is done."""
        while True:
            words = ChunkWords.split(self.chunk.text)
            if self._task.done() or len(words.words) > complete:
                if self._task.done():
                    self._task.result()  # the nudger's engine failed: say so
                return words
            self._grew.clear()
            await self._grew.wait()

    async def complete(self) -> Chunk:
        try:
            await self._task
        finally:
            await self._close_session()
        return self.chunk

    async def cancel(self) -> None:
        try:
            if not self._task.done():
                self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        finally:
            await self._close_session()

    async def _close_session(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


def _base_options(state: NudgeState, params: NudgingParams,
                  options: SamplingOptions) -> SamplingOptions:
    return replace(
        options, max_tokens=max(1, state.room), logprobs=1, stop=(),
        temperature=_pick(params.base_temperature, options.temperature),
        top_p=_pick(params.base_top_p, options.top_p),
        seed=derive_seed(state.seed, "base", state.rounds))


def _start(request: DecodeRequest, params: NudgingParams, nudger: Engine,
           index: int) -> NudgeState:
    """Both ledgers from the conversation; a final assistant message is the answer's start."""
    messages = list(request.messages or ())
    prefill = messages.pop().content if messages and messages[-1].role == "assistant" else ""
    if not any(m.role == "user" for m in messages):
        raise InvalidRequest("Nudging needs a conversation with a user message (the "
                             "question the base model answers).", param="messages")
    base_ids = request.engine.tokenize(render_plain(messages), add_special_tokens=True)
    nudger_ids = nudger.tokenize(nudger.render_chat(messages), add_special_tokens=False)
    state = NudgeState(
        base=Ledger(request.engine, base_ids, prompt_tokens=len(base_ids)),
        nudger=Ledger(nudger, nudger_ids, prompt_tokens=len(nudger_ids)),
        answer=Answer(stops=request.options.stop), budget=request.options.max_tokens,
        guard=RepeatGuard(params.repeat_limit), request_id=f"{request.request_id}-{index}",
        seed=derive_seed(request.options.seed, "nudging", index),
    )
    if prefill:  # context for both models, not part of the returned text
        state.base_text(prefill)
        state.nudger.add_text(prefill)
    return state


def _pick(override: float | None, default: float) -> float:
    return default if override is None else override


def _stats(states: list[NudgeState], params: NudgingParams) -> dict:
    answer_tokens = sum(sum(s.answer.tokens.values()) for s in states)
    nudged = sum(s.answer.tokens["nudger"] for s in states)
    return {
        "nudging_model": params.nudging_model,
        "gamma": params.gamma,
        "nudge_ratio": round(nudged / answer_tokens, 4) if answer_tokens else 0.0,
        "nudged_words": sum(s.nudged_words for s in states),
        "nudged_tokens": nudged,
        "base_tokens_kept": sum(s.answer.tokens["base"] for s in states),
        "base_tokens_discarded": sum(s.base_discarded for s in states),
        "rounds": sum(s.rounds for s in states),
        "provisional_rounds": sum(s.provisional_rounds for s in states),
        "rounds_undone": sum(s.rounds_undone for s in states),
        "end": [s.end for s in states] if len(states) > 1 else states[0].end,
        "prefix_cache_hit_rate": _per_role(states, "cached_tokens"),
        "prefix_cache_hit_ceiling": _per_role(states, "cacheable_tokens"),
        "engine_requests": _sum_role(states, "requests"),
        "engine_prompt_tokens": _sum_role(states, "sent_tokens"),
        "engine_cached_tokens": _sum_role(states, "cached_tokens"),
        "engine_generated_tokens": _sum_role(states, "generated_tokens"),
    }


def _sum_role(states: list[NudgeState], counter: str) -> dict[str, int]:
    return {role: sum(getattr(getattr(s, role), counter) for s in states)
            for role in ("base", "nudger")}


def _per_role(states: list[NudgeState], counter: str) -> dict[str, float]:
    """A ledger counter as a share of the prompt tokens sent, per model."""
    return {role: round(sum(getattr(getattr(s, role), counter) for s in states)
                        / max(1, sum(getattr(s, role).sent_tokens for s in states)), 4)
            for role in ("base", "nudger")}
