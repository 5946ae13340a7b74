"""Steps both generation endpoints share: find the engine, pick the strategy, collect."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol, TypeVar

from fastapi import Request

from decoding.engine import Engine
from decoding.errors import EngineUnavailable, ModelNotFound
from decoding.metered import MeteredEngine, Tally
from decoding.strategies import STRATEGIES, DecodeRequest, DecodeRun, TextDelta
from decoding.strategies.base import Progress, merge_streams
from decoding.types import FinishReason, Message, SamplingOptions, TokenLogprob
from server import logs
from server.config import Settings
from server.draining import Drain
from server.errors import APIError
from server.metrics import Metrics
from server.schemas.alignment import Alignment, AlignmentContext, parse_alignment
from server.schemas.common import AlignmentInfo, PromptTokensDetails, SamplingRequest, Usage
from server.selection import Capabilities, Selection, Source, select
from server.streaming import comment, sse

T = TypeVar("T")
logger = logging.getLogger(__name__)
#: Response header naming the strategy that ran (for clients behind body-stripping gateways).
STRATEGY_HEADER = "X-Alignment-Strategy"


@dataclass(frozen=True, slots=True)
class Served:
    """What every request may use: the engines, what they can do, the server's state."""

    engines: Mapping[str, Engine]
    capabilities: Capabilities
    metrics: Metrics
    settings: Settings
    drain: Drain

    def select(self, body: SamplingRequest, header: str | None) -> tuple[Selection, Engine]:
        """The strategy's source and the engine of the (alias-resolved) model; a dead
        engine is a 503 before the first byte, a stream's too."""
        selection = select(body.model, body.alignment, header, self.engines)
        engine = lookup_engine(self.engines, selection.model)
        if engine.dead:
            raise EngineUnavailable(f"the engine of {selection.model!r} is dead")
        return selection, engine


def lookup_engine(engines: Mapping[str, Engine], model: str) -> Engine:
    try:
        return engines[model]
    except KeyError:
        raise ModelNotFound(f"The model {model!r} does not exist; see /v1/models.",
                            param="model") from None


def check_n(body: SamplingRequest, max_n: int) -> None:
    if body.n > max_n:
        raise APIError(400, f"n must be at most {max_n} on this server.", param="n",
                       code="invalid_value")


def sampling_options(body: SamplingRequest, *, max_tokens: int, extra_stop: Sequence[str] = (),
                     logprobs: int | None = None) -> SamplingOptions:
    return SamplingOptions(
        max_tokens=max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        top_k=body.top_k,
        min_p=body.min_p,
        seed=body.seed,
        stop=body.stop_list() + tuple(extra_stop),
        stop_token_ids=tuple(body.stop_token_ids or ()),
        ignore_eos=body.ignore_eos,
        min_tokens=body.min_tokens,
        presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
        repetition_penalty=body.repetition_penalty,
        logit_bias=tuple((body.logit_bias or {}).items()),
        logprobs=logprobs,
        skip_special_tokens=body.skip_special_tokens,
        include_stop_str_in_output=body.include_stop_str_in_output,
        json_output=body.response_format.json_output() if body.response_format else None,
    )


@dataclass(slots=True)
class Choice:
    """One choice's output, accumulated from its deltas."""

    text: str = ""
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: FinishReason | None = None

    def add(self, delta: TextDelta) -> None:
        self.text += delta.text
        self.logprobs.extend(delta.logprobs or ())
        self.finish_reason = delta.finish_reason or self.finish_reason


