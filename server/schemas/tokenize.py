"""`/tokenize` and `/detokenize` wire models, in vLLM's shapes."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from server.schemas.chat import ChatMessageIn
from server.schemas.fields import INT64_MAX, Text


class _TokenizeBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, description="default: the first served model")
    return_token_strs: bool | None = Field(False, description="also each token's text")


class TokenizePromptRequest(_TokenizeBase):
    prompt: Text
    add_special_tokens: bool = True


class TokenizeChatRequest(_TokenizeBase):
    messages: list[ChatMessageIn] = Field(min_length=1)
    add_generation_prompt: bool = True
    continue_final_message: bool = False
    add_special_tokens: bool = Field(False, description="on top of the chat template's")

    @model_validator(mode="after")
    def _one_ending(self) -> TokenizeChatRequest:
        """Both asked for is an error, as in vLLM; `continue_final_message` alone turns
        the default generation prompt off (the chat template cannot do both)."""
        if self.continue_final_message and self.add_generation_prompt:
            if "add_generation_prompt" in self.model_fields_set:
                raise ValueError("Cannot set both `continue_final_message` and "
                                 "`add_generation_prompt` to True.")
            self.add_generation_prompt = False
        return self


def _kind(data: Any) -> str:
    return "Chat" if isinstance(data, dict) and "messages" in data else "Prompt"


TokenizeRequest = Annotated[
    Annotated[TokenizeChatRequest, Tag("Chat")] | Annotated[TokenizePromptRequest, Tag("Prompt")],
    Discriminator(_kind),
]


class TokenizeResponse(BaseModel):
    count: int
    max_model_len: int
    tokens: list[int]
    token_strs: list[str] | None = None


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, description="default: the first served model")
    tokens: list[Annotated[int, Field(ge=0, le=INT64_MAX)]]


class DetokenizeResponse(BaseModel):
    prompt: str
