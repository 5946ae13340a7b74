"""Our server on real engines, through the real OpenAI SDK in strict mode and raw HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import pytest

from tests.integration.conftest import API_KEY, GEMMA, SMOL, TINY, TINY_CONTEXT

pytestmark = pytest.mark.slow
QUESTION = [{"role": "user", "content": "Name three colours of the rainbow."}]


@pytest.fixture
def sdk(server_url):
    return openai.OpenAI(base_url=f"{server_url}/v1", api_key=API_KEY,
                         _strict_response_validation=True, max_retries=0)


@pytest.fixture
def http(server_url):
    with httpx.Client(base_url=server_url, headers={"Authorization": f"Bearer {API_KEY}"},
                      timeout=120) as client:
        yield client


def test_models_list_roles_and_roots(sdk):
    cards = {m.id: m for m in sdk.models.list() if m.model_extra["parent"] is None}
    assert set(cards) == {SMOL, GEMMA, TINY}
    roles = {i: c.model_extra["role"] for i, c in cards.items()}
    assert roles == {SMOL: "chat", GEMMA: "base", TINY: "chat"}
    for card in cards.values():
        assert (Path(card.model_extra["root"]) / "config.json").is_file()
    assert cards[TINY].model_extra["max_model_len"] == TINY_CONTEXT


def test_chat_non_stream_and_stream_agree(sdk):
    whole = sdk.chat.completions.create(model=SMOL, messages=QUESTION, max_tokens=24,
                                        temperature=0, logprobs=True, top_logprobs=3)
    choice = whole.choices[0]
    assert choice.message.content and choice.finish_reason in ("stop", "length")
    assert len(choice.logprobs.content) == whole.usage.completion_tokens
    for token in choice.logprobs.content:
        assert len(token.top_logprobs) == 3
        assert token.logprob == pytest.approx(token.top_logprobs[0].logprob)  # greedy
    assert whole.usage.prompt_tokens_details.cached_tokens >= 0
    assert whole.model_extra["alignment"]["strategy"] == "vanilla"

    chunks = list(sdk.chat.completions.create(
        model=SMOL, messages=QUESTION, max_tokens=24, temperature=0, stream=True,
        stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == choice.message.content
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens
    assert chunks[-1].model_extra["alignment"]["strategy"] == "vanilla"


def test_sse_framing_on_raw_bytes(http):
    body = {"model": SMOL, "messages": QUESTION, "max_tokens": 8, "stream": True}
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = b"".join(response.iter_bytes())
    events = raw.split(b"\n\n")
    assert events[-1] == b"" and events[-2] == b"data: [DONE]"
    for event in events[:-2]:
        assert event.startswith(b"data: {") and b"\n" not in event
        assert json.loads(event[6:])["object"] == "chat.completion.chunk"


def test_completions_on_base_model_prepend_bos(sdk, weights):
    from transformers import AutoTokenizer

    text = "The capital of France is"
    ids = AutoTokenizer.from_pretrained(weights[GEMMA]).encode(text, add_special_tokens=False)
    by_text = sdk.completions.create(model=GEMMA, prompt=text, max_tokens=8, temperature=0)
    by_ids = sdk.completions.create(model=GEMMA, prompt=[2, *ids], max_tokens=8, temperature=0)
    assert by_text.usage.prompt_tokens == len(ids) + 1
    assert by_text.choices[0].text == by_ids.choices[0].text
    assert by_text.choices[0].text.strip()  # with BOS Gemma writes text, not "\n?\n?"


def test_completions_stream_logprobs(server_url):
    # OpenAI's wire format has `finish_reason: null` on all but the last completions chunk,
    # which the SDK's strict mode rejects (its type says non-null), so this one is lenient.
    sdk = openai.OpenAI(base_url=f"{server_url}/v1", api_key=API_KEY)
    stream = sdk.completions.create(model=SMOL, prompt="One, two, three,", max_tokens=6,
                                    temperature=0, logprobs=2, stream=True)
    chunks = list(stream)
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    assert chunks[-1].choices[0].finish_reason == "length"
    tokens = [t for c in chunks for t in c.choices[0].logprobs.tokens]
    assert "".join(tokens) == "".join(c.choices[0].text for c in chunks)


def test_chat_on_base_model_uses_plain_transcript(sdk):
    reply = sdk.chat.completions.create(model=GEMMA, messages=QUESTION, max_tokens=40,
                                        temperature=0)
    assert "Question:" not in reply.choices[0].message.content


def test_n_and_seed(sdk):
    kwargs = dict(model=SMOL, messages=QUESTION, max_tokens=12, temperature=1.0, seed=11, n=2)
    first = sdk.chat.completions.create(**kwargs)
    again = sdk.chat.completions.create(**kwargs)
    assert [c.index for c in first.choices] == [0, 1]
    assert [c.message.content for c in first.choices] == [c.message.content
                                                           for c in again.choices]


def test_prefix_cache_reports_cached_tokens(sdk):
    long_question = [{"role": "user", "content": "Summarise: " + "the cat sat on the mat. " * 30}]
    sdk.chat.completions.create(model=SMOL, messages=long_question, max_tokens=1)
    again = sdk.chat.completions.create(model=SMOL, messages=long_question, max_tokens=1)
    cached = again.usage.prompt_tokens_details.cached_tokens
    assert cached >= again.usage.prompt_tokens - 32 and cached % 32 == 0


def error_of(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    return response.json()["error"]


def test_errors_over_http(http, server_url):
    assert httpx.get(f"{server_url}/v1/models").status_code == 401
    assert httpx.get(f"{server_url}/health").status_code == 200
    chat = {"model": TINY, "messages": QUESTION}
    assert error_of(http.post("/v1/chat/completions", json=chat | {"model": "gpt-9"}),
                    404)["param"] == "model"
    long = [{"role": "user", "content": "word " * TINY_CONTEXT}]
    assert error_of(http.post("/v1/chat/completions", json=chat | {"messages": long}),
                    400)["code"] == "context_length_exceeded"
    assert error_of(http.post("/v1/chat/completions", json=chat | {"max_tokens": TINY_CONTEXT}),
                    400)["param"] == "max_tokens"
    assert error_of(http.post("/v1/completions", json={"model": TINY, "prompt": [[10**6]]}),
                    400)["param"] == "prompt"
    assert error_of(http.post("/v1/chat/completions", json=chat | {"alignmnet": "rain"}),
                    400)["param"] == "alignmnet"
    # the engine is unharmed by all of that
    assert http.post("/v1/chat/completions", json=chat | {"max_tokens": 4}).status_code == 200


def test_sdk_raises_typed_errors(sdk):
    with pytest.raises(openai.NotFoundError) as info:
        sdk.chat.completions.create(model="missing", messages=QUESTION)
    assert info.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(model=SMOL, messages=QUESTION,
                                    extra_body={"alignment": {"strategy": "nope"}})