@dataclass(slots=True, weakref_slot=True)
class Decoding:
    """A validated request ready to run: the strategy, its inputs and its bookkeeping."""

    request_id: str
    model: str
    alignment: Alignment
    selected_by: Source
    requests: list[DecodeRequest]
    metrics: Metrics
    endpoint: str
    drain: Drain
    deadline: float | None = None
    runs: list[DecodeRun] = field(default_factory=list)
    tally: Tally = field(default_factory=Tally)  # tokens the engines decoded for it
    first_text: float | None = None  # seconds to the first answer text
    created: int = field(default_factory=lambda: int(time.time()))
    started: float = field(default_factory=time.monotonic)
    release: Callable[[], None] = lambda: None  # set by the admission gate

    @classmethod
    def prepare(cls, *, prefix: str, endpoint: str, served: Served, selection: Selection,
                body: SamplingRequest, prompts: Sequence[list[int]], options: SamplingOptions,
                messages: tuple[Message, ...] | None) -> Decoding:
        engines, settings = served.engines, served.settings
        context = AlignmentContext(selection.model, engines, settings,
                                   served.capabilities.judges)
        alignment = parse_alignment(selection.alignment, context)
        strategy = STRATEGIES[alignment.strategy]
        if strategy.needs_messages and messages is None:
            raise APIError(400, f"The {strategy.name} strategy works on conversations: use "
                           "/v1/chat/completions.", param="alignment.strategy")
        if options.logprobs is not None and not strategy.supports_logprobs:
            raise APIError(400, f"logprobs are not available with the {strategy.name} "
                           "strategy.", param="logprobs")
        strategy.check_options(options)
        if strategy.greedy_default and "temperature" not in body.model_fields_set:
            options = replace(options, temperature=0.0)
        # engine ids start with the X-Request-Id; a few random hex digits keep two
        # requests that share one apart (vLLM aborts by id)
        rid = logs.request_id.get()
        engine_id = f"{rid}-{uuid.uuid4().hex[:8]}"
        tally = Tally()
        metered = {name: MeteredEngine(e, tally) for name, e in engines.items()}
        requests = [
            DecodeRequest(f"{engine_id}-{i}", metered[selection.model], metered, ids, options,
                          body.n, messages, alignment.params)
            for i, ids in enumerate(prompts)
        ]
        return cls(f"{prefix}-{rid}", body.model, alignment, selection.source, requests,
                   served.metrics, endpoint, served.drain,
                   deadline=settings.request_timeout or None,
                   tally=tally)

    async def deltas(self) -> AsyncIterator[TextDelta | Progress]:
        """All prompts' deltas; choice index = prompt index × n + the strategy's index."""
        strategy = STRATEGIES[self.alignment.strategy]
        self.runs = [DecodeRun() for _ in self.requests]

        async def one(i: int) -> AsyncIterator[TextDelta | Progress]:
            request = self.requests[i]
            async for delta in strategy.run(request, self.runs[i]):
                delta.index += i * request.n
                yield delta

        status = "error"
        limit: asyncio.Timeout | None = None
        try:
            async with self.drain.deadline(self.deadline) as limit:
                async for delta in merge_streams([one(i) for i in range(len(self.requests))]):
                    if self.first_text is None and isinstance(delta, TextDelta) and delta.text:
                        self.first_text = time.monotonic() - self.started
                    yield delta
            status = "ok"
        except TimeoutError:
            if limit is not None and self.drain.cut_short(limit):
                status = "shutdown"
                raise APIError(503, "The server is shutting down and the request did not "
                               "finish in its grace period; its engine requests were "
                               "aborted. Retry it.", type="service_unavailable_error",
                               code="server_shutting_down") from None
            status = "timeout"
            raise APIError(503, f"The request did not finish within {self.deadline} s; its "
                           "engine requests were aborted.", type="service_unavailable_error",
                           code="deadline_exceeded") from None
        except (asyncio.CancelledError, GeneratorExit):
            status = "cancelled"
            raise
        finally:
            self.release()
            usage = self.usage()
            seconds = time.monotonic() - self.started
            logger.info("%s %s %s: %d prompt + %d completion tokens in %.2f s", self.endpoint,
                        self.alignment.strategy, status, usage.prompt_tokens,
                        usage.completion_tokens, seconds)
            self.metrics.record_request(
                endpoint=self.endpoint, strategy=self.alignment.strategy,
                selected_by=self.selected_by, status=status,
                seconds=seconds, first_text=self.first_text,
                engine_tokens=self.tally.generated,
                prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens)

    async def collect(self) -> list[Choice]:
        choices = [Choice() for _ in range(len(self.requests) * self.requests[0].n)]
        async for delta in self.deltas():
            if isinstance(delta, TextDelta):
                choices[delta.index].add(delta)
        return choices

    @property
    def engine_model(self) -> str:
        """The served model that decodes (the request may have named an alias)."""
        return self.requests[0].engine.info.model_id

    def usage(self) -> Usage:
        prompt = sum(run.accounting.prompt_tokens or len(request.prompt_token_ids)
                     for run, request in zip(self.runs, self.requests, strict=False))
        completion = sum(run.accounting.completion_tokens for run in self.runs)
        cached = sum(run.accounting.cached_prompt_tokens for run in self.runs)
        return Usage(prompt_tokens=prompt, completion_tokens=completion,
                     total_tokens=prompt + completion,
                     prompt_tokens_details=PromptTokensDetails(cached_tokens=cached))

    def alignment_info(self) -> AlignmentInfo:
        strategy, selected_by = self.alignment.strategy, self.selected_by
        if len(self.runs) == 1:
            return AlignmentInfo(strategy=strategy, selected_by=selected_by,
                                 stats=self.runs[0].stats, **self.runs[0].extras)
        return AlignmentInfo(strategy=strategy, selected_by=selected_by,
                             stats={"prompts": [run.stats for run in self.runs]})


class StreamChunk(Protocol):
    usage: Usage | None
    alignment: AlignmentInfo | None


async def framed_chunks(decoding: Decoding,
                        chunks: AsyncIterator[tuple[StreamChunk, bool] | Progress],
                        *, include_usage: bool, empty: Callable[[], StreamChunk]
                        ) -> AsyncIterator[str]:
    """SSE events for (chunk, finishing) pairs, sent as soon as they come; finishing chunks
    wait for the run to end so the last event can carry `usage` and `alignment`."""
    hidden = {"alignment"} if include_usage else {"alignment", "usage"}
    held: list[StreamChunk] = []
    async for item in chunks:
        if isinstance(item, Progress):
            yield comment(item.note)
            continue
        chunk, finishing = item
        if finishing:
            held.append(chunk)
        else:
            yield sse(chunk, exclude=hidden)
    if include_usage:
        for chunk in held:
            yield sse(chunk, exclude={"alignment"})
        held = [empty()]
        held[-1].usage = decoding.usage()
    for chunk in held[:-1]:
        yield sse(chunk, exclude=hidden)
    held[-1].alignment = decoding.alignment_info()
    yield sse(held[-1], exclude=None if include_usage else {"usage"})


async def until_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Run `work`, cancelling it (and so its engine requests) if the client leaves."""
    task = asyncio.ensure_future(work)

    async def wait_disconnect() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(wait_disconnect())
    try:
        await asyncio.wait([task, watcher], return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if task.cancelled():
        raise APIError(499, "Client closed the request.")
    return task.result()
