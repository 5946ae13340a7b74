"""Issue 12 on real engines: selection by header and alias (SDK and nginx), request ids,
tokenize against vLLM's own server, structured outputs, the explicit 400s, fuzzing."""

from __future__ import annotations

import json

import httpx
import jsonschema
import openai
import pytest

from tests.integration.conftest import API_KEY, GEMMA, SMOL
from tests.integration.test_gateway import gateway  # noqa: F401 - the nginx fixture
from tests.unit.test_fuzz import fuzz

pytestmark = pytest.mark.slow
QUESTION = [{"role": "user", "content": "Name a city in France."}]
RAIN = {"max_visits": 3, "min_searches": 1, "rollout_max_tokens": 4}
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
def sdk(server_url):
    return openai.OpenAI(base_url=f"{server_url}/v1", api_key=API_KEY, max_retries=0,
                         _strict_response_validation=True)


@pytest.mark.parametrize(("model", "headers", "strategy", "source"), [
    (f"{SMOL}@rain", {"X-Alignment": json.dumps(RAIN)}, "rain", "alias"),
    (f"{GEMMA}@nudging", {}, "nudging", "alias"),
    (SMOL, {"X-Alignment": json.dumps({"strategy": "rain"} | RAIN)}, "rain", "header"),
    (GEMMA, {"X-Alignment": "nudging"}, "nudging", "header"),
])
def test_header_and_alias_select_through_the_sdk(sdk, model, headers, strategy, source):
    raw = sdk.chat.completions.with_raw_response.create(
        model=model, messages=QUESTION, max_tokens=4, seed=1, extra_headers=headers)
    reply = raw.parse()
    assert raw.headers["x-alignment-strategy"] == strategy
    assert reply.model_extra["alignment"]["strategy"] == strategy
    assert reply.model_extra["alignment"]["selected_by"] == source


@pytest.mark.parametrize(("model", "headers", "strategy"), [
    (f"{GEMMA}@nudging", {}, "nudging"),
    (SMOL, {"X-Alignment": json.dumps({"strategy": "rain"} | RAIN)}, "rain"),
])
def test_header_and_alias_survive_nginx(gateway, model, headers, strategy):  # noqa: F811
    reply = httpx.post(f"{gateway}/v1/chat/completions", headers=AUTH | headers | {
        "X-Request-Id": "through-nginx"}, json={"model": model, "messages": QUESTION,
                                                "max_tokens": 4}, timeout=300)
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-alignment-strategy"] == strategy
    assert reply.headers["x-request-id"] == "through-nginx"
    assert reply.json()["alignment"]["strategy"] == strategy


def test_models_list_capabilities(sdk):
    cards = {m.id: m.model_extra for m in sdk.models.list()}
    assert "nudging" in cards[GEMMA]["strategies"] and f"{GEMMA}@nudging" in cards
    assert "nudging" not in cards[SMOL]["strategies"]  # the default nudger itself
    assert "rain" in cards[SMOL]["strategies"] and "rain" in cards[GEMMA]["strategies"]


def test_request_id_reaches_the_engine_log(server_url, launched):
    reply = httpx.post(f"{server_url}/v1/chat/completions", headers=AUTH | {
        "X-Request-Id": "trace-me-7"}, json={"model": SMOL, "messages": QUESTION,
                                             "max_tokens": 2}, timeout=120)
    assert reply.headers["x-request-id"] == "trace-me-7"
    assert reply.json()["id"] == "chatcmpl-trace-me-7"
    assert "[trace-me-7]" in launched["ours"].log.read_text()


@pytest.mark.parametrize("body", [
    {"prompt": "The capital of France is"},
    {"prompt": "The capital of France is", "add_special_tokens": False},
    {"messages": QUESTION},
    {"messages": QUESTION, "add_generation_prompt": False},
])
def test_tokenize_agrees_with_vllms_server(server_url, vllm_url, body):
    ours = httpx.post(f"{server_url}/tokenize", headers=AUTH, json=body | {"model": SMOL})
    theirs = httpx.post(f"{vllm_url}/tokenize", json=body | {"model": SMOL})
    assert ours.json()["tokens"] == theirs.json()["tokens"]
    assert ours.json()["count"] == theirs.json()["count"]
    assert ours.json()["max_model_len"] == theirs.json()["max_model_len"]
    back = httpx.post(f"{server_url}/detokenize", headers=AUTH,
                      json={"model": SMOL, "tokens": ours.json()["tokens"]})
    vllm_back = httpx.post(f"{vllm_url}/detokenize",
                           json={"model": SMOL, "tokens": ours.json()["tokens"]})
    assert back.json()["prompt"] == vllm_back.json()["prompt"]


