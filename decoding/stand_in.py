"""A deterministic stand-in engine for unit tests of bookkeeping (never the only test).

Tokens are bytes (0-255) plus BOS and EOS. The "model" scores a fixed alphabet by a
hash of the last few tokens, so outputs are repeatable, depend on the prompt, and come
with real log-probabilities. A prefix cache is simulated in whole blocks. It ignores
`SamplingOptions.json_output` (no grammar): `calls` records what each request was given.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
from collections.abc import AsyncIterator, Sequence

from decoding.engine import ModelInfo, ModelRole
from decoding.errors import ContextLengthExceeded, EngineUnavailable
from decoding.types import (
    EngineCounters,
    GenerationChunk,
    Message,
    SamplingOptions,
    TokenLogprob,
    TopLogprob,
)

BOS, EOS = 256, 257
ALPHABET = (*tuple(b"etaoin shrdlu."), EOS)
BLOCK = 4


class StandInEngine:
    def __init__(self, model_id: str = "stand-in", *, role: ModelRole = "chat",
                 max_model_len: int = 512, local: bool = True, step_seconds: float = 0
                 ) -> None:
        self.info = ModelInfo(model_id, f"/stand-in/{model_id}", role, max_model_len, 258,
                              (EOS,), BOS, role == "chat", BLOCK, local=local)
        self.counters = EngineCounters()
        self.dead = False
        self.step_seconds = step_seconds  # what each decoded token takes (a slower model)
        self.aborted: list[str] = []
        self.prompts: list[list[int]] = []
        self.calls: list[tuple[str, SamplingOptions | None]] = []  # (request id, options)

    def tokenize(self, text: str, *, add_special_tokens: bool) -> list[int]:
        return ([BOS] if add_special_tokens else []) + list(text.encode())

    def detokenize(self, token_ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        return bytes(t for t in token_ids if t < 256).decode(errors="replace")

    def token_texts(self) -> Sequence[str]:
        return [bytes([i]).decode(errors="replace") if i < 256 else "" for i in range(258)]

    def render_chat(self, messages: Sequence[Message], *, add_generation_prompt: bool = True,
                    continue_final_message: bool = False) -> str:
        if continue_final_message and add_generation_prompt:  # as transformers refuses it
            raise ValueError("continue_final_message and add_generation_prompt are not "
                             "compatible.")
        text = "".join(f"<{m.role}>{m.content}</{m.role}>" for m in messages)
        if continue_final_message:
            return text.removesuffix(f"</{messages[-1].role}>")
        return text + ("<assistant>" if add_generation_prompt else "")

    def distribution(self, context: Sequence[int]) -> list[tuple[int, float]]:
        """Log-probabilities over `ALPHABET`, best first; EOS grows likelier with length."""
        salt = self.info.model_id.encode()  # different models, different "knowledge"
        digest = hashlib.sha256(salt + bytes(t % 256 for t in context[-6:])).digest()
        scores = [digest[i] / 64 for i in range(len(ALPHABET))]
        scores[-1] = len(context) / 40 - 3
        norm = math.log(sum(math.exp(s) for s in scores))
        pairs = ((tok, s - norm) for tok, s in zip(ALPHABET, scores, strict=True))
        return sorted(pairs, key=lambda x: -x[1])

    async def generate(self, prompt_token_ids: Sequence[int], options: SamplingOptions,
                       request_id: str) -> AsyncIterator[GenerationChunk]:
        self.check_alive()
        self.calls.append((request_id, options))
        prompt = list(prompt_token_ids)
        if len(prompt) + options.max_tokens > self.info.max_model_len:
            raise ContextLengthExceeded("prompt and max_tokens exceed the context")
        cached = self.cache_lookup(prompt)
        self.counters.requests += 1
        self.counters.prompt_tokens += len(prompt)
        self.counters.cached_tokens += cached
        rng = random.Random(options.seed)
        context, text, finished = list(prompt), "", False
        self.counters.running += 1
        try:
            for step in range(options.max_tokens):
                await asyncio.sleep(self.step_seconds)
                self.check_alive()  # as vLLM: a dying engine fails the requests in flight
                dist = self.distribution(context)
                ends = {*options.stop_token_ids, *(() if options.ignore_eos else (EOS,))}
                if options.ignore_eos or step < options.min_tokens:  # as vLLM: no end yet
                    dist = [d for d in dist if d[0] != EOS and (
                        step >= options.min_tokens or d[0] not in ends)]
                token, logprob = dist[0] if options.temperature == 0 else _sample(dist, rng)
                context.append(token)
                done = token in ends or step + 1 == options.max_tokens
                piece = self.detokenize([token])
                stop = next((s for s in options.stop if s in text + piece), None)
                if stop is not None:
                    piece = (text + piece)[: (text + piece).index(stop)][len(text):]
                text += piece
                reason = "stop" if token in ends or stop else "length" if done else None
                finished = reason is not None
                self.counters.generated_tokens += 1
                yield GenerationChunk(
                    [token], piece, _logprobs(token, logprob, dist, options), reason, stop,
                    len(prompt), cached)
                if finished:
                    return
        finally:
            self.counters.running -= 1
            if not finished:
                self.aborted.append(request_id)

    def cache_lookup(self, prompt: list[int]) -> int:
        """Whole blocks of `prompt` an earlier prompt shares (never its last token)."""
        cached = max((_common_prefix(prompt, p) for p in self.prompts), default=0)
        self.prompts.append(prompt)
        return min(cached, len(prompt) - 1) // BLOCK * BLOCK

    def open_session(self, request_id: str) -> StandInSession:
        self.calls.append((request_id, None))
        return StandInSession(self, request_id)

    async def abort(self, request_ids: Sequence[str]) -> None:
        self.aborted.extend(request_ids)

    async def check_health(self) -> None:
        self.check_alive()

    def check_alive(self) -> None:
        if self.dead:
            raise EngineUnavailable(f"the stand-in engine of {self.info.model_id!r} is dead")

    async def shutdown(self) -> None:
        self.dead = True


class StandInSession:
    """Greedy steps on a growing context, as `VllmSession` takes them (greedy only)."""

    def __init__(self, engine: StandInEngine, request_id: str) -> None:
        self._engine = engine
        self._request_id = request_id
        self._context: list[int] = []

    async def step(self, new_token_ids: Sequence[int], options: SamplingOptions
                   ) -> GenerationChunk:
        self._engine.check_alive()
        counters = self._engine.counters
        first = not self._context
        if first:
            counters.requests += 1
            counters.running += 1
        self._context += new_token_ids  # before any await: `close` must see it open
        await asyncio.sleep(self._engine.step_seconds)
        cached = (self._engine.cache_lookup(list(self._context)) if first
                  else len(self._context) - len(new_token_ids))
        dist = self._engine.distribution(self._context)
        token, logprob = dist[0]
        counters.prompt_tokens += len(new_token_ids)
        counters.generated_tokens += 1
        return GenerationChunk([token], "", _logprobs(token, logprob, dist, options),
                               prompt_tokens=len(self._context), cached_tokens=cached)

    async def close(self) -> None:
        if self._context:
            self._engine.counters.running -= 1
            self._context = []


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _sample(dist: list[tuple[int, float]], rng: random.Random) -> tuple[int, float]:
    return rng.choices(dist, weights=[math.exp(lp) for _, lp in dist])[0]


def _logprobs(token: int, logprob: float, dist: list[tuple[int, float]],
              options: SamplingOptions) -> list[TokenLogprob] | None:
    """The top `logprobs` tokens, or exactly `logprob_token_ids` (−inf off the alphabet)."""
    if options.logprob_token_ids:
        known = dict(dist)
        pairs = [(t, known.get(t, -math.inf)) for t in options.logprob_token_ids]
    elif options.logprobs is not None:
        pairs = dist[: options.logprobs]
    else:
        return None
    top = tuple(TopLogprob(t, chr(t) if t < 256 else "", lp) for t, lp in pairs)
    return [TokenLogprob(token, chr(token) if token < 256 else "", logprob, top)]
