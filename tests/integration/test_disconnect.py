"""A client that goes away has its engine requests aborted (stream and non-stream)."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.integration.conftest import API_KEY, SMOL

pytestmark = pytest.mark.slow
LONG = {"model": SMOL, "messages": [{"role": "user", "content": "Tell a long story."}],
        "max_tokens": 1500, "ignore_eos": True}
HEADERS = {"Authorization": f"Bearer {API_KEY}"}


def engine_counter(server_url: str, name: str) -> float:
    text = httpx.get(f"{server_url}/metrics", headers=HEADERS).text
    line = next(line for line in text.splitlines()
                if line.startswith(f'{name}{{model="{SMOL}"}}'))
    return float(line.split()[-1])


def wait_for_abort(server_url: str, before: float, seconds: float = 5.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if engine_counter(server_url, "align_engine_aborted_requests_total") > before:
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError("the engine request was not aborted")


def test_stream_disconnect_aborts(server_url):
    before = engine_counter(server_url, "align_engine_aborted_requests_total")
    with (
        httpx.Client(base_url=server_url, headers=HEADERS, timeout=60) as client,
        client.stream("POST", "/v1/chat/completions", json=LONG | {"stream": True}) as r,
    ):
        lines = r.iter_lines()
        assert next(lines).startswith("data: ")
        next(lines)
    wait_for_abort(server_url, before)
    generated = engine_counter(server_url, "align_engine_generated_tokens_total")
    time.sleep(1)
    assert engine_counter(server_url, "align_engine_generated_tokens_total") == generated


def test_non_stream_disconnect_aborts(server_url):
    before = engine_counter(server_url, "align_engine_aborted_requests_total")
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server_url}/v1/chat/completions", json=LONG, headers=HEADERS, timeout=1.5)
    wait_for_abort(server_url, before)
