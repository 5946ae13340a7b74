"""Vanilla greedy output through our server equals vLLM's own OpenAI server's."""

from __future__ import annotations

import openai
import pytest

from tests.integration.conftest import API_KEY, SMOL

pytestmark = pytest.mark.slow

PROMPTS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You answer in one sentence."},
     {"role": "user", "content": "Why is the sky blue?"}],
    [{"role": "user", "content": "Say hello."}, {"role": "assistant", "content": "Hello!"},
     {"role": "user", "content": "Now say goodbye in French."}],
]


@pytest.fixture
def ours(server_url):
    return openai.OpenAI(base_url=f"{server_url}/v1", api_key=API_KEY,
                         _strict_response_validation=True)


@pytest.fixture
def theirs(vllm_url):
    return openai.OpenAI(base_url=f"{vllm_url}/v1", api_key="unused")


@pytest.mark.parametrize("messages", PROMPTS)
def test_chat_greedy_matches_vllm(ours, theirs, messages):
    kwargs = dict(model=SMOL, messages=messages, max_tokens=48, temperature=0, logprobs=True,
                  top_logprobs=2)
    a, b = ours.chat.completions.create(**kwargs), theirs.chat.completions.create(**kwargs)
    assert a.choices[0].message.content == b.choices[0].message.content
    assert a.choices[0].finish_reason == b.choices[0].finish_reason
    assert (a.usage.prompt_tokens, a.usage.completion_tokens) == (
        b.usage.prompt_tokens, b.usage.completion_tokens)
    assert [t.token for t in a.choices[0].logprobs.content] == [
        t.token for t in b.choices[0].logprobs.content]


def test_completion_greedy_matches_vllm(ours, theirs):
    kwargs = dict(model=SMOL, prompt="The three primary colours are", max_tokens=32,
                  temperature=0)
    a, b = ours.completions.create(**kwargs), theirs.completions.create(**kwargs)
    assert a.choices[0].text == b.choices[0].text
    assert a.usage.prompt_tokens == b.usage.prompt_tokens
