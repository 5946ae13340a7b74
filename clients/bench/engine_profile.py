"""What an engine's scheduler ran during a stretch of a benchmark, from `/metrics`.

The server's per-engine step counters (`align_engine_steps_total` and friends, recorded
by a vLLM stat logger) are read before and after a run; the difference is that run's
profile: engine steps and the mean batch they ran, prompt tokens computed, and the share
of the wall time the engine was busy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx

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


def columns(delta: Counters, answer_tokens: int, wall: float) -> dict[str, float]:
    """The profile as benchmark columns, per answer token where that is the unit."""
    v, answer = delta.values, max(1, answer_tokens)
    steps = v.get("steps", 0.0)
    return {"engine steps/token": steps / answer,
            "mean batch": v.get("step_requests", 0.0) / steps if steps else float("nan"),
            "prefill computed/token": v.get("prefill_computed_tokens", 0.0) / answer,
            "engine busy share": v.get("busy_seconds", 0.0) / wall if wall else float("nan"),
            "ms/step": 1000 * v.get("busy_seconds", 0.0) / steps if steps else float("nan")}
