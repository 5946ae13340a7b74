"""The soak driver's bookkeeping: its figures, the metrics it reads, and a short soak over
stand-in engines on a real socket (the real-engine soak is a slow test)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from prometheus_client import generate_latest

from clients.bench import report, soak
from decoding.stand_in import StandInEngine
from server.admission import Admission
from server.metrics import Metrics
from tests.integration.nginx import start_stand_in


def test_engine_gauges_read_what_the_server_exports():
    engines = {"chat": StandInEngine("chat"), "base": StandInEngine("base", role="base")}
    engines["chat"].counters.running = 2
    engines["base"].counters.aborted = 3
    admission = Admission(limit=4)
    admission.reserve("base", request := Holder())
    text = generate_latest(Metrics(engines, admission).registry).decode()
    assert soak.engine_gauges(text) == {
        "running": {"chat": 2.0, "base": 0.0},
        "aborted": {"chat": 0.0, "base": 3.0},
        "in_flight": {"chat": 0.0, "base": 1.0},
    }
    request.release()
    text = generate_latest(Metrics(engines, admission).registry).decode()
    assert soak.engine_gauges(text)["in_flight"] == {"chat": 0.0, "base": 0.0}


class Holder:
    """What `Admission.reserve` hangs its release on (a request's decoding)."""


@pytest.mark.parametrize(("share", "expected"), [(0.5, 50), (0.99, 99), (1.0, 100), (0.0, 1)])
def test_percentile_is_nearest_rank(share, expected):
    assert soak.percentile(list(range(100, 0, -1)), share) == expected


def test_percentile_of_nothing_is_nan():
    assert soak.percentile([], 0.5) != soak.percentile([], 0.5)


def samples(process: str, values: list[float], every: float = 0.5) -> list[dict]:
    return [{"minute": i * every, "process": process, "RSS MiB": v} for i, v in enumerate(values)]


def test_growth_compares_thirds_after_warm_up():
    memory = samples("flat", [999, 100, 100, 100, 100, 100, 100]) + samples(
        "leaking", [999, 100, 110, 120, 130, 140, 150]
    )
    rows = {r["process"]: r for r in soak.growth(memory, warmup_minutes=0.5)}
    assert rows["flat"]["growth MiB"] == 0 and rows["flat"]["slope MiB/min"] == 0
    assert rows["flat"]["samples"] == 6 and rows["flat"]["peak MiB"] == 100
    leaking = rows["leaking"]  # thirds: (100, 110) and (140, 150); 10 MiB per half minute
    assert leaking["first third MiB"] == 105 and leaking["last third MiB"] == 145
    assert leaking["growth MiB"] == 40 and leaking["growth %"] == pytest.approx(100 * 40 / 105)
    assert leaking["slope MiB/min"] == pytest.approx(20)


def test_outcome_rows_count_statuses_and_time_only_answers():
    outcomes = [
        soak.Outcome("rain", "streamed", "200", 2.0),
        soak.Outcome("rain", "streamed", "cancelled", 0.1),
        soak.Outcome("rain", "streamed", "200", 4.0),
        soak.Outcome("vanilla", "burst", "429", 0.01),
    ]
    assert soak.outcome_rows(outcomes) == [
        {
            "strategy": "rain",
            "mode": "streamed",
            "requests": 3,
            "200": 2,
            "cancelled": 1,
            "p50 s": 2.0,
            "p99 s": 4.0,
        },
        {
            "strategy": "vanilla",
            "mode": "burst",
            "requests": 1,
            "429": 1,
            "p50 s": pytest.approx(float("nan"), nan_ok=True),
            "p99 s": pytest.approx(float("nan"), nan_ok=True),
        },
    ]


def test_a_short_soak_over_stand_ins_leaves_nothing_running(tmp_path):
    """Vanilla and nudging (RAIN would load the sentence model: the slow test runs it),
    streamed, cancelled and in bursts past an admission limit of 4 (the three steady
    clients leave at least one place to a burst)."""
    server = start_stand_in(tmp_path, "--max-concurrent-requests", "4")
    try:
        plan = soak.mixed_plan(
            chat_model="chat",
            base_model="base",
            nudger="chat",
            seconds=3.5,
            admission_limit=4,
            clients=3,
            sample_every=0.25,
            warmup=1,
            burst_every=1.5,
        )
        plan = dataclasses.replace(plan, kinds=tuple(k for k in plan.kinds if k.strategy != "rain"))
        result = asyncio.run(soak.soak(server.url, plan, api_key="gateway-key"))
    finally:
        server.stop()
    statuses = {o.status for o in result.outcomes}
    assert not result.unexpected
    assert statuses == {"200", "429", "cancelled", "held"}
    assert {o.strategy for o in result.outcomes if o.status == "200"} == {"vanilla", "nudging"}
    bursts = soak.burst_rows(result.outcomes, plan.burst_size)  # 7 each, 4 admitted at most
    assert [set(b) for b in bursts] == [{"burst", "held", "429"}] * 2, bursts
    assert all(b["held"] <= 4 and b["held"] + b["429"] == plan.burst_size for b in bursts)
    assert result.running_at_end == {"chat": 0, "base": 0, "dead": 0}
    processes = {r["process"] for r in result.memory}
    assert processes == {"front end", "total"}  # stand-ins run in the server's process
    sections = soak.sections(result)
    assert [r["running at end"] for r in sections["soak: engine requests at the end"]] == [0] * 3
    report.memory_plot(tmp_path, result.memory, result.warmup_minutes)
    assert (tmp_path / "soak-memory.png").stat().st_size > 0
