"""`Engine` over an in-process vLLM `AsyncLLM`; the only module that imports vLLM."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

from vllm import SamplingParams
from vllm.engine.arg_utils import AsyncEngineArgs
from vllm.engine.protocol import StreamingInput
from vllm.exceptions import VLLMClientError
from vllm.inputs import TokensPrompt
from vllm.platforms import current_platform
from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams
from vllm.v1.engine.async_llm import AsyncLLM
from vllm.v1.engine.exceptions import EngineDeadError
from vllm.v1.metrics.loggers import StatLoggerBase

from decoding.engine import ModelInfo, ModelRole
from decoding.errors import EngineUnavailable, InvalidRequest
from decoding.hf_tokenizer import HFTokenizerText
from decoding.seeds import engine_seed
from decoding.step_profile import StepProfile
from decoding.types import (
    EngineCounters,
    GenerationChunk,
    JsonOutput,
    SamplingOptions,
    TokenLogprob,
    TopLogprob,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """How to start one engine. Sizes are explicit: several engines share one machine."""

    model_id: str
    weights_dir: str
    role: ModelRole | None = None
    max_model_len: int | None = None
    kv_cache_bytes: int = 2 << 30
    block_size: int = 32
    enforce_eager: bool = True
    dtype: str = "bfloat16"
    seed: int = 0
    cpu_cores: str | None = None  # VLLM_CPU_OMP_THREADS_BIND for this engine's worker


class VllmEngine(HFTokenizerText):
    """One served model: an `AsyncLLM` with prefix caching, plus its tokenizer."""

    def __init__(self, llm: AsyncLLM, info: ModelInfo, counters: EngineCounters) -> None:
        self._llm = llm
        self._tokenizer = llm.tokenizer
        self.info = info
        self.counters = counters

    @classmethod
    def start(cls, config: EngineConfig) -> VllmEngine:
        """Start the engine; call it on the event loop that will use it."""
        args = AsyncEngineArgs(
            model=config.weights_dir,
            served_model_name=config.model_id,
            max_model_len=config.max_model_len,
            kv_cache_memory_bytes=config.kv_cache_bytes,
            block_size=config.block_size,
            enable_prefix_caching=True,
            enforce_eager=config.enforce_eager,
            dtype=config.dtype,
            seed=config.seed,
        )
        counters = EngineCounters()
        llm = _start_bound(args, config.cpu_cores, counters)
        tokenizer = llm.tokenizer
        has_template = getattr(tokenizer, "chat_template", None) is not None
        eos = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
        generation_config = llm.model_config.try_get_generation_config() or {}
        configured_eos = generation_config.get("eos_token_id")
        if isinstance(configured_eos, int):
            eos.add(configured_eos)
        elif configured_eos:
            eos.update(configured_eos)
        info = ModelInfo(
            model_id=config.model_id,
            root=config.weights_dir,
            role=config.role or ("chat" if has_template else "base"),
            max_model_len=llm.model_config.max_model_len,
            vocab_size=llm.model_config.get_vocab_size(),
            eos_token_ids=tuple(sorted(eos)),
            bos_token_id=tokenizer.bos_token_id,
            has_chat_template=has_template,
            kv_block_size=llm.vllm_config.cache_config.block_size,
        )
        return cls(llm, info, counters)

    async def generate(
        self, prompt_token_ids: Sequence[int], options: SamplingOptions, request_id: str
    ) -> AsyncIterator[GenerationChunk]:
        with self._errors():  # SamplingParams validates too: its ValueError is a 400
            params = _sampling_params(options)
        finished = False
        first = True
        self.counters.running += 1
        try:
            stream = self._llm.generate(
                {"prompt_token_ids": list(prompt_token_ids)}, params, request_id
            )
            with self._errors():
                async for out in stream:
                    completion = out.outputs[0]
                    chunk = GenerationChunk(
                        token_ids=list(completion.token_ids),
                        text=completion.text,
                        logprobs=_logprobs(completion.logprobs, options),
                        finish_reason=completion.finish_reason if out.finished else None,
                        stop_reason=completion.stop_reason,
                        prompt_tokens=len(prompt_token_ids),
                        cached_tokens=out.num_cached_tokens or 0,
                    )
                    if first:
                        first = False
                        self.counters.requests += 1
                        self.counters.prompt_tokens += chunk.prompt_tokens
                        self.counters.cached_tokens += chunk.cached_tokens
                    self.counters.generated_tokens += len(chunk.token_ids)
                    finished = out.finished
                    yield chunk
        finally:
            self.counters.running -= 1
            if not finished:
                self.counters.aborted += 1
                await self.abort([request_id])

    def open_session(self, request_id: str) -> VllmSession:
        return VllmSession(self, request_id)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """vLLM's exceptions as ours. When the engine core dies, requests in flight get
        `EngineDeadError`, but one being added just then may get another error (a closed
        socket, wrapped as `EngineGenerateError`): once the engine is dead, any is ours."""
        try:
            yield
        except EngineDeadError as exc:
            raise self._death() from exc
        except (VLLMClientError, ValueError) as exc:
            if self.dead:
                raise self._death() from exc
            raise InvalidRequest(str(exc)) from exc
        except Exception as exc:
            if self.dead:
                raise self._death() from exc
            raise

    def _death(self) -> EngineUnavailable:
        return EngineUnavailable(f"the engine of {self.info.model_id!r} is dead")

    @property
    def dead(self) -> bool:
        """vLLM's monitor thread marks the engine dead as soon as its core process exits."""
        return not hasattr(self, "_llm") or self._llm.errored

    async def abort(self, request_ids: Sequence[str]) -> None:
        if not self.dead:
            await self._llm.abort(list(request_ids))

    async def check_health(self) -> None:
        if self.dead:
            raise self._death()

    async def shutdown(self) -> None:
        """Stop the engine's processes (they take seconds to exit: in a thread, so that
        several engines stop side by side)."""
        await asyncio.to_thread(self._llm.shutdown)
        # Drop the engine now: its __del__ shuts down again, which fails at interpreter exit.
        del self._llm


