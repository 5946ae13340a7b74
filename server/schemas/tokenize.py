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

    @model_validator(mode="before")
    @classmethod
    def _one_ending(cls, data: Any) -> Any:
        """As vLLM: both set true is an error (the defaults alone are not)."""
        if isinstance(data, dict) and data.get("continue_final_message") is True \
                and data.get("add_generation_prompt") is True:
            raise ValueError("Cannot set both `continue_final_message` and "
                             "`add_generation_prompt` to True.")
        return data


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
