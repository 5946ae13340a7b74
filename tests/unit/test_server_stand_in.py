"""The HTTP surface over the stand-in engine: wire formats, errors, auth, metrics."""

from __future__ import annotations

import json
import time

import openai
import pytest

from tests.unit.conftest import API_KEY

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 12}


def sse_events(body: str) -> list[str]:
    assert body.endswith("data: [DONE]\n\n")
    events = body.split("\n\n")
    assert events[-1] == ""
    for event in events[:-1]:
        assert event.startswith("data: ") and "\n" not in event
    return [e.removeprefix("data: ") for e in events[:-2]]


@pytest.fixture
def sdk(client):
    return openai.OpenAI(api_key=API_KEY, base_url="http://testserver/v1", http_client=client,
                         _strict_response_validation=True)


def test_chat_completion_through_the_sdk(sdk, engines):
    reply = sdk.chat.completions.create(model="chat", messages=[{"role": "user", "content": "Hi"}],
                                        max_tokens=8, temperature=0, logprobs=True, top_logprobs=2)
    choice = reply.choices[0]
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage.completion_tokens == len(choice.logprobs.content) <= 8
    assert all(len(t.top_logprobs) == 2 for t in choice.logprobs.content)
    assert reply.model_extra["alignment"]["strategy"] == "vanilla"
    assert "".join(t.token for t in choice.logprobs.content) == choice.message.content


def test_stream_equals_non_stream_and_frames_sse(client):
    body = CHAT | {"temperature": 0, "n": 2, "stream": True,
                   "stream_options": {"include_usage": True}}
    events = sse_events(client.post("/v1/chat/completions", json=body).text)
    chunks = [json.loads(e) for e in events]
    assert [c["choices"][0]["delta"]["role"] for c in chunks[:2]] == ["assistant", "assistant"]
    assert all("usage" in c for c in chunks) and chunks[-1]["choices"] == []
    texts = ["", ""]
    for c in chunks[:-1]:
        for choice in c["choices"]:
            texts[choice["index"]] += choice["delta"].get("content") or ""
    assert chunks[-1]["alignment"]["strategy"] == "vanilla"
    whole = client.post("/v1/chat/completions", json=CHAT | {"temperature": 0, "n": 2}).json()
    assert texts == [c["message"]["content"] for c in whole["choices"]]
    assert chunks[-1]["usage"]["completion_tokens"] == whole["usage"]["completion_tokens"]


def test_stream_sdk_strict(sdk):
    stream = sdk.chat.completions.create(model="chat", messages=[{"role": "user", "content": "x"}],
                                         max_tokens=5, stream=True,
                                         stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].choices == [] and 1 <= chunks[-1].usage.completion_tokens <= 5
    assert len(text.encode()) == chunks[-1].usage.completion_tokens  # one byte a token
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")


def test_completions_multi_prompt_indices(client):
    reply = client.post("/v1/completions", json={
        "model": "base", "prompt": ["ab", "cd"], "n": 2, "max_tokens": 4, "temperature": 0,
        "logprobs": 1}).json()
    assert [c["index"] for c in reply["choices"]] == [0, 1, 2, 3]
    assert reply["choices"][0]["text"] == reply["choices"][1]["text"]
    assert reply["usage"]["prompt_tokens"] == 6  # BOS + 2 bytes, twice
    offsets = reply["choices"][0]["logprobs"]["text_offset"]
    assert offsets == sorted(offsets) and offsets[0] == 0


def test_completions_token_id_prompt_and_echo(client):
    reply = client.post("/v1/completions", json={
        "model": "base", "prompt": [104, 105], "max_tokens": 3, "echo": True}).json()
    assert reply["choices"][0]["text"].startswith("hi")


def test_vanilla_seed_is_reproducible(client):
    body = CHAT | {"temperature": 1.0, "seed": 7, "max_tokens": 20}
    first = client.post("/v1/chat/completions", json=body).json()["choices"][0]
    second = client.post("/v1/chat/completions", json=body).json()["choices"][0]
    assert first["message"]["content"] == second["message"]["content"]


def test_models_list(client):
    cards = [c for c in client.get("/v1/models").json()["data"] if c["parent"] is None]
    assert [(c["id"], c["role"], c["object"]) for c in cards] == [
        ("chat", "chat", "model"), ("base", "base", "model")]
    assert cards[0]["root"] == "/stand-in/chat"
    assert client.get("/v1/models/base").json()["id"] == "base"


def assert_error(response, status, param=None, code=None):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    assert body["error"]["param"] == param
    if code is not None:
        assert body["error"]["code"] == code
    return body["error"]


