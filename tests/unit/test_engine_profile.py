"""The engine step profile: counters → `/metrics` → the benchmark's profile columns."""

from __future__ import annotations

import asyncio

import pytest

from clients.bench import engine_profile


def test_step_counters_reach_the_benchmark_profile(engines, client, monkeypatch):
    counters = engines["chat"].counters
    counters.steps, counters.step_requests = 10, 40
    counters.computed_prompt_tokens, counters.busy_seconds = 300, 0.5
    counters.generated_tokens = 60
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
                                      "prefill_computed_tokens": 100, "busy_seconds": 0.1,
                                      "generated_tokens": 20})
    columns = engine_profile.columns(after - before, answer_tokens=4, wall=1.0)
    assert columns["engine steps/token"] == 2
    assert columns["mean batch"] == 4
    assert columns["prefill computed/token"] == 50
    assert columns["engine busy share"] == pytest.approx(0.4)
    assert columns["ms/step"] == pytest.approx(50)
    assert columns["engine tokens/step"] == 30  # (200 computed + 40 decoded) / 8 steps
    assert after.values["steps"] == 10 and "generated_tokens" in after.values


def profiled(name: str, tokens_per_step: float, ms_per_step: float, steps_per_token: float,
             vanilla: float = 0.05) -> dict:
    return {"strategy": name, "vanilla s/token": vanilla, "engine tokens/step": tokens_per_step,
            "ms/step": ms_per_step, "engine steps/token": steps_per_token}


def test_step_cost_fit_recovers_a_fixed_and_a_per_token_price():
    rows = [profiled(str(x), x, 40 + 3 * x, 1.0) for x in (1.0, 10.0, 80.0)]
    rows.append(profiled("no profile", float("nan"), float("nan"), 1.0))
    cost = engine_profile.fit_step_cost(rows)
    assert cost.fixed_ms == pytest.approx(40) and cost.per_token_ms == pytest.approx(3)
    assert cost.worst_residual == pytest.approx(0, abs=1e-9)
    noisy = engine_profile.fit_step_cost([*rows[:2], profiled("off", 80.0, 280 * 1.1, 1.0)])
    assert noisy.worst_residual > 0.01
    assert engine_profile.fit_step_cost(rows[:1] * 3) is None  # one step size: no slope


def test_priced_floors_add_up_to_the_ratio_of_a_fully_busy_engine():
    from clients.bench.__main__ import priced

    # 20 steps per answer token of 40 tokens each at 40 + 3·40 = 160 ms: 3.2 s a token
    rows = [profiled("vanilla", 1.0, 43.0, 1.0), profiled("search", 40.0, 160.0, 20.0)]
    fit = priced(rows)
    assert fit[0]["runs fitted"] == 2
    search = rows[1]
    assert search["token floor ×"] == pytest.approx(20 * 40 * 3 / 1000 / 0.05)  # 48
    assert search["step floor ×"] == pytest.approx(20 * 40 / 1000 / 0.05)  # 16
    assert search["token floor ×"] + search["step floor ×"] == pytest.approx(3.2 / 0.05)
    assert search["steps ÷ vanilla's"] == 20 and rows[0]["steps ÷ vanilla's"] == 1
    alone = profiled("search", 40.0, 160.0, 20.0)
    assert priced([alone]) == [] and "token floor ×" not in alone  # one run: nothing fits


def test_during_reads_each_model_before_and_after_the_work(monkeypatch):
    order: list[str] = []
    counts = {"a": 10.0, "b": 100.0}

    async def read(url, model):
        order.append(f"read {model}")
        return engine_profile.Counters({"steps": counts[model], "busy_seconds": counts[model]})

    class Done:
        tokens, wall = 5, 2.0

    async def work():
        order.append("work")
        counts["a"] += 4  # model a ran 4 steps during the work, b none
        return Done()

    monkeypatch.setattr(engine_profile, "read", read)
    done, profiles = asyncio.run(engine_profile.during("http://server", ["a", "b"], work()))
    assert order == ["read a", "read b", "work", "read a", "read b"]
    assert isinstance(done, Done)
    assert profiles["a"]["engine steps/token"] == pytest.approx(4 / 5)
    assert profiles["a"]["engine busy share"] == pytest.approx(4 / 2.0)
    assert profiles["b"]["engine steps/token"] == 0


def test_the_report_plots_the_step_price_and_the_cost(tmp_path):
    from clients.bench import report
    from clients.bench.__main__ import priced

    rows = [profiled("vanilla", 1.0, 43.0, 1.0) | {"time/token ratio": 1.0},
            profiled("rain", 40.0, 160.0, 20.0) | {"time/token ratio": 64.0}]
    sections = {"RAIN cost": rows, "RAIN step cost": priced(rows)}
    text = report.write(tmp_path, sections, {"machine": "test", "mode": "quick",
                                             "seconds": 1.0})
    assert "### RAIN step cost" in text and "token floor ×" in text
    assert (tmp_path / "step-cost.png").stat().st_size > 0
    assert (tmp_path / "cost.png").stat().st_size > 0
    assert not (tmp_path / "scaling.png").exists()  # no section, no plot
