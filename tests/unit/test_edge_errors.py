"""Bad input is a 400 in OpenAI's envelope, never a 5xx or a reset connection."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlparse

import pytest
from fastapi.testclient import TestClient

from decoding.stand_in import StandInEngine
from server.app import build_app
from tests.unit.conftest import API_KEY
from tests.unit.test_server_stand_in import CHAT, assert_error

RAIN = {"strategy": "rain", "max_visits": 2, "min_searches": 1, "rollout_max_tokens": 2}
STRATEGIES = {
    "vanilla": {"model": "chat"},
    "rain": {"model": "chat", "alignment": RAIN},
    "nudging": {"model": "base", "alignment": {"strategy": "nudging"}},
}


def post_raw(client, path: str, body: dict):
    """JSON with `\\ud800` escapes kept (httpx's `json=` cannot encode a lone surrogate)."""
    return client.post(path, content=json.dumps(body),
                       headers={"content-type": "application/json"})


@pytest.fixture
def wide(settings):
    """Engines with room for RAIN's judge prompt."""
    engines = {"chat": StandInEngine("chat", max_model_len=4096),
               "base": StandInEngine("base", role="base", max_model_len=4096)}
    with TestClient(build_app(settings, engines),
                    headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        yield client


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
@pytest.mark.parametrize("seed", [2**63, 2**64 + 5, 10**30, -(2**63) - 1])
def test_seed_outside_int64_is_400_for_every_strategy(wide, strategy, seed):
    body = CHAT | STRATEGIES[strategy] | {"seed": seed, "max_tokens": 2}
    assert_error(wide.post("/v1/chat/completions", json=body), 400, "seed")


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_seed_at_the_int64_bounds_runs(wide, strategy):
    for seed in (2**63 - 1, -(2**63)):
        body = CHAT | STRATEGIES[strategy] | {"seed": seed, "max_tokens": 2, "n": 2}
        reply = wide.post("/v1/chat/completions", json=body)
        assert reply.status_code == 200, reply.text
        assert reply.json()["alignment"]["strategy"] == strategy


@pytest.mark.parametrize(("change", "param", "words"), [
    ({"stop": [""]}, "stop[0]", "at least 1 character"),
    ({"stop": ""}, "stop", "at least 1 character"),
    ({"stop": ["ok", "\ud800"]}, "stop[1]", "unicode"),
    ({"messages": [{"role": "user", "content": "a\ud800b"}]}, "messages[0].content",
     "unicode"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "\udfff"}]}]},
     "messages[0].content[0].text", "unicode"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools", "not supported"),
    ({"tool_choice": "auto"}, "tool_choice", "not supported"),
    ({"functions": [{"name": "f"}]}, "functions", "not supported"),
    ({"function_call": "auto"}, "function_call", "not supported"),
    ({"alignment": RAIN | {"max_visits": True}}, "alignment.max_visits", "valid integer"),
    ({"alignment": RAIN | {"c": False}}, "alignment.c", "valid number"),
    ({"alignment": {"strategy": "nudging", "gamma": True}}, "alignment.gamma", "valid number"),
    ({"alignment": RAIN | {"token_set_lengths": [1, True]}},
     "alignment.token_set_lengths[1]", "valid integer"),
    ({"alignment": RAIN | {"principle": "be \ud800 nice"}}, "alignment.principle",
     "unicode"),
])
def test_chat_input_errors_name_the_field(wide, change, param, words):
    error = assert_error(post_raw(wide, "/v1/chat/completions", CHAT | change), 400, param)
    assert words in error["message"].lower()


def test_completion_input_errors(wide):
    base = {"model": "base", "prompt": "x", "max_tokens": 2}
    error = assert_error(wide.post("/v1/completions", json=base | {"best_of": 2}), 400,
                         "best_of", code="unsupported_parameter")
    assert "not supported" in error["message"]
    assert_error(post_raw(wide, "/v1/completions", base | {"prompt": ["x", "\ud800"]}), 400,
                 "prompt[1]")
    assert_error(wide.post("/v1/completions", json=base | {"stop": [""]}), 400, "stop[0]")


def test_a_lone_surrogate_in_a_key_is_quoted_safely(wide):
    error = assert_error(post_raw(wide, "/v1/chat/completions", CHAT | {"\ud800": 1}), 400)
    assert error["message"].startswith("Invalid request body")


def test_whole_numbers_still_pass_for_float_fields(wide):
    body = CHAT | {"alignment": RAIN | {"c": 1, "value_threshold": 0}, "max_tokens": 2}
    assert wide.post("/v1/chat/completions", json=body).status_code == 200


def request(conn: http.client.HTTPConnection, body: bytes) -> tuple[int, dict]:
    conn.request("POST", "/v1/chat/completions", body=body,
                 headers={"Content-Type": "application/json",
                          "Authorization": f"Bearer {API_KEY}"})
    response = conn.getresponse()
    return response.status, json.loads(response.read())


def test_faults_keep_the_connection_open(live_url):
    """Over real sockets: each answer arrives and the same keep-alive connection serves
    the next request (before, uvicorn closed it after an unexpected exception)."""
    url = urlparse(live_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        chat = json.dumps(CHAT).encode()
        cases = [
            (b'{"model": "chat", "messages": [{"role": "user", "content": "\xff\xfe"}]}', 400),
            (json.dumps(CHAT | {"model": "broken"}).encode(), 500),
            (json.dumps(CHAT | {"model": "base", "alignment": "nudging", "messages": [
                {"role": "assistant", "content": "Hello"}]}).encode(), None),
            (json.dumps(CHAT | {"seed": 2**64 + 5}).encode(), 400),
            (chat, 200),
        ]
        for body, status in cases:
            got, payload = request(conn, body)
            if status is not None:
                assert got == status, payload
            if got != 200:
                assert set(payload["error"]) == {"message", "type", "param", "code"}
                assert (got >= 500) == (payload["error"]["type"] == "server_error")
        assert conn.sock is not None  # still the first connection
    finally:
        conn.close()
