"""`/v1/models` wire models: OpenAI's model card plus vLLM's `root` and our `role`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "align-serve"
    root: str
    parent: str | None = None
    max_model_len: int
    role: Literal["chat", "base"]


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
