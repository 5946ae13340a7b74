"""What a vLLM engine's scheduler ran, step by step, kept in the engine's counters.

Fed by a vLLM stat logger (`vllm_engine.EngineSteps`) with vLLM's per-step
`SchedulerStats` and `IterationStats`; kept free of vLLM imports so the arithmetic is
tested on scripted stats.
"""

from __future__ import annotations

from decoding.types import EngineCounters


class StepProfile:
    """The profile behind a strategy's cost: steps, batch sizes, prefill computed and the
    time the engine was busy."""

    def __init__(self, counters: EngineCounters) -> None:
        self.counters = counters
        self.last: float | None = None  # when the last step that left work queued ended
        self.previous: float | None = None  # when the last step ended

    def record(self, scheduler_stats, iteration_stats) -> None:
        if scheduler_stats is None or iteration_stats is None:
            return
        now = iteration_stats.iteration_timestamp
        counters = self.counters
        computed = iteration_stats.prompt_token_stats.computed
        # the requests that produced a token in this step (the scheduler's running count is
        # taken after the step's finished requests left, so one-token requests miss it)
        batch = (len(iteration_stats.time_to_first_tokens_iter)
                 + len(iteration_stats.inter_token_latencies_iter))
        if batch or computed:
            counters.steps += 1
            counters.step_requests += batch
            counters.computed_prompt_tokens += computed
            bucket = 1 << max(0, batch - 1).bit_length()
            counters.batch_sizes[bucket] = counters.batch_sizes.get(bucket, 0) + 1
            if self.last is not None:
                counters.busy_seconds += now - self.last
            elif iteration_stats.time_to_first_tokens_iter:  # the step that ended an idle:
                # since its first request arrived, but not before the previous step ended
                since = max(iteration_stats.time_to_first_tokens_iter)
                if self.previous is not None:
                    since = min(since, now - self.previous)
                counters.busy_seconds += since
        self.previous = now
        # the engine steps on without pause while requests run or wait
        waiting = scheduler_stats.num_running_reqs + scheduler_stats.num_waiting_reqs
        self.last = now if waiting else None
