"""Nudging on the real cross-family pair: Gemma-3-270M (base) nudged by SmolLM2-135M."""

from __future__ import annotations

import itertools

import openai
import pytest

from decoding.prompts import render_plain
from decoding.types import Message
from tests.integration.conftest import API_KEY, GEMMA, SMOL

pytestmark = pytest.mark.slow
QUESTION = "How do I bake bread at home?"
MESSAGES = [{"role": "user", "content": QUESTION}]


@pytest.fixture
def sdk(server_url):
    return openai.OpenAI(base_url=f"{server_url}/v1", api_key=API_KEY,
                         _strict_response_validation=True, max_retries=0)


def nudged(sdk, gamma, max_tokens=48, **alignment):
    return sdk.chat.completions.create(
        model=GEMMA, messages=MESSAGES, max_tokens=max_tokens,
        extra_body={"alignment": {"strategy": "nudging", "gamma": gamma,
                                  "return_spans": True} | alignment})


def test_gamma_one_is_the_nudgers_own_greedy_answer(sdk):
    """γ = 1: the base is never certain, so it takes over only where its next token
    starts the nudger's next word, and then keeps at most that (whole) word: the text
    is the nudger's own greedy answer (its ledger keeps its own tokens throughout)."""
    reply = nudged(sdk, 1.0, max_tokens=64)
    alone = sdk.chat.completions.create(model=SMOL, messages=MESSAGES, max_tokens=64,
                                        temperature=0)
    text, own = reply.choices[0].message.content, alone.choices[0].message.content
    shorter = min(len(text), len(own))
    assert text[:shorter] == own[:shorter] and shorter > 40
    info = reply.model_extra["alignment"]
    for span in info["spans"]:  # the base only ever adds a word the nudger wrote
        if span["source"] == "base":
            assert span["text"] in own


def test_gamma_zero_is_one_word_then_the_base_alone(sdk):
    """γ = 0: the base is always certain, so it takes over at the first word boundary
    and writes on as its own greedy continuation until it ends its turn."""
    reply = nudged(sdk, 0.0)
    spans = reply.model_extra["alignment"]["spans"]
    stats = reply.model_extra["alignment"]["stats"]
    assert spans[0]["source"] == "nudger" and spans[1]["source"] == "base"
    word, rest = spans[0]["text"], spans[1]["text"]
    assert len(word.split()) == 1
    prompt = render_plain([Message("user", QUESTION)]) + " " + word
    alone = sdk.completions.create(model=GEMMA, prompt=prompt, temperature=0, stop=["\nQuestion:"],
                                   max_tokens=48 - stats["nudged_tokens"])
    assert rest == alone.choices[0].text[: len(rest)]
    if stats["end"] == "max_tokens" and len(spans) == 2:
        assert rest == alone.choices[0].text


@pytest.mark.parametrize("gamma", [0.3, 0.5])
def test_spans_streaming_and_word_boundaries(sdk, gamma):
    reply = nudged(sdk, gamma, max_tokens=64)
    content = reply.choices[0].message.content
    info = reply.model_extra["alignment"]
    spans = info["spans"]
    assert "".join(s["text"] for s in spans) == content
    assert {s["source"] for s in spans} == {"base", "nudger"}, spans
    for before, after in itertools.pairwise(spans):
        if before["source"] == "base":  # the base hands back at a space or punctuation
            assert not (before["text"][-1].isalnum() and after["text"][0].isalnum()), spans
    stats = info["stats"]
    assert 0 < stats["nudge_ratio"] < 1
    assert stats["nudged_tokens"] + stats["base_tokens_kept"] == reply.usage.completion_tokens
    assert stats["engine_generated_tokens"]["base"] >= stats["base_tokens_kept"]
    assert 0 < stats["prefix_cache_hit_rate"]["nudger"] <= stats["prefix_cache_hit_ceiling"][
        "nudger"]

    chunks = list(sdk.chat.completions.create(
        model=GEMMA, messages=MESSAGES, max_tokens=64, stream=True,
        extra_body={"alignment": {"strategy": "nudging", "gamma": gamma}}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == content


@pytest.mark.parametrize("messages", [
    [{"role": "assistant", "content": "Hello there."}],
    [{"role": "system", "content": "Be brief."}],
    [{"role": "system", "content": "Be brief."}, {"role": "assistant", "content": "Hi"}]])
def test_a_conversation_without_a_question_is_a_400(sdk, messages):
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model=GEMMA, messages=messages, max_tokens=8,
                                    extra_body={"alignment": {"strategy": "nudging"}})
    assert info.value.body["param"] == "messages"


def test_token_level_options_are_400s(sdk):
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(
            model=GEMMA, messages=MESSAGES, max_tokens=8,
            extra_body={"min_tokens": 4, "alignment": {"strategy": "nudging"}})
    assert info.value.body["param"] == "min_tokens"


def test_unknown_nudging_model(sdk):
    with pytest.raises(openai.NotFoundError) as info:
        nudged(sdk, 0.4, nudging_model="ghost")
    assert info.value.body["param"] == "alignment.nudging_model"
    with pytest.raises(openai.BadRequestError, match="not a chat model"):
        sdk.chat.completions.create(model=SMOL, messages=MESSAGES, extra_body={
            "alignment": {"strategy": "nudging", "nudging_model": GEMMA}})