class VllmSession:
    """A `TokenSession` on vLLM's streaming-input requests: the request stays in the
    engine between steps with its KV cache, so a step computes only its new tokens
    (a fresh request would recompute the partial last KV block and pay a start-up)."""

    def __init__(self, engine: VllmEngine, request_id: str) -> None:
        self._engine = engine
        self._request_id = request_id
        self._inputs: asyncio.Queue[StreamingInput] = asyncio.Queue()
        self._outputs: AsyncGenerator | None = None
        self._context = 0
        self._params: tuple[SamplingOptions, SamplingParams] | None = None

    async def _input_stream(self) -> AsyncIterator[StreamingInput]:
        while True:  # ends when vLLM cancels it (the request is aborted)
            yield await self._inputs.get()

    async def step(self, new_token_ids: Sequence[int], options: SamplingOptions
                   ) -> GenerationChunk:
        if self._params is None or self._params[0] is not options:  # built once per run
            with self._engine._errors():
                self._params = options, _sampling_params(replace(options, max_tokens=1))
        params = self._params[1]
        self._inputs.put_nowait(StreamingInput(TokensPrompt(prompt_token_ids=list(
            new_token_ids)), params))
        counters = self._engine.counters
        first = self._outputs is None
        if first:
            self._outputs = self._engine._llm.generate(self._input_stream(), params,
                                                       self._request_id)
            counters.requests += 1
            counters.running += 1
        self._context += len(new_token_ids)
        with self._engine._errors():
            out = await anext(self._outputs, None)
            while out is not None and not out.outputs[0].token_ids:  # an input's own ack
                out = await anext(self._outputs, None)
        if out is None:  # the engine ended the request (aborted from elsewhere)
            raise EngineUnavailable(f"session {self._request_id} ended in the engine")
        completion = out.outputs[0]
        cached = (out.num_cached_tokens or 0) if first else self._context - len(new_token_ids)
        counters.prompt_tokens += len(new_token_ids)
        counters.cached_tokens += cached if first else 0
        counters.generated_tokens += 1
        return GenerationChunk(
            token_ids=list(completion.token_ids[-1:]), text="",
            logprobs=_logprobs(completion.logprobs[-1:] if completion.logprobs else None,
                               options),
            prompt_tokens=self._context, cached_tokens=cached)

    async def close(self) -> None:
        if self._outputs is None:
            return
        outputs, self._outputs = self._outputs, None
        self._engine.counters.running -= 1
        await outputs.aclose()  # aborts the request and cancels its input stream


