"""Nudging's parameters (validated at the HTTP edge by `server.schemas.alignment`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NudgingParams:
    nudging_model: str
    gamma: float = 0.4
    return_spans: bool = False
    chunk_tokens: int = 16  # the reference's completion_token_num (both models)
    max_rounds: int = 150  # the reference's max_round
    repeat_limit: int = 3
    base_temperature: float | None = None
    base_top_p: float | None = None
    nudger_temperature: float | None = None
    nudger_top_p: float | None = None
