"""The engine layer itself on real in-process vLLM engines (the tiny random Llama, and
SmolLM2 where the output must depend on its context)."""

from __future__ import annotations

from contextlib import aclosing

import pytest
import pytest_asyncio

from decoding.errors import InvalidRequest
from decoding.types import Message, SamplingOptions
from tests.integration.conftest import SMOL, TINY_CONTEXT

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]
GREEDY = SamplingOptions(max_tokens=12, temperature=0, ignore_eos=True)
#: How far a logprob may move with the kernel: an empirical margin, about 3× the 0.075
#: seen in CI (two bf16 steps of a logit between 16 and 32).
BF16_LOGIT_NOISE = 0.25


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def smol(weights):
    """SmolLM2 in process: a real model whose next token depends on its context (the
    random Llama's greedy output barely does, so it cannot show a context off by one)."""
    from decoding.vllm_engine import EngineConfig, VllmEngine

    engine = VllmEngine.start(EngineConfig(model_id=SMOL, weights_dir=str(weights[SMOL]),
                                           kv_cache_bytes=256 << 20, max_model_len=1024))
    yield engine
    await engine.shutdown()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def engine(tiny_llama):
    from decoding.vllm_engine import EngineConfig, VllmEngine

    engine = VllmEngine.start(EngineConfig(model_id="tiny", weights_dir=str(tiny_llama),
                                           kv_cache_bytes=256 << 20))
    yield engine
    await engine.shutdown()


async def run(engine, ids, options, request_id):
    chunks = []
    async with aclosing(engine.generate(ids, options, request_id)) as stream:
        async for chunk in stream:
            chunks.append(chunk)
    return chunks


async def test_info_and_tokenizer(engine):
    assert engine.info.max_model_len == TINY_CONTEXT
    assert engine.info.role == "chat" and engine.info.has_chat_template
    assert 2 in engine.info.eos_token_ids
    ids = engine.tokenize("Hello there, world!", add_special_tokens=False)
    assert engine.detokenize(ids) == "Hello there, world!"
    text = engine.render_chat([Message("user", "Hi")])
    assert text.endswith("<|im_start|>assistant\n")
    opened = engine.render_chat([Message("user", "Hi"), Message("assistant", "Well")],
                                add_generation_prompt=False, continue_final_message=True)
    assert opened.endswith("<|im_start|>assistant\nWell")


async def test_greedy_stream_with_logprobs(engine):
    ids = engine.tokenize("one two three", add_special_tokens=False)
    chunks = await run(engine, ids, SamplingOptions(max_tokens=10, temperature=0, logprobs=3,
                                                    ignore_eos=True), "lp")
    tokens = [t for c in chunks for t in c.token_ids]
    logprobs = [lp for c in chunks for lp in c.logprobs]
    assert len(tokens) == 10 == len(logprobs)
    assert chunks[-1].finish_reason == "length" and not any(c.finished for c in chunks[:-1])
    for token, lp in zip(tokens, logprobs, strict=True):
        assert lp.token_id == token and len(lp.top) == 3
        assert lp.top[0].token_id == token  # greedy takes the top token
        assert lp.top[0].logprob >= lp.top[1].logprob >= lp.top[2].logprob
    assert "".join(c.text for c in chunks) == engine.detokenize(tokens)


async def test_prefix_cache_counts_whole_blocks(engine):
    ids = engine.tokenize("alpha beta gamma delta " * 40, add_special_tokens=False)[:100]
    first = await run(engine, ids, GREEDY, "cache-1")
    second = await run(engine, ids, GREEDY, "cache-2")
    assert first[0].prompt_tokens == 100
    assert second[0].cached_tokens == 96  # three whole 32-token blocks
    assert [t for c in first for t in c.token_ids] == [t for c in second for t in c.token_ids]


async def test_abort_mid_stream_leaves_engine_usable(engine):
    ids = engine.tokenize("count with me", add_special_tokens=False)
    aborted = engine.counters.aborted
    stream = engine.generate(ids, SamplingOptions(max_tokens=200, temperature=0,
                                                  ignore_eos=True), "to-abort")
    async with aclosing(stream):
        async for _ in stream:
            break
    assert engine.counters.aborted == aborted + 1
    assert len(await run(engine, ids, GREEDY, "after-abort")) > 0


async def test_too_long_prompt_is_an_invalid_request(engine):
    with pytest.raises(InvalidRequest):
        await run(engine, [5] * (TINY_CONTEXT + 10), GREEDY, "too-long")


async def test_a_kept_open_session_continues_as_one_greedy_request(smol):
    """Nudging's sessions: each step sends what the last one decoded (vLLM keeps the
    context, drops the sampled token until it is sent) and decodes one more, so ten
    steps continue exactly as one greedy request of ten tokens. Kernels differ between a
    session step and a fresh prefill: a near-tie may flip to the runner-up, and the
    comparison ends there.
    Logits are bf16 (8 significant bits: steps of 0.0625-0.125 for logits of 8-32), so a
    logprob may move by one or two such steps (0.075 seen in CI); a lost or doubled
    context token moves the continuation far more."""
    ids = smol.tokenize(smol.render_chat([Message("user", "Write two lines about the sea.")]),
                        add_special_tokens=False)
    options = SamplingOptions(max_tokens=10, temperature=0, logprobs=2, ignore_eos=True)
    fresh = [lp for chunk in await run(smol, ids, options, "fresh") for lp in chunk.logprobs]
    assert len({lp.token_id for lp in fresh}) > 5  # a context-dependent continuation
    session, new, ours = smol.open_session("kept-open"), ids, []
    try:
        for _ in range(10):
            chunk = await session.step(new, options)
            ours.append(chunk.logprobs[0])
            new = chunk.token_ids
    finally:
        await session.close()
    assert chunk.prompt_tokens == len(ids) + 9 and chunk.cached_tokens == len(ids) + 8
    for mine, theirs in zip(ours, fresh, strict=True):
        if mine.token_id != theirs.token_id:
            assert mine.token_id == theirs.top[1].token_id, (mine, theirs)
            assert theirs.top[0].logprob - theirs.top[1].logprob < BF16_LOGIT_NOISE, (mine, theirs)
            break
        assert abs(mine.logprob - theirs.logprob) < BF16_LOGIT_NOISE, (mine, theirs)
    assert smol.counters.running == 0
