"""What an engine's scheduler ran during a stretch of a benchmark, from `/metrics`.

The server's per-engine step counters (`align_engine_steps_total` and friends, recorded
by a vLLM stat logger) are read before and after a run; the difference is that run's
profile: engine steps and the mean batch they ran, prompt tokens computed, and the share
of the wall time the engine was busy. `fit_step_cost` prices a step on this machine
from several runs' profiles: a fixed cost plus a cost per token the step carries.
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import httpx
import numpy as np

SAMPLE = re.compile(r'^(align_engine_\w+?)(?:_total)?\{(.*?)\} ([0-9.e+-]+)$')
KEYS = ("steps", "step_requests", "prefill_computed_tokens", "busy_seconds",
        "generated_tokens")


@dataclass(frozen=True)
class Counters:
    values: dict[str, float]

    def __sub__(self, other: Counters) -> Counters:
        return Counters({k: v - other.values.get(k, 0.0) for k, v in self.values.items()})


async def read(url: str, model: str) -> Counters:
    async with httpx.AsyncClient(timeout=30) as client:
        text = (await client.get(f"{url}/metrics")).text
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and f'model="{model}"' in match[2] and "batch=" not in match[2]:
            name = match[1].removeprefix("align_engine_")
            if name in KEYS:
                values[name] = float(match[3])
    return Counters(values)


class Measured(Protocol):
    tokens: int
    wall: float


M = TypeVar("M", bound=Measured)


async def during(url: str, models: Sequence[str], work: Awaitable[M]
                 ) -> tuple[M, dict[str, dict[str, float]]]:
    """`work`'s result, and each model's profile columns over the time it ran."""
    before = {model: await read(url, model) for model in models}
    done = await work
    return done, {model: columns(await read(url, model) - before[model], done.tokens,
                                 done.wall) for model in models}


def columns(delta: Counters, answer_tokens: int, wall: float) -> dict[str, float]:
    """The profile as benchmark columns, per answer token where that is the unit."""
    v, answer = delta.values, max(1, answer_tokens)
    steps = v.get("steps", 0.0)
    # tokens decoded include each request's last, never fed back: a few % high for RAIN's
    # many one-token requests
    computed = v.get("prefill_computed_tokens", 0.0) + v.get("generated_tokens", 0.0)
    return {"engine steps/token": steps / answer,
            "engine tokens/step": computed / steps if steps else float("nan"),
            "mean batch": v.get("step_requests", 0.0) / steps if steps else float("nan"),
            "prefill computed/token": v.get("prefill_computed_tokens", 0.0) / answer,
            "engine busy share": v.get("busy_seconds", 0.0) / wall if wall else float("nan"),
            "ms/step": 1000 * v.get("busy_seconds", 0.0) / steps if steps else float("nan")}


@dataclass(frozen=True)
class StepCost:
    """ms per engine step = `fixed_ms` + `per_token_ms` × tokens in the step (prompt
    tokens computed plus tokens decoded), fitted by least squares over runs."""

    fixed_ms: float
    per_token_ms: float
    worst_residual: float  # the largest |measured − fitted| ÷ measured among the runs

    def row(self, runs: int) -> dict[str, float]:
        return {"runs fitted": runs, "fixed ms/step": self.fixed_ms,
                "ms per token in a step": self.per_token_ms,
                "worst residual": self.worst_residual}


def fit_step_cost(rows: list[dict]) -> StepCost | None:
    """The fit over `rows` carrying profile columns (None with fewer than two distinct
    step sizes: nothing to fit)."""
    points = [(r["engine tokens/step"], r["ms/step"]) for r in rows
              if math.isfinite(r.get("engine tokens/step", math.nan))
              and math.isfinite(r.get("ms/step", math.nan))]
    if len({x for x, _ in points}) < 2:
        return None
    x, y = np.array(points).T
    (fixed, per_token), *_ = np.linalg.lstsq(np.vstack([np.ones_like(x), x]).T, y, rcond=None)
    residual = float(np.max(np.abs(y - fixed - per_token * x) / y))
    return StepCost(float(fixed), float(per_token), residual)
