"""Turning a conversation or a raw prompt into token ids, within the model's context."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from decoding.engine import Engine, ModelInfo
from decoding.errors import ContextLengthExceeded, InvalidRequest
from decoding.types import Message

#: A base model continues text, so chat turns are written as a transcript and the
#: model stops where it would start the user's next turn.
PLAIN_TURN = {"user": "Question: ", "assistant": "Answer: "}
PLAIN_STOP = ("\nQuestion:",)


@dataclass(frozen=True, slots=True)
class Prompt:
    token_ids: list[int]
    text: str
    stop: tuple[str, ...] = ()


def render_plain(messages: Sequence[Message]) -> str:
    """The transcript a base model is given for a chat: system line, then Q/A turns."""
    parts = []
    for message in messages:
        if message.role == "system":
            parts.append(f"{message.content}\n\n")
        else:
            parts.append(f"{PLAIN_TURN[message.role]}{message.content}\n")
    if messages[-1].role != "assistant":
        parts.append(PLAIN_TURN["assistant"].rstrip())
    return "".join(parts).rstrip("\n")


def chat_prompt(engine: Engine, messages: Sequence[Message]) -> Prompt:
    """Chat models get their own template; base models a plain transcript (with BOS)."""
    if not messages:
        raise InvalidRequest("messages must not be empty", param="messages")
    if engine.info.has_chat_template:
        continue_final = messages[-1].role == "assistant"
        text = engine.render_chat(
            messages, add_generation_prompt=not continue_final,
            continue_final_message=continue_final,
        )
        return Prompt(engine.tokenize(text, add_special_tokens=False), text)
    text = render_plain(messages)
    return Prompt(engine.tokenize(text, add_special_tokens=True), text, PLAIN_STOP)


def resolve_max_tokens(info: ModelInfo, prompt_tokens: int, max_tokens: int | None) -> int:
    """The completion budget: what was asked, or all the context that is left."""
    room = info.max_model_len - prompt_tokens
    if room <= 0 or (max_tokens is not None and max_tokens > room):
        asked = f"{prompt_tokens + (max_tokens or 0)} tokens ({prompt_tokens} in the prompt"
        asked += f", {max_tokens} for the completion)" if max_tokens else ")"
        raise ContextLengthExceeded(
            f"This model's maximum context length is {info.max_model_len} tokens. "
            f"However, you requested {asked}. Please reduce the length of the "
            "prompt or of max_tokens.",
            param="max_tokens" if room > 0 else "messages",
        )
    return room if max_tokens is None else max_tokens
