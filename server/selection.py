"""Which strategy a request runs, chosen where a gateway lets the client say it.

Three places, in this precedence: the body's `alignment` field, the `X-Alignment` header
(the same JSON), and a model alias `MODEL@STRATEGY`. Each may name a strategy; those
that do must agree (else 400 naming both). Parameters come from the body's object, else
the header's; an object without `strategy` takes the name from the others, so
`model="gemma-3-270m@nudging"` with `X-Alignment: {"gamma": 0.2}` works.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from decoding.capabilities import judge_problem
from decoding.engine import Engine
from server.config import Settings
from server.errors import APIError
from server.schemas.alignment import PARAMETER_MODELS, AlignmentField, nudger_problem

Source = Literal["body", "header", "alias", "default"]
HEADER = "X-Alignment"
ALIAS_SEPARATOR = "@"
_WHERE = {"body": "the body's alignment", "header": f"the {HEADER} header",
          "alias": "the model alias"}


@dataclass(frozen=True, slots=True)
class Selection:
    model: str            # the served model (an alias resolved)
    alignment: AlignmentField  # the raw field `parse_alignment` validates
    source: Source        # where the strategy's name came from


def split_alias(model: str, engines: Mapping[str, Engine]) -> tuple[str, str | None]:
    """`MODEL@STRATEGY` → (MODEL, STRATEGY); a served id containing `@` is taken as is."""
    base, sep, strategy = model.rpartition(ALIAS_SEPARATOR)
    if model in engines or not sep or base not in engines:
        return model, None
    if strategy not in PARAMETER_MODELS:
        known = ", ".join(sorted(PARAMETER_MODELS))
        raise APIError(400, f"Unknown strategy {strategy!r} in the model alias {model!r}; "
                       f"choose one of: {known}.", param="model", code="invalid_value")
    return base, strategy


def parse_header(value: str | None) -> AlignmentField:
    """The header's JSON; a bare strategy name (`rain`) is accepted without quotes."""
    if value is None or not value.strip():
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = value.strip()
    if not isinstance(parsed, str | dict):
        raise APIError(400, f"The {HEADER} header must hold a strategy name or a JSON "
                       "object like the body's alignment field.", param=HEADER,
                       code="invalid_value")
    return parsed


def _name(raw: AlignmentField) -> Any:
    return raw.get("strategy") if isinstance(raw, dict) else raw


def _params(raw: AlignmentField) -> dict[str, Any]:
    return {k: v for k, v in raw.items() if k != "strategy"} if isinstance(raw, dict) else {}


def select(model: str, body: AlignmentField, header: str | None,
           engines: Mapping[str, Engine]) -> Selection:
    served, alias = split_alias(model, engines)
    given: dict[Source, AlignmentField] = {"body": body, "header": parse_header(header),
                                           "alias": alias}
    named = [(source, _name(raw)) for source, raw in given.items()
             if raw is not None and _name(raw) is not None]
    for source, name in named:
        if not isinstance(name, str):
            raise APIError(400, f"The strategy must be a name such as 'rain'; {_WHERE[source]}"
                           f" gives {name!r}.", param="alignment.strategy" if source == "body"
                           else HEADER, code="invalid_value")
    for source, name in named[1:]:
        if name != named[0][1]:
            first, first_name = named[0]
            raise APIError(400, f"Conflicting strategies: {_WHERE[first]} says {first_name!r}"
                           f" but {_WHERE[source]} says {name!r}.",
                           param="alignment" if first == "body" else "model",
                           code="alignment_conflict")
    with_params = [(s, _params(raw)) for s, raw in given.items() if _params(raw)]
    if len(with_params) > 1 and with_params[0][1] != with_params[1][1]:
        raise APIError(400, "Conflicting strategy parameters: the body's alignment and the "
                       f"{HEADER} header both give parameters, and they differ.",
                       param="alignment", code="alignment_conflict")
    if not named:
        if with_params:  # parameters with no strategy to go with them
            return Selection(served, with_params[0][1], with_params[0][0])
        return Selection(served, None, "default")
    source, name = named[0]
    params = with_params[0][1] if with_params else {}
    return Selection(served, {"strategy": name, **params} if params else name, source)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """Per served model: each strategy it can serve with the strategy's defaults, or why
    not. Computed once at start-up; `judges` may be named as RAIN's `evaluator_model`."""

    unavailable: dict[str, dict[str, str]]  # model → strategy → reason
    judges: frozenset[str]

    @classmethod
    def of(cls, engines: Mapping[str, Engine], settings: Settings) -> Capabilities:
        judge = {model: judge_problem(engine) for model, engine in engines.items()}
        unavailable: dict[str, dict[str, str]] = {}
        for model in engines:
            reasons = unavailable.setdefault(model, {})
            nudger = nudger_problem(settings.default_nudging_model, model, engines)
            if nudger is not None:
                reasons["nudging"] = nudger.detail.message
            if judge[model] is not None:
                reasons["rain"] = judge[model]
        return cls(unavailable, frozenset(m for m, problem in judge.items() if problem is None))

    def strategies(self, model: str) -> list[str]:
        return [s for s in PARAMETER_MODELS if s not in self.unavailable[model]]
