"""The engine step profile: counters → `/metrics` → the benchmark's profile columns."""

from __future__ import annotations

import asyncio

import pytest

from clients.bench import engine_profile


def test_step_counters_reach_the_benchmark_profile(engines, client, monkeypatch):
    counters = engines["chat"].counters
    counters.steps, counters.step_requests = 10, 40
    counters.computed_prompt_tokens, counters.busy_seconds = 300, 0.5
    counters.batch_sizes = {1: 4, 8: 6}
    engines["base"].counters.steps = 99  # another model's samples are not mixed in
    text = client.get("/metrics").text
    assert 'align_engine_steps_by_batch_total{batch="8",model="chat"} 6.0' in text

    class Reply:
        def __init__(self, body: str) -> None:
            self.text = body

    class Client:
        def __init__(self, **_):
            pass

        async def __aenter__(self):
            return self

        async def __aexit__(self, *_):
            return None

        async def get(self, url):
            return Reply(text)

    monkeypatch.setattr(engine_profile.httpx, "AsyncClient", Client)
    after = asyncio.run(engine_profile.read("http://server", "chat"))
    before = engine_profile.Counters({"steps": 2, "step_requests": 8,
                                      "prefill_computed_tokens": 100, "busy_seconds": 0.1})
    columns = engine_profile.columns(after - before, answer_tokens=4, wall=1.0)
    assert columns["engine steps/token"] == 2
    assert columns["mean batch"] == 4
    assert columns["prefill computed/token"] == 50
    assert columns["engine busy share"] == pytest.approx(0.4)
    assert columns["ms/step"] == pytest.approx(50)
    assert after.values["steps"] == 10 and "generated_tokens" in after.values