@pytest.mark.parametrize(("change", "status", "param"), [
    ({"alignmnet": "vanilla"}, 400, "alignmnet"),
    ({"alignment": {"strategy": "beam"}}, 400, "alignment.strategy"),
    ({"alignment": {"strategy": "vanilla", "c": 2}}, 400, "alignment.c"),
    ({"model": "nope"}, 404, "model"),
    ({"messages": []}, 400, "messages"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, 400, "messages[0].role"),
    ({"messages": [{"role": "user"}]}, 400, "messages[0].content"),
    ({"temperature": 5}, 400, "temperature"),
    ({"max_tokens": 0}, 400, "max_tokens"),
    ({"max_tokens": 100_000}, 400, "max_tokens"),
    ({"n": 9}, 400, "n"),
    ({"top_logprobs": 50}, 400, "top_logprobs"),
    ({"tools": [{"type": "function"}]}, 400, "tools"),
    ({"messages": [{"role": "user", "content": "x" * 600}]}, 400, "messages"),
])
def test_chat_errors(client, change, status, param):
    assert_error(client.post("/v1/chat/completions", json=CHAT | change), status, param)


def test_malformed_json(client):
    response = client.post("/v1/chat/completions", content=b'{"model": ',
                           headers={"content-type": "application/json"})
    assert "parse the JSON" in assert_error(response, 400)["message"]


def test_body_too_large(client):
    body = CHAT | {"messages": [{"role": "user", "content": "x" * 30_000}]}
    assert_error(client.post("/v1/chat/completions", json=body), 413)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": f"Basic {API_KEY}"}])
def test_auth(client, headers):
    client.headers.pop("Authorization")
    for path in ("/v1/models", "/metrics"):
        assert_error(client.get(path, headers=headers), 401, code="invalid_api_key")
    assert client.get("/health").status_code == 200


def test_unknown_route_in_envelope(client):
    assert_error(client.get("/v1/nothing"), 404)
    assert_error(client.get("/v1/chat/completions"), 405)


def test_completion_errors(client):
    assert_error(client.post("/v1/completions", json={"model": "base", "prompt": ""}), 400,
                 "prompt")
    assert_error(client.post("/v1/completions", json={"model": "base", "prompt": [[300]]}), 400,
                 "prompt")
    assert_error(client.post("/v1/completions", json={"model": "base", "prompt": "x",
                                                      "suffix": "y"}), 400, "suffix")


def test_dead_engine_gives_503(client, engines):
    """Before the first byte, so a stream gets the status too (a balancer can retry it)."""
    engines["chat"].dead = True
    assert_error(client.get("/health"), 503, code="engine_unavailable")
    assert_error(client.post("/v1/chat/completions", json=CHAT), 503, code="engine_unavailable")
    assert_error(client.post("/v1/chat/completions", json=CHAT | {"stream": True}), 503,
                 code="engine_unavailable")
    assert client.post("/v1/completions", json={"model": "base", "prompt": "a"}).status_code == 200


def test_metrics_count_requests_and_cache(client):
    for _ in range(2):
        client.post("/v1/chat/completions", json=CHAT)
    text = client.get("/metrics").text
    assert 'align_requests_total{endpoint="chat",status="ok",strategy="vanilla"} 2.0' in text
    assert 'align_engine_requests_total{model="chat"} 2.0' in text
    hits = [line for line in text.splitlines()
            if line.startswith('align_prefix_cache_hits_total{model="chat"}')]
    assert float(hits[0].split()[-1]) > 0


def test_admission_limit_gives_429_and_frees_its_slot(engines, settings):
    from fastapi.testclient import TestClient

    from server.app import build_app

    limited = settings.model_copy(update={"max_concurrent_requests": 1})
    with TestClient(build_app(limited, engines),
                    headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        with client.stream("POST", "/v1/chat/completions",
                           json=CHAT | {"stream": True, "max_tokens": 200}) as held:
            lines = held.iter_lines()  # keep it: a dropped iterator closes the stream
            next(lines)
            busy = client.post("/v1/chat/completions", json=CHAT)
            assert busy.headers["retry-after"] == "1"
            assert_error(busy, 429, code="rate_limit_exceeded")
            assert client.post("/v1/chat/completions",
                               json=CHAT | {"model": "base"}).status_code == 200
        deadline = time.monotonic() + 5  # the closed stream's slot comes back
        while (status := client.post("/v1/chat/completions", json=CHAT).status_code) == 429:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert status == 200


def test_deadline_aborts_and_answers_503(engines, settings):
    from fastapi.testclient import TestClient

    from server.app import build_app

    hurried = settings.model_copy(update={"request_timeout": 1e-6})
    with TestClient(build_app(hurried, engines),
                    headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        reply = client.post("/v1/chat/completions", json=CHAT | {"max_tokens": 200})
        assert_error(reply, 503, code="deadline_exceeded")
        events = sse_events(client.post("/v1/chat/completions",
                                        json=CHAT | {"stream": True, "max_tokens": 200}).text)
        assert json.loads(events[-1])["error"]["code"] == "deadline_exceeded"
    assert engines["chat"].counters.running == 0
