"""Tokenizing as the generation endpoints do, so `count` predicts `usage.prompt_tokens`."""

from __future__ import annotations

from collections.abc import Mapping

from decoding.engine import Engine
from decoding.prompts import render_plain
from decoding.types import Message
from server.errors import APIError
from server.schemas.tokenize import (
    DetokenizeRequest,
    DetokenizeResponse,
    TokenizeChatRequest,
    TokenizePromptRequest,
    TokenizeResponse,
)
from server.selection import split_alias
from server.serving.common import lookup_engine


def _engine(engines: Mapping[str, Engine], model: str | None) -> Engine:
    """The named model (an alias names its model), or the first served one."""
    if model is None:
        return next(iter(engines.values()))
    return lookup_engine(engines, split_alias(model, engines)[0])


def tokenize(body: TokenizeChatRequest | TokenizePromptRequest,
             engines: Mapping[str, Engine]) -> TokenizeResponse:
    engine = _engine(engines, body.model)
    if isinstance(body, TokenizePromptRequest):
        ids = engine.tokenize(body.prompt, add_special_tokens=body.add_special_tokens)
    else:
        messages = [Message("system" if m.role == "developer" else m.role, m.text())
                    for m in body.messages]
        if engine.info.has_chat_template:
            text = engine.render_chat(messages, add_generation_prompt=body.add_generation_prompt,
                                      continue_final_message=body.continue_final_message)
            ids = engine.tokenize(text, add_special_tokens=body.add_special_tokens)
        else:  # the plain transcript chat completions give a base model (with BOS)
            ids = engine.tokenize(render_plain(messages), add_special_tokens=True)
    texts = engine.token_texts() if body.return_token_strs else None
    return TokenizeResponse(count=len(ids), max_model_len=engine.info.max_model_len,
                            tokens=ids, token_strs=[texts[i] for i in ids] if texts else None)


def detokenize(body: DetokenizeRequest, engines: Mapping[str, Engine]) -> DetokenizeResponse:
    engine = _engine(engines, body.model)
    vocab = engine.info.vocab_size
    if any(t >= vocab for t in body.tokens):
        raise APIError(400, f"token ids must lie in [0, {vocab}).", param="tokens",
                       code="invalid_value")
    return DetokenizeResponse(prompt=engine.detokenize(body.tokens, skip_special_tokens=False))
