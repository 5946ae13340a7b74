"""The engine protocol's text methods over a Hugging Face tokenizer.

The in-process vLLM engine and the remote engine both keep such a tokenizer; they
inherit these methods instead of each writing them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from decoding.engine import ModelInfo
from decoding.errors import InvalidRequest
from decoding.types import Message


class HFTokenizerText:
    """Needs `self._tokenizer` (a Hugging Face tokenizer) and `self.info`."""

    _tokenizer: Any
    info: ModelInfo
    _token_texts: tuple[str, ...] | None = None

    def tokenize(self, text: str, *, add_special_tokens: bool) -> list[int]:
        return list(self._tokenizer.encode(text, add_special_tokens=add_special_tokens))

    def detokenize(self, token_ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        return self._tokenizer.decode(list(token_ids), skip_special_tokens=skip_special_tokens)

    def token_texts(self) -> Sequence[str]:
        """Each id's own text, decoded once ('' for ids past the tokenizer's end)."""
        if self._token_texts is None:
            size = self.info.vocab_size
            known = min(size, len(self._tokenizer))
            texts = self._tokenizer.batch_decode([[i] for i in range(known)])
            self._token_texts = (*texts, *[""] * (size - known))
        return self._token_texts

    def render_chat(self, messages: Sequence[Message], *, add_generation_prompt: bool = True,
                    continue_final_message: bool = False) -> str:
        if not self.info.has_chat_template:
            raise InvalidRequest(f"model {self.info.model_id!r} has no chat template")
        return self._tokenizer.apply_chat_template(
            [{"role": m.role, "content": m.content} for m in messages], tokenize=False,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=continue_final_message)
