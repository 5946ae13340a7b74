"""X-Request-Id: taken or generated, echoed, the prefix of engine ids, on log lines."""

from __future__ import annotations

import io
import logging
import re

import pytest
from fastapi.testclient import TestClient

from decoding.stand_in import StandInEngine
from server.app import build_app
from server.logs import FORMAT, RequestIdFilter
from tests.unit.conftest import API_KEY

MESSAGES = [{"role": "user", "content": "Hello"}]
RAIN = {"strategy": "rain", "max_visits": 2, "min_searches": 1, "rollout_max_tokens": 2}


@pytest.fixture
def engines():
    return {"chat": StandInEngine("chat", max_model_len=4096),
            "base": StandInEngine("base", role="base", max_model_len=4096)}


@pytest.fixture
def client(engines, settings):
    with TestClient(build_app(settings, engines),
                    headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        yield client


@pytest.fixture
def log_lines():
    """What a handler configured like the server's writes."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield lambda: out.getvalue().splitlines()
    root.removeHandler(handler)
    root.setLevel(old_level)


@pytest.mark.parametrize(("model", "alignment"), [
    ("chat", None), ("chat", RAIN), ("base", {"strategy": "nudging"})])
def test_request_id_round_trips_and_prefixes_engine_ids(client, engines, log_lines, model,
                                                        alignment):
    body = {"model": model, "messages": MESSAGES, "max_tokens": 3, "n": 2,
            "alignment": alignment}
    reply = client.post("/v1/chat/completions", json=body, headers={"X-Request-Id": "req-42"})
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-request-id"] == "req-42"
    assert reply.json()["id"] == "chatcmpl-req-42"  # as vLLM's server names it
    ids = [rid for engine in engines.values() for rid, _ in engine.calls]
    assert ids and all(rid.startswith("req-42-") for rid in ids)
    mine = [line for line in log_lines() if "[req-42]" in line]
    assert any("chat" in line and "completion tokens" in line for line in mine)


def test_request_id_generated_and_on_errors(client, engines):
    first = client.post("/v1/chat/completions", json={"model": "chat", "messages": MESSAGES,
                                                      "max_tokens": 2})
    second = client.post("/v1/chat/completions", json={"model": "nope", "messages": MESSAGES})
    generated = first.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert engines["chat"].calls[0][0].startswith(f"{generated}-")
    assert second.status_code == 404 and second.headers["x-request-id"] != generated
    assert client.get("/health").headers["x-request-id"]


@pytest.mark.parametrize("given", ["x" * 129, "has space", "tab\tid"])
def test_unusable_request_ids_are_replaced(client, given):
    echoed = client.get("/health", headers={"X-Request-Id": given}).headers["x-request-id"]
    assert echoed != given and re.fullmatch(r"[0-9a-f]{32}", echoed)


def test_same_request_id_twice_gives_distinct_engine_ids(client, engines):
    for _ in range(2):
        client.post("/v1/completions", json={"model": "base", "prompt": "a", "max_tokens": 2},
                    headers={"X-Request-Id": "dup"})
    ids = [rid for rid, _ in engines["base"].calls]
    assert len(ids) == 2 and len(set(ids)) == 2 and all(i.startswith("dup-") for i in ids)
