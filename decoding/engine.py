"""The engine protocol: everything a strategy may ask of a model, and no more."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from decoding.types import EngineCounters, GenerationChunk, Message, SamplingOptions

ModelRole = Literal["chat", "base"]


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the server and the strategies need to know about a loaded model."""

    model_id: str
    root: str
    role: ModelRole
    max_model_len: int
    vocab_size: int
    eos_token_ids: tuple[int, ...]
    bos_token_id: int | None
    has_chat_template: bool
    kv_block_size: int = 1  # the prefix cache reuses whole blocks only (1: unknown)
    local: bool = True  # runs in this server's processes: its death is the server's


class TokenSession(Protocol):
    """One engine request that keeps its context (and KV cache) between steps.

    Each step appends tokens and decodes exactly one more token, which is *not* part of
    the context: the next step's tokens follow the context, so the caller decides
    whether the decoded token stays (by sending it) or not.
    """

    async def step(self, new_token_ids: Sequence[int], options: SamplingOptions
                   ) -> GenerationChunk: ...

    async def close(self) -> None: ...


class Engine(Protocol):
    """An async text-generation engine on token ids, with its tokenizer.

    `generate` streams deltas; a caller that stops early must `abort` the request
    (the strategies' `EngineCalls` does it for them).
    """

    info: ModelInfo
    counters: EngineCounters

    @property
    def dead(self) -> bool:
        """Known to be unable to serve; cheap, so it is asked before every request."""
        ...

    def tokenize(self, text: str, *, add_special_tokens: bool) -> list[int]: ...

    def detokenize(self, token_ids: Sequence[int], *, skip_special_tokens: bool = True) -> str: ...

    def token_texts(self) -> Sequence[str]:
        """Every token id's own text (index = id); computed once per engine."""
        ...

    def render_chat(
        self,
        messages: Sequence[Message],
        *,
        add_generation_prompt: bool = True,
        continue_final_message: bool = False,
    ) -> str: ...

    def generate(
        self, prompt_token_ids: Sequence[int], options: SamplingOptions, request_id: str
    ) -> AsyncIterator[GenerationChunk]: ...

    def open_session(self, request_id: str) -> TokenSession | None:
        """A `TokenSession`, or None when the engine cannot keep a request open."""
        ...

    async def abort(self, request_ids: Sequence[str]) -> None: ...

    async def check_health(self) -> None:
        """Raise `EngineUnavailable` if the engine cannot serve requests."""

    async def shutdown(self) -> None: ...
