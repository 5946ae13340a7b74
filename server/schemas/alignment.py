"""The `alignment` request field: a strategy name plus that strategy's parameters.

Accepted forms: absent, `"vanilla"`, or `{"strategy": NAME, ...params}`. Each strategy
has one pydantic parameter model here (the HTTP edge) that converts to the frozen
dataclass its driver takes. Errors name the field, e.g. `alignment.strategy`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from decoding.strategies import STRATEGIES, VanillaParams
from server.errors import APIError, validation_error


class StrategyParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_decoding(self) -> Any:
        raise NotImplementedError


class VanillaAlignment(StrategyParams):
    """Ordinary decoding (the default)."""

    strategy: Literal["vanilla"] = "vanilla"

    def to_decoding(self) -> VanillaParams:
        return VanillaParams()


PARAMETER_MODELS: dict[str, type[StrategyParams]] = {"vanilla": VanillaAlignment}

AlignmentField = str | dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Alignment:
    strategy: str
    params: Any


def parse_alignment(raw: AlignmentField) -> Alignment:
    """Validate the raw field against the chosen strategy's parameter model."""
    if raw is None:
        raw = {"strategy": "vanilla"}
    elif isinstance(raw, str):
        raw = {"strategy": raw}
    name = raw.get("strategy")
    if not isinstance(name, str) or name not in PARAMETER_MODELS:
        known = ", ".join(sorted(PARAMETER_MODELS))
        raise APIError(400, f"Unknown alignment strategy {name!r}; choose one of: {known}.",
                       param="alignment.strategy", code="invalid_value")
    assert name in STRATEGIES, f"strategy {name} has a parameter model but no driver"
    try:
        params = PARAMETER_MODELS[name].model_validate(raw)
    except ValidationError as exc:
        raise validation_error(exc.errors(), prefix="alignment") from None
    return Alignment(name, params.to_decoding())
