"""`StepProfile`, the arithmetic behind the engine step profile, on scripted vLLM stats."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from decoding.step_profile import StepProfile
from decoding.types import EngineCounters


def stats(at, first=(), later=(), computed=0, running=0, waiting=0):
    scheduler = SimpleNamespace(num_running_reqs=running, num_waiting_reqs=waiting)
    iteration = SimpleNamespace(iteration_timestamp=at, time_to_first_tokens_iter=list(first),
                                inter_token_latencies_iter=list(later),
                                prompt_token_stats=SimpleNamespace(computed=computed))
    return scheduler, iteration


def test_batches_count_requests_that_finished_in_their_step_and_busy_time_spans_queues():
    counters = EngineCounters()
    steps = StepProfile(counters)
    # ten one-token judge requests prefilled together: all finished in the step (running 0)
    steps.record(*stats(10.0, first=[0.2] * 10, computed=300))
    # idle until a rollout arrives; it runs 3 steps, one request waits behind it meanwhile
    steps.record(*stats(20.0, first=[0.05], computed=20, running=1, waiting=1))
    steps.record(*stats(20.04, first=[0.04], later=[0.04], running=2))
    steps.record(*stats(20.08, later=[0.04, 0.04]))
    steps.record(None, None)  # a step without stats changes nothing
    assert counters.steps == 4
    assert counters.step_requests == 10 + 1 + 2 + 2
    assert counters.batch_sizes == {16: 1, 1: 1, 2: 2}
    assert counters.computed_prompt_tokens == 320
    assert counters.busy_seconds == pytest.approx(0.2 + 0.05 + 0.04 + 0.04)


def test_a_step_after_idle_never_counts_time_before_the_previous_step():
    counters = EngineCounters()
    steps = StepProfile(counters)
    steps.record(*stats(10.0, first=[0.1]))
    # arrived 0.5 s ago, while the previous step was still running: 0.3 s since it ended
    steps.record(*stats(10.3, first=[0.5]))
    assert counters.busy_seconds == pytest.approx(0.1 + 0.3)
