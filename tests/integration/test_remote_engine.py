"""The remote engine against vLLM's own OpenAI server on loopback, with all strategies."""

from __future__ import annotations

from contextlib import aclosing

import pytest
import pytest_asyncio

from decoding.embeddings import SentenceEmbedder
from decoding.remote_engine import RemoteConfig, RemoteEngine
from decoding.strategies import (
    DecodeRequest,
    DecodeRun,
    NudgingParams,
    NudgingStrategy,
    RainParams,
    RainStrategy,
    TextDelta,
    VanillaStrategy,
)
from decoding.types import Message, SamplingOptions
from tests.integration.conftest import SMOL

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]
QUESTION = (Message("user", "Name three fruits."),)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def remote(vllm_url, weights):
    engines = {}
    for name, role in (("remote-base", "base"), ("remote-chat", None)):
        engines[name] = await RemoteEngine.start(RemoteConfig(
            model_id=name, url=vllm_url, remote_model=SMOL, tokenizer_dir=str(weights[SMOL]),
            role=role))
    yield engines
    for engine in engines.values():
        await engine.shutdown()


async def answer(strategy, request) -> tuple[str, DecodeRun]:
    run, text = DecodeRun(), ""
    async with aclosing(strategy.run(request, run)) as deltas:
        async for delta in deltas:
            if isinstance(delta, TextDelta):  # not a search's progress note
                text += delta.text
    return text, run


def chat_request(engine, engines, params=None, **options) -> DecodeRequest:
    ids = engine.tokenize(engine.render_chat(QUESTION), add_special_tokens=False)
    return DecodeRequest("remote-test", engine, engines, ids,
                         SamplingOptions(**{"max_tokens": 24, "temperature": 0.0} | options),
                         1, QUESTION, params)


async def test_info_health_and_cached_tokens(remote):
    chat = remote["remote-chat"]
    assert chat.info.role == "chat" and remote["remote-base"].info.role == "base"
    assert chat.info.max_model_len == 2048
    await chat.check_health()
    request = chat_request(chat, remote)
    first, _ = await answer(VanillaStrategy(), request)
    cached = chat.counters.cached_tokens
    second, _run = await answer(VanillaStrategy(), request)
    assert first == second and first
    assert chat.counters.cached_tokens > cached  # the remote prefix cache was hit
    assert chat.counters.running == 0


async def test_nudging_with_a_remote_base(remote):
    nudger = remote["remote-chat"]
    alone, _ = await answer(VanillaStrategy(), chat_request(nudger, remote))
    request = chat_request(remote["remote-base"], remote,
                           NudgingParams(nudging_model="remote-chat", gamma=1.0))
    text, run = await answer(NudgingStrategy(), request)
    assert text == alone  # gamma 1: the nudger writes everything
    assert run.stats["engine_requests"]["base"] >= 1


async def test_rain_on_a_remote_model(remote):
    chat = remote["remote-chat"]
    params = RainParams(max_visits=4, min_searches=2, parallel_searches=2)
    text, run = await answer(RainStrategy(SentenceEmbedder()),
                             chat_request(chat, remote, params, max_tokens=8, seed=1))
    assert text and run.stats["searches"] >= run.stats["committed_sets"] >= 1
    assert chat.counters.running == 0
