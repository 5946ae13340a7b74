"""Nudging's driver on the default pair in process (Gemma-3-270M nudged by SmolLM2-135M,
each engine on a core of its own, as the server binds them): two real tokenizers with
multi-character tokens, which the stand-ins' one-character tokens cannot show.
"""

from __future__ import annotations

import pytest
import pytest_asyncio

from tests.integration.conftest import GEMMA, SMOL
from tests.nudging_runs import nudge_with, same_answer

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]
QUESTIONS = ("How do I bake bread at home?", "Give me three tips for a job interview.")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pair(weights):
    from decoding.vllm_engine import EngineConfig, VllmEngine

    engines = {
        "base": VllmEngine.start(EngineConfig(GEMMA, str(weights[GEMMA]), role="base",
                                              kv_cache_bytes=256 << 20, max_model_len=1024,
                                              cpu_cores="0")),
        "chat": VllmEngine.start(EngineConfig(SMOL, str(weights[SMOL]),
                                              kv_cache_bytes=256 << 20, max_model_len=1024,
                                              cpu_cores="1")),
    }
    yield engines
    for engine in engines.values():
        await engine.shutdown()


async def test_provisional_rounds_on_real_tokenizers_change_no_answer(pair, never_provisional):
    """Rounds kept before their chunk's tail is read happen on real engines, and every
    answer, span and stat (but the engines' work) is the one of the same run with each
    round waiting for its whole chunk. Greedy, one answer at a time, the prefix cache
    emptied before each run and the order switched per γ; still, a provisional round
    puts two nudger requests in one engine step, and the CPU's batched numerics may tip
    a near-tie (then the answers part at a token the two runs' logprobs nearly tie on)."""
    provisional = undone = 0
    for gamma, order in ((0.4, (False, True)), (0.3, (True, False))):
        for question in QUESTIONS:
            answers = {}
            for off in order:
                never_provisional(off)
                for engine in pair.values():
                    assert await engine._llm.reset_prefix_cache()
                answers[off] = await nudge_with(pair, gamma, question, max_tokens=64)
            same_answer(answers[False], answers[True])
            assert answers[True][1].stats["provisional_rounds"] == 0
            provisional += answers[False][1].stats["provisional_rounds"]
            undone += answers[False][1].stats["rounds_undone"]
    print(f"{provisional} provisional rounds, {undone} undone")
    assert provisional > 0
