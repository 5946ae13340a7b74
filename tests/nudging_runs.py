"""Nudging runs straight on the strategy (no server), for tests that compare two runs of
the same question: on stand-ins (the unit suite) and on real engines (integration)."""

from __future__ import annotations

from contextlib import aclosing

from decoding.strategies.base import DecodeRequest, DecodeRun
from decoding.strategies.nudging import NudgingParams, NudgingStrategy
from decoding.types import Message, SamplingOptions


async def nudge_with(engines: dict, gamma: float, question: str, max_tokens: int = 48,
                     **options) -> tuple[str, DecodeRun]:
    """One greedy answer of `engines["base"]` nudged by `engines["chat"]`, as streamed."""
    request = DecodeRequest(
        "r", engines["base"], engines, [], SamplingOptions(max_tokens=max_tokens,
                                                           temperature=0, **options), 1,
        (Message("user", question),), NudgingParams("chat", gamma=gamma, return_spans=True))
    run, text = DecodeRun(), ""
    async with aclosing(NudgingStrategy().run(request, run)) as deltas:
        async for delta in deltas:
            text += delta.text
    assert all(e.counters.running == 0 for e in engines.values())
    return text, run


def same_answer(one: tuple[str, DecodeRun], other: tuple[str, DecodeRun]) -> None:
    """Text, spans and every stat but the engines' work and the provisional counts."""
    (text, run), (other_text, other_run) = one, other
    assert text == other_text
    assert run.extras["spans"] == other_run.extras["spans"]
    work = ("engine_", "prefix_cache_", "provisional_rounds", "rounds_undone")
    assert ({k: v for k, v in run.stats.items() if not k.startswith(work)}
            == {k: v for k, v in other_run.stats.items() if not k.startswith(work)})
