"""A client that goes away has its engine requests aborted (stream and non-stream)."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.integration.conftest import API_KEY, GEMMA, SMOL

pytestmark = pytest.mark.slow
STORY = [{"role": "user", "content": "Tell a long story about a dragon."}]
LONG = {"model": SMOL, "messages": STORY, "max_tokens": 1500, "ignore_eos": True}
NUDGED = {"model": GEMMA, "messages": STORY, "max_tokens": 1500,
          "alignment": {"strategy": "nudging", "gamma": 0.4}}
HEADERS = {"Authorization": f"Bearer {API_KEY}"}


def engine_metric(server_url: str, name: str, model: str) -> float:
    text = httpx.get(f"{server_url}/metrics", headers=HEADERS).text
    line = next(line for line in text.splitlines() if line.startswith(f'{name}{{model="{model}"}}'))
    return float(line.split()[-1])


def wait_idle(server_url: str, models: list[str], seconds: float = 3.0) -> None:
    """Every engine of `models` has no request in flight within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if all(engine_metric(server_url, "align_engine_running_requests", m) == 0
               for m in models):
            return
        time.sleep(0.05)
    raise AssertionError("engine requests still running after the client left")


def stream_then_leave(server_url: str, body: dict, events: int = 3) -> None:
    with (
        httpx.Client(base_url=server_url, headers=HEADERS, timeout=120) as client,
        client.stream("POST", "/v1/chat/completions", json=body | {"stream": True}) as r,
    ):
        # events only: a streamed search may send `: searching` comment lines first
        lines = (line for line in r.iter_lines() if line and not line.startswith(":"))
        for _ in range(events):
            assert next(lines).startswith("data: {")


def test_stream_disconnect_aborts(server_url):
    aborted = engine_metric(server_url, "align_engine_aborted_requests_total", SMOL)
    stream_then_leave(server_url, LONG)
    wait_idle(server_url, [SMOL])
    assert engine_metric(server_url, "align_engine_aborted_requests_total", SMOL) > aborted


def test_non_stream_disconnect_aborts(server_url):
    aborted = engine_metric(server_url, "align_engine_aborted_requests_total", SMOL)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server_url}/v1/chat/completions", json=LONG, headers=HEADERS, timeout=1.5)
    wait_idle(server_url, [SMOL])
    assert engine_metric(server_url, "align_engine_aborted_requests_total", SMOL) > aborted


def test_nudging_disconnect_aborts_both_engines(server_url):
    stream_then_leave(server_url, NUDGED)
    wait_idle(server_url, [SMOL, GEMMA])
    generated = [engine_metric(server_url, "align_engine_generated_tokens_total", m)
                 for m in (SMOL, GEMMA)]
    time.sleep(1)
    assert generated == [engine_metric(server_url, "align_engine_generated_tokens_total", m)
                         for m in (SMOL, GEMMA)]
