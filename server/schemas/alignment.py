"""The `alignment` request field: a strategy name plus that strategy's parameters.

Accepted forms: absent, `"vanilla"`, or `{"strategy": NAME, ...params}`. Each strategy
has one pydantic parameter model here (the HTTP edge) that converts to the frozen
dataclass its driver takes. Errors name the field, e.g. `alignment.strategy`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from decoding.engine import Engine
from decoding.strategies import STRATEGIES, NudgingParams, VanillaParams
from server.errors import APIError, validation_error


@dataclass(frozen=True, slots=True)
class AlignmentContext:
    """What converting parameters may need: the served engines and server defaults."""

    model: str
    engines: Mapping[str, Engine]
    default_nudging_model: str | None


class StrategyParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_decoding(self, context: AlignmentContext) -> Any:
        raise NotImplementedError


class VanillaAlignment(StrategyParams):
    """Ordinary decoding (the default)."""

    strategy: Literal["vanilla"] = "vanilla"

    def to_decoding(self, context: AlignmentContext) -> VanillaParams:
        return VanillaParams()


class NudgingAlignment(StrategyParams):
    """The request's model is the base; a small chat model writes where it is unsure."""

    strategy: Literal["nudging"]
    nudging_model: str | None = Field(None, description="served chat model; server default")
    gamma: float = Field(0.4, ge=0.0, le=1.0, description="nudge when base top-1 prob < gamma")
    return_spans: bool = False
    max_word_tokens: int = Field(16, ge=1, le=256, description="longest nudge word, tokens")
    repeat_limit: int = Field(3, ge=1, description="stop after this many repeated nudges")
    base_temperature: float | None = Field(None, ge=0.0, le=2.0)
    base_top_p: float | None = Field(None, gt=0.0, le=1.0)
    nudger_temperature: float | None = Field(None, ge=0.0, le=2.0)
    nudger_top_p: float | None = Field(None, gt=0.0, le=1.0)

    def to_decoding(self, context: AlignmentContext) -> NudgingParams:
        name = self.nudging_model or context.default_nudging_model
        param = "alignment.nudging_model"
        if name is None:
            raise APIError(400, "No nudging model configured; set alignment.nudging_model.",
                           param=param)
        if name not in context.engines:
            raise APIError(404, f"The nudging model {name!r} is not served; see /v1/models.",
                           param=param, code="model_not_found")
        if name == context.model:
            raise APIError(400, f"The nudging model must differ from the base model ({name!r}).",
                           param=param)
        if not context.engines[name].info.has_chat_template:
            raise APIError(400, f"The nudging model {name!r} is not a chat model (it has no "
                           "chat template).", param=param)
        return NudgingParams(**self.model_dump(exclude={"strategy", "nudging_model"}),
                             nudging_model=name)


PARAMETER_MODELS: dict[str, type[StrategyParams]] = {
    "vanilla": VanillaAlignment,
    "nudging": NudgingAlignment,
}

AlignmentField = str | dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Alignment:
    strategy: str
    params: Any


def parse_alignment(raw: AlignmentField, context: AlignmentContext) -> Alignment:
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
    return Alignment(name, params.to_decoding(context))