class EngineSteps(StatLoggerBase):
    """vLLM's stat-logger interface over `StepProfile` (which holds the arithmetic)."""

    def __init__(self, counters: EngineCounters) -> None:
        self.profile = StepProfile(counters)

    def record(self, scheduler_stats, iteration_stats, mm_cache_stats=None, engine_idx=0):
        self.profile.record(scheduler_stats, iteration_stats)

    def log_engine_initialized(self) -> None:
        pass


def _start_bound(args: AsyncEngineArgs, cores: str | None, counters: EngineCounters
                 ) -> AsyncLLM:
    """Start the engine with its worker bound to `cores` (CPU backend; the worker
    process reads the binding from its environment when it is spawned). A binding the
    user set in the environment wins."""
    key = "VLLM_CPU_OMP_THREADS_BIND"
    loggers = [lambda _config, _index: EngineSteps(counters)]
    if cores is None or not current_platform.is_cpu() or key in os.environ:
        return AsyncLLM.from_engine_args(args, stat_loggers=loggers)
    os.environ[key] = cores
    try:
        logger.info("engine %s: worker bound to CPU cores %s", args.served_model_name, cores)
        return AsyncLLM.from_engine_args(args, stat_loggers=loggers)
    finally:
        del os.environ[key]


def _sampling_params(options: SamplingOptions) -> SamplingParams:
    return SamplingParams(
        max_tokens=options.max_tokens,
        temperature=options.temperature,
        top_p=options.top_p,
        top_k=options.top_k,
        min_p=options.min_p,
        seed=engine_seed(options.seed),
        stop=list(options.stop) or None,
        stop_token_ids=list(options.stop_token_ids) or None,
        ignore_eos=options.ignore_eos,
        min_tokens=options.min_tokens,
        presence_penalty=options.presence_penalty,
        frequency_penalty=options.frequency_penalty,
        repetition_penalty=options.repetition_penalty,
        logit_bias=dict(options.logit_bias) or None,
        logprobs=None if options.logprob_token_ids else options.logprobs,
        logprob_token_ids=list(options.logprob_token_ids) or None,
        skip_special_tokens=options.skip_special_tokens,
        include_stop_str_in_output=options.include_stop_str_in_output,
        structured_outputs=_structured_outputs(options.json_output),
        output_kind=RequestOutputKind.DELTA,
    )


def _structured_outputs(json_output: JsonOutput | None) -> StructuredOutputsParams | None:
    """JSON of a schema, or any JSON object (xgrammar, the CPU build's backend)."""
    if json_output is None:
        return None
    if json_output.schema is None:
        return StructuredOutputsParams(json_object=True)
    return StructuredOutputsParams(json=json.loads(json_output.schema))


def _logprobs(positions, options: SamplingOptions) -> list[TokenLogprob] | None:
    """Convert vLLM's per-position dicts; the chosen token is the first entry. With
    `logprob_token_ids`, vLLM adds exactly those tokens (whole-vocabulary log-probs)."""
    wanted, top_n = options.logprob_token_ids, options.logprobs
    if positions is None or (top_n is None and not wanted):
        return None
    result = []
    for position in positions:
        chosen_id, chosen = next(iter(position.items()))
        if wanted:
            entries = [(token_id, position[token_id]) for token_id in wanted]
        else:
            entries = [(token_id, lp) for token_id, lp in sorted(
                position.items(), key=lambda item: item[1].rank or 0)
                if lp.rank is not None and lp.rank <= top_n]
        top = tuple(TopLogprob(token_id, lp.decoded_token or "", lp.logprob)
                    for token_id, lp in entries)
        result.append(TokenLogprob(chosen_id, chosen.decoded_token or "", chosen.logprob, top))
    return result
