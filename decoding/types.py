"""Plain data passed between the server, the strategies and the engines."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Role = Literal["system", "user", "assistant"]
FinishReason = Literal["stop", "length", "abort"]


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class JsonOutput:
    """Output constrained to JSON: any object (`schema` None), or an instance of `schema`
    (JSON Schema as JSON text, so that options stay hashable)."""

    schema: str | None = None


@dataclass(frozen=True, slots=True)
class SamplingOptions:
    """Sampling knobs, named as in vLLM's `SamplingParams` (see `vllm_engine`)."""

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    min_tokens: int = 0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: tuple[tuple[int, float], ...] = ()
    logprobs: int | None = None
    # Log-probabilities of exactly these tokens (over the whole vocabulary) at each
    # generated position, in `TokenLogprob.top` instead of the `logprobs` most likely.
    logprob_token_ids: tuple[int, ...] = ()
    skip_special_tokens: bool = True
    include_stop_str_in_output: bool = False
    json_output: JsonOutput | None = None  # vLLM's structured outputs


@dataclass(frozen=True, slots=True)
class TopLogprob:
    token_id: int
    token: str
    logprob: float


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """The chosen token's log-probability and the most likely alternatives."""

    token_id: int
    token: str
    logprob: float
    top: tuple[TopLogprob, ...] = ()


@dataclass(slots=True)
class GenerationChunk:
    """New output of one engine request since the previous chunk."""

    token_ids: list[int]
    text: str
    logprobs: list[TokenLogprob] | None = None
    finish_reason: FinishReason | None = None
    stop_reason: str | int | None = None
    prompt_tokens: int = 0
    cached_tokens: int = 0

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


@dataclass(slots=True)
class TokenAccounting:
    """Token counts of one decoding run, summed over its engine requests."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    engine_requests: int = 0
    engine_prompt_tokens: int = 0
    engine_cached_tokens: int = 0
    engine_generated_tokens: int = 0  # by every engine request, used or not
    engine_cacheable_tokens: int = 0  # the most a perfect prefix cache could have served
    prompt_cache_recorded: bool = False

    def record_engine_request(self, chunk: GenerationChunk, block_size: int, *,
                              own_prompt: bool | None = None) -> None:
        """Count one engine request. `usage` reports the cache hits of the first request
        on the client's own prompt (`own_prompt`); None: take the run's first request."""
        if own_prompt is None:
            own_prompt = not self.engine_requests
        if own_prompt and not self.prompt_cache_recorded:
            self.cached_prompt_tokens = chunk.cached_tokens
            self.prompt_cache_recorded = True
        self.engine_requests += 1
        self.engine_prompt_tokens += chunk.prompt_tokens
        self.engine_cached_tokens += chunk.cached_tokens
        self.engine_cacheable_tokens += cacheable(chunk.prompt_tokens, block_size)

    def engine_totals(self) -> dict[str, int]:
        """What the strategy's engine requests cost, for `alignment.stats`."""
        return {"requests": self.engine_requests, "prompt_tokens": self.engine_prompt_tokens,
                "cached_tokens": self.engine_cached_tokens,
                "generated_tokens": self.engine_generated_tokens}

    @property
    def prefix_cache_hit_rate(self) -> float:
        if not self.engine_prompt_tokens:
            return 0.0
        return self.engine_cached_tokens / self.engine_prompt_tokens

    @property
    def prefix_cache_hit_ceiling(self) -> float:
        """The hit rate had every earlier token been cached: whole blocks, last token not."""
        if not self.engine_prompt_tokens:
            return 0.0
        return self.engine_cacheable_tokens / self.engine_prompt_tokens


def cacheable(prompt_tokens: int, block_size: int) -> int:
    """Prompt tokens a prefix cache of `block_size`-token blocks can serve at most: it
    keeps whole blocks, and the last prompt token is always computed (for its logits)."""
    return max(0, prompt_tokens - 1) // block_size * block_size


@dataclass(slots=True)
class EngineCounters:
    """Cumulative per-engine counters, read by the server's metrics endpoint."""

    requests: int = 0
    running: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    generated_tokens: int = 0
    aborted: int = 0
    # what the engine's scheduler ran (local vLLM engines only; see `StepProfile`)
    steps: int = 0                  # engine iterations that did work
    step_requests: int = 0          # requests in those iterations, summed (÷ steps: batch)
    computed_prompt_tokens: int = 0  # prompt tokens prefilled (not served from cache)
    busy_seconds: float = 0.0       # time between iterations while requests were running
    batch_sizes: dict[int, int] = field(default_factory=dict)  # steps by batch size (2^k)
