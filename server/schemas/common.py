"""Wire models shared by chat and completions: sampling fields, usage, alignment info."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from decoding.types import JsonOutput
from server.schemas.alignment import AlignmentField
from server.schemas.fields import INT64_MAX, INT64_MIN, StopText, Text


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: bool = False
    continuous_usage_stats: bool = False


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    schema_: dict[str, Any] = Field(alias="schema", description="a JSON Schema")
    strict: bool | None = Field(None, description="always enforced (vLLM's structured "
                                "outputs constrain every token)")


class ResponseFormat(BaseModel):
    """OpenAI's `response_format`; JSON goes through vLLM's structured outputs."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_iff_json_schema(self) -> ResponseFormat:
        if (self.type == "json_schema") != (self.json_schema is not None):
            raise ValueError("json_schema is required with type 'json_schema' (and only then)")
        return self

    def json_output(self) -> JsonOutput | None:
        if self.type == "text":
            return None
        schema = self.json_schema.schema_ if self.json_schema is not None else None
        return JsonOutput(json.dumps(schema) if schema is not None else None)


class SamplingRequest(BaseModel):
    """Fields common to both generation endpoints (OpenAI's, then vLLM's extras)."""

    model_config = ConfigDict(extra="forbid")

    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1)
    seed: int | None = Field(None, ge=INT64_MIN, le=INT64_MAX)
    stop: StopText | list[StopText] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    logit_bias: dict[int, float] | None = None
    user: Text | None = None
    # vLLM's extra sampling fields
    top_k: int = Field(0, ge=-1)
    min_p: float = Field(0.0, ge=0.0, le=1.0)
    repetition_penalty: float = Field(1.0, gt=0.0)
    ignore_eos: bool = False
    min_tokens: int = Field(0, ge=0)
    stop_token_ids: list[int] | None = None
    skip_special_tokens: bool = True
    include_stop_str_in_output: bool = False
    response_format: ResponseFormat | None = None
    # ours
    alignment: AlignmentField = Field(
        None, description='"vanilla" (default) or {"strategy": NAME, ...parameters}'
    )

    def stop_list(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None


class AlignmentInfo(BaseModel):
    """What the strategy did; present on every response (and the last stream chunk)."""

    model_config = ConfigDict(extra="allow")  # strategy extras, e.g. nudging's `spans`

    strategy: str
    selected_by: Literal["body", "header", "alias", "default"] = Field(
        description="where the strategy was named: body, X-Alignment header, model alias")
    stats: dict[str, Any] = Field(default_factory=dict)
