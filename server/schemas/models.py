"""`/v1/models` wire models: OpenAI's model card plus vLLM's `root`/`parent` and ours."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "align-serve"
    root: str
    parent: str | None = Field(None, description="for an alias: the served model it runs on")
    max_model_len: int
    role: Literal["chat", "base"]
    strategies: list[str] = Field(
        description="strategies this id serves with their defaults (an alias: its own)")
    unavailable: dict[str, str] = Field(
        default_factory=dict, description="strategy → why this model cannot serve it")
    aliases: list[str] = Field(default_factory=list, description="MODEL@STRATEGY ids")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