def test_json_schema_answer_validates(sdk):
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
                                               "country": {"type": "string", "maxLength": 20}},
              "required": ["city", "country"], "additionalProperties": False}
    reply = sdk.chat.completions.create(
        model=SMOL, messages=QUESTION, max_tokens=64, temperature=0,
        response_format={"type": "json_schema",
                         "json_schema": {"name": "place", "schema": schema, "strict": True}})
    jsonschema.validate(json.loads(reply.choices[0].message.content), schema)
    anything = sdk.chat.completions.create(model=SMOL, messages=QUESTION, max_tokens=64,
                                           temperature=0,
                                           response_format={"type": "json_object"})
    content = anything.choices[0].message.content
    # a small model may pad JSON with whitespace until max_tokens: whole when it stopped
    assert content.lstrip().startswith("{")
    if anything.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(content), dict)


@pytest.mark.parametrize("strategy", ["vanilla", "rain", "nudging"])
@pytest.mark.parametrize("seed", [2**63, 2**64 + 5, 10**30])
def test_seed_outside_int64_is_400(server_url, strategy, seed):
    model = GEMMA if strategy == "nudging" else SMOL
    reply = httpx.post(f"{server_url}/v1/chat/completions", headers=AUTH, timeout=120, json={
        "model": f"{model}@{strategy}", "messages": QUESTION, "max_tokens": 2, "seed": seed})
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "seed"


@pytest.mark.parametrize("strategy", ["vanilla", "rain", "nudging"])
def test_seed_at_int64_max_runs(server_url, strategy):
    """RAIN's and nudging's seed arithmetic overflows past int64; the engine adapter
    wraps every seed, so this is a 200."""
    model = GEMMA if strategy == "nudging" else SMOL
    reply = httpx.post(f"{server_url}/v1/chat/completions", headers=AUTH | {
        "X-Alignment": json.dumps(RAIN) if strategy == "rain" else ""}, timeout=300, json={
        "model": f"{model}@{strategy}", "messages": QUESTION, "max_tokens": 2,
        "seed": 2**63 - 1, "n": 2})
    assert reply.status_code == 200, reply.text


@pytest.mark.parametrize(("body", "param"), [
    ({"stop": [""]}, "stop[0]"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    ({"alignment": {"strategy": "rain", "max_visits": True}}, "alignment.max_visits"),
    ({"messages": [{"role": "user", "content": "\ud800"}]}, "messages[0].content"),
])
def test_explicit_400s(server_url, body, param):
    payload = {"model": SMOL, "messages": QUESTION, "max_tokens": 2} | body
    reply = httpx.post(f"{server_url}/v1/chat/completions", content=json.dumps(payload),
                       headers=AUTH | {"Content-Type": "application/json"}, timeout=120)
    assert reply.status_code == 400 and reply.json()["error"]["param"] == param


def test_invalid_utf8_and_assistant_only_nudging_keep_the_connection(server_url):
    with httpx.Client(base_url=server_url, headers=AUTH, timeout=300) as client:
        bad = client.post("/v1/chat/completions", content=b'{"model": "\xff"}',
                          headers={"Content-Type": "application/json"})
        assert bad.status_code == 400 and bad.json()["error"]["message"]
        lonely = client.post("/v1/chat/completions", json={
            "model": f"{GEMMA}@nudging", "max_tokens": 4,
            "messages": [{"role": "assistant", "content": "Hello"}]})
        assert lonely.status_code < 500 or lonely.json()["error"]["type"] == "server_error"
        assert client.get("/health").status_code == 200  # the same pooled connection


def test_fuzz_the_real_server(server_url):
    assert fuzz(server_url, api_key=API_KEY, max_examples=10) > 50
    assert httpx.get(f"{server_url}/health").status_code == 200
