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
from decoding.strategies import STRATEGIES, NudgingParams, RainParams, VanillaParams
from server.config import Settings
from server.errors import APIError, validation_error
from server.schemas.fields import Text


@dataclass(frozen=True, slots=True)
class AlignmentContext:
    """What converting parameters may need: the served engines and the server's limits."""

    model: str
    engines: Mapping[str, Engine]
    settings: Settings
    judges: frozenset[str] | None = None  # models that can be RAIN's evaluator; None: all


def nudger_problem(name: str | None, model: str, engines: Mapping[str, Engine]
                   ) -> APIError | None:
    """Why `name` cannot nudge `model` (as the error to raise), or None when it can."""
    param = "alignment.nudging_model"
    if name is None:
        return APIError(400, "No nudging model configured; set alignment.nudging_model.",
                        param=param)
    if name not in engines:
        return APIError(404, f"The nudging model {name!r} is not served; see /v1/models.",
                        param=param, code="model_not_found")
    if name == model:
        return APIError(400, f"The nudging model must differ from the base model ({name!r}).",
                        param=param)
    if not engines[name].info.has_chat_template:
        return APIError(400, f"The nudging model {name!r} is not a chat model (it has no "
                        "chat template).", param=param)
    return None


class StrategyParams(BaseModel):
    """Strict: `"max_visits": true` is a 400, not a run with 1 visit."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

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
    chunk_tokens: int = Field(16, ge=1, le=256,
                              description="tokens per nudger chunk and per base chunk")
    max_rounds: int = Field(150, ge=1, le=10_000, description="nudger calls per answer")
    repeat_limit: int = Field(3, ge=1, description="stop after this many repeated nudges")
    base_temperature: float | None = Field(None, ge=0.0, le=2.0)
    base_top_p: float | None = Field(None, gt=0.0, le=1.0)
    nudger_temperature: float | None = Field(None, ge=0.0, le=2.0)
    nudger_top_p: float | None = Field(None, gt=0.0, le=1.0)

    def to_decoding(self, context: AlignmentContext) -> NudgingParams:
        name = self.nudging_model or context.settings.default_nudging_model
        if problem := nudger_problem(name, context.model, context.engines):
            raise problem
        return NudgingParams(**self.model_dump(exclude={"strategy", "nudging_model"}),
                             nudging_model=name)


class RainAlignment(StrategyParams):
    """RAIN: tree search over token sets, judged by the model itself (defaults: reference)."""

    strategy: Literal["rain"]
    c: float = Field(2.0, ge=0.0, le=100.0, description="PUCT exploration weight")
    similarity_gamma: float = Field(0.2, ge=0.0, le=1.0)
    similarity_threshold: float = Field(0.95, ge=0.0, le=1.0)
    max_visits: int = Field(50, ge=1, description="maxT: root visits per decision")
    min_visits: int = Field(6, ge=0, description="minT: early stop needs fn > minT")
    value_threshold: float = Field(0.8, ge=-1.0, le=1.0, description="Vt: ... and q > Vt")
    min_searches: int = Field(15, ge=1, description="new searches per decision, at least")
    candidates: int = Field(10, ge=1, le=20, description="children per expansion")
    chain_top_k: int = Field(15, ge=1, le=20)
    max_children: int = Field(20, ge=1, le=20, description="node addition below this")
    addition_variance: float = Field(0.03, ge=0.0)
    root_prior_mix: float = Field(0.25, ge=0.0, le=1.0)
    token_set_lengths: list[int] = Field([1, 2, 4, 10], min_length=1, max_length=16)
    rollout_max_tokens: int = Field(64, ge=1)
    principle: Text = Field("harmless", min_length=1, max_length=4000,
                           description='"harmless", "helpful", "honest" or a criterion')
    evaluation: Literal["votes", "soft", "calibrated"] = "votes"
    evaluator_model: str | None = Field(None, description="served model; default: own")
    parallel_searches: int = Field(1, ge=1)
    max_engine_calls: int | None = Field(None, ge=1, description="per request; default: "
                                        "server cap")
    return_tree: bool = Field(False, description="add `alignment.tree`: each decision's "
                              "search, up to the server's node cap")

    def to_decoding(self, context: AlignmentContext) -> RainParams:
        limits = context.settings
        caps = {"max_visits": limits.rain_max_visits, "min_searches": limits.rain_max_visits,
                "parallel_searches": limits.rain_max_parallel_searches,
                "rollout_max_tokens": limits.rain_max_rollout_tokens,
                "max_engine_calls": limits.rain_max_engine_calls}
        for name, cap in caps.items():
            value = getattr(self, name)
            if value is not None and value > cap:
                raise APIError(400, f"alignment.{name} must be at most {cap} on this server.",
                               param=f"alignment.{name}", code="invalid_value")
        if any(not 1 <= n <= 64 for n in self.token_set_lengths):
            raise APIError(400, "token set lengths must lie in [1, 64].",
                           param="alignment.token_set_lengths", code="invalid_value")
        if self.evaluator_model is not None and self.evaluator_model not in context.engines:
            raise APIError(404, f"The evaluator model {self.evaluator_model!r} is not served.",
                           param="alignment.evaluator_model", code="model_not_found")
        judge = self.evaluator_model or context.model
        if context.judges is not None and judge not in context.judges:
            raise APIError(400, f"The model {judge!r} cannot be RAIN's evaluator (it cannot "
                           "render the evaluator prompt); name another served model in "
                           "alignment.evaluator_model.", param="alignment.evaluator_model")
        fields = self.model_dump(exclude={"strategy", "token_set_lengths", "max_engine_calls"})
        return RainParams(**fields, token_set_lengths=tuple(self.token_set_lengths),
                          max_engine_calls=self.max_engine_calls or limits.rain_max_engine_calls,
                          max_tree_nodes=limits.rain_max_tree_nodes)


PARAMETER_MODELS: dict[str, type[StrategyParams]] = {
    "vanilla": VanillaAlignment,
    "nudging": NudgingAlignment,
    "rain": RainAlignment,
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
    if not isinstance(raw, dict):
        raise APIError(400, "alignment must be a strategy name or an object with a "
                       "'strategy' field.", param="alignment", code="invalid_value")
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
