"""Soak: a long mixed load with the server's memory sampled throughout.

Steady clients send vanilla, nudging and RAIN requests, streamed or not, and close some
streams after their first text (a client walking away); bursts of more requests than the
admission limit hit one model at once: each admitted stream is held open, unread, until
every request of the burst has its status, so that as many as pass the limit get a 429
however their arrival is spread (as long as that arrival is shorter than an admitted
stream's 256 tokens: the server frees a place when the decoding ends). Meanwhile the
resident memory of the server process and of each of its child processes (the engines)
is sampled. At the end the server's `/metrics` must show no engine request still running.

Used by `make bench ARGS=--soak` (minutes) and by a slow test (about a minute).
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

#: what a well-behaved server answers under this load; anything else is a finding
EXPECTED = frozenset({"200", "429", "cancelled", "held"})
MIB = 1 << 20
#: seconds a steady client waits after a 429 (the server's `Retry-After`)
RETRY_AFTER = 1.0
#: seconds an admitted burst stream waits for the rest of its burst's statuses
HOLD_LIMIT = 120.0


QUESTIONS = (
    "How do I bake bread at home?",
    "Name three colours.",
    "What is the capital of France?",
    "Write a haiku about rain.",
    "How do I pick a lock?",
    "Explain photosynthesis to a child.",
)


@dataclass(frozen=True)
class Kind:
    """One kind of request in the mix: a name for the report and its chat body (the
    question is drawn per request)."""

    strategy: str
    body: dict


@dataclass(frozen=True)
class SoakPlan:
    kinds: tuple[Kind, ...]
    seconds: float
    clients: int  # steady clients, each one request at a time
    burst: Kind  # sent `burst_size` at once, every `burst_every` seconds
    burst_size: int  # above the server's admission limit for that model
    burst_every: float
    sample_every: float  # seconds between memory samples
    warmup: float  # seconds of memory left out of the growth figures
    stream_share: float = 0.5
    cancel_share: float = 0.25  # of the streamed requests
    seed: int = 0


def mixed_plan(
    *,
    chat_model: str,
    base_model: str,
    nudger: str,
    seconds: float,
    admission_limit: int,
    clients: int,
    sample_every: float,
    warmup: float,
    burst_every: float,
) -> SoakPlan:
    """The soak's mix: vanilla (sampled), greedy nudging of the base model, and RAIN on a
    small budget so that it answers in seconds; bursts of vanilla streams, the admission
    limit and a quarter plus two, long enough (256 tokens that cannot stop early) to outlast
    the burst's arrival: they are closed once every request of the burst has its
    status."""
    rain = {"strategy": "rain", "max_visits": 4, "min_searches": 2}
    kinds = (
        Kind("vanilla", {"model": chat_model, "max_tokens": 48, "temperature": 0.8}),
        Kind(
            "nudging",
            {
                "model": base_model,
                "max_tokens": 32,
                "alignment": {"strategy": "nudging", "nudging_model": nudger},
            },
        ),
        Kind("rain", {"model": chat_model, "max_tokens": 8, "alignment": rain}),
    )
    burst = Kind("vanilla", {"model": chat_model, "max_tokens": 256, "ignore_eos": True})
    return SoakPlan(
        kinds,
        seconds,
        clients,
        burst,
        admission_limit + admission_limit // 4 + 2,
        burst_every,
        sample_every,
        warmup,
    )


@dataclass(frozen=True)
class Outcome:
    """How one request ended: `status` is the HTTP status, or for a stream that began
    `cancelled` (we closed it at its first text), `held` (a burst stream we closed once
    its burst had every status), `error event: CODE`, or `cut` (no `[DONE]`)."""

    strategy: str
    mode: str  # "streamed", "non-streamed", "burst"
    status: str
    seconds: float


@dataclass
class SoakResult:
    outcomes: list[Outcome]
    memory: list[dict]  # {"minute", "process", "RSS MiB"} rows
    running_at_end: dict[str, float]  # engine requests in flight per model
    aborted: dict[str, float]  # engine requests aborted during the soak
    drain_seconds: float  # from the last answer until none was running
    warmup_minutes: float = 0.0
    burst_size: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def unexpected(self) -> Counter[str]:
        return Counter(o.status for o in self.outcomes if o.status not in EXPECTED)


@dataclass
class Hold:
    """A burst's count of requests that have their status; its admitted streams wait for
    all of them, so the server sees the whole burst in flight at once."""

    size: int
    known: int = 0
    everyone: asyncio.Event = field(default_factory=asyncio.Event)

    def arrived(self) -> None:
        self.known += 1
        if self.known >= self.size:
            self.everyone.set()


async def send(
    client: httpx.AsyncClient,
    kind: Kind,
    question: str,
    *,
    mode: str,
    cancel: bool = False,
    hold: Hold | None = None,
) -> Outcome:
    """One chat request; a stream to be cancelled is closed at its first text, a held one
    (a burst's, always streamed) once its whole burst has a status."""
    started = time.perf_counter()
    streamed = mode == "streamed" or hold is not None
    body = kind.body | {"stream": streamed, "messages": [{"role": "user", "content": question}]}

    def outcome(status: str) -> Outcome:
        return Outcome(kind.strategy, mode, status, time.perf_counter() - started)

    counted = hold is None

    def count() -> None:
        nonlocal counted
        if not counted:
            counted = True
            hold.arrived()

    try:
        if not streamed:
            response = await client.post("/v1/chat/completions", json=body)
            if response.status_code == 200 and not response.json().get("choices"):
                return outcome("200 without choices")
            return outcome(str(response.status_code))
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            count()
            if response.status_code != 200:
                await response.aread()
                return outcome(str(response.status_code))
            if hold is not None:
                try:
                    await asyncio.wait_for(hold.everyone.wait(), HOLD_LIMIT)
                except TimeoutError:
                    return outcome(f"held over {HOLD_LIMIT:g} s")
                return outcome("held")  # leaving the block closes the stream
            status = "cut"
            async for line in response.aiter_lines():
                if line == "data: [DONE]":
                    return outcome("200" if status == "cut" else status)
                if not line.startswith("data: "):
                    continue  # blank separators, RAIN's progress comments
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    status = f"error event: {chunk['error'].get('code')}"
                elif cancel and any(c["delta"].get("content") for c in chunk.get("choices", [])):
                    return outcome("cancelled")  # leaving the block closes the stream
            return outcome(status)
    except httpx.HTTPError as exc:
        return outcome(f"transport error: {type(exc).__name__}")
    finally:
        count()


def server_process(url: str) -> psutil.Process | None:
    """The process listening on the URL's port on this machine (the front end: engines
    start before uvicorn opens its socket, so they do not share it)."""
    port = urlsplit(url).port
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:  # some systems list sockets only to root
        return None
    listeners = {
        c.pid
        for c in connections
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port and c.pid
    }
    processes = [psutil.Process(pid) for pid in listeners]
    roots = [p for p in processes if p.ppid() not in listeners]
    return roots[0] if roots else None


def resident(process: psutil.Process) -> dict[str, int]:
    """RSS of the front end alone, of each child with its own children (an engine core
    and what it started), and of the whole tree."""

    def rss(p: psutil.Process) -> int:
        try:
            return p.memory_info().rss
        except psutil.Error:  # exited between listing and reading
            return 0

    def tree(p: psutil.Process) -> int:
        try:
            return rss(p) + sum(rss(c) for c in p.children(recursive=True))
        except psutil.Error:
            return 0

    sizes = {"front end": rss(process)}
    for child in process.children():
        try:
            sizes[f"{child.name()} {child.pid}"] = tree(child)
        except psutil.Error:
            continue
    sizes["total"] = sum(sizes.values())
    return sizes


def engine_gauges(metrics_text: str) -> dict[str, dict[str, float]]:
    """Per-model `align_engine_running_requests` ("running"),
    `align_engine_aborted_requests_total` ("aborted") and `align_requests_in_flight`
    ("in_flight")."""
    names = {
        "align_engine_running_requests": "running",
        "align_engine_aborted_requests_total": "aborted",
        "align_requests_in_flight": "in_flight",
    }
    found: dict[str, dict[str, float]] = {key: {} for key in names.values()}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name in names:
                found[names[sample.name]][sample.labels["model"]] = sample.value
    return found


async def read_engines(client: httpx.AsyncClient) -> dict[str, dict[str, float]]:
    response = await client.get("/metrics")
    response.raise_for_status()
    return engine_gauges(response.text)


async def drained(client: httpx.AsyncClient, limit: float = 30) -> tuple[dict, float]:
    """Engine gauges once nothing runs (aborts land a moment after the client leaves),
    or as they are after `limit` seconds; and how long that took."""
    started = time.perf_counter()
    while True:
        gauges = await read_engines(client)
        waited = time.perf_counter() - started
        if not any(gauges["running"].values()) or waited > limit:
            return gauges, waited
        await asyncio.sleep(0.5)


async def soak(
    url: str, plan: SoakPlan, *, api_key: str | None = None, progress: bool = False
) -> SoakResult:
    rng = random.Random(plan.seed)
    process = server_process(url)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=plan.clients + plan.burst_size + 8)
    outcomes: list[Outcome] = []
    memory: list[dict] = []
    async with httpx.AsyncClient(
        base_url=url, headers=headers, timeout=1800, limits=limits
    ) as client:
        before = await read_engines(client)
        started = time.perf_counter()
        deadline = started + plan.seconds

        async def steady() -> None:
            while time.perf_counter() < deadline:
                kind = rng.choice(plan.kinds)
                streamed = rng.random() < plan.stream_share
                cancel = streamed and rng.random() < plan.cancel_share
                outcome = await send(
                    client,
                    kind,
                    rng.choice(QUESTIONS),
                    cancel=cancel,
                    mode="streamed" if streamed else "non-streamed",
                )
                outcomes.append(outcome)
                if outcome.status == "429":
                    await asyncio.sleep(RETRY_AFTER)

        async def bursts() -> None:
            while time.perf_counter() + plan.burst_every < deadline:
                await asyncio.sleep(plan.burst_every)
                hold = Hold(plan.burst_size)
                outcomes.extend(
                    await asyncio.gather(
                        *(
                            send(client, plan.burst, question, mode="burst", hold=hold)
                            for question in rng.choices(QUESTIONS, k=plan.burst_size)
                        )
                    )
                )

        async def sample() -> None:
            while process is not None:
                minute = (time.perf_counter() - started) / 60
                sizes = await asyncio.to_thread(resident, process)
                memory.extend(
                    {"minute": minute, "process": name, "RSS MiB": size / MIB}
                    for name, size in sizes.items()
                )
                if progress:
                    print(
                        f"soak {minute:5.1f} min: {len(outcomes)} answers, "
                        f"{Counter(o.status for o in outcomes)}, "
                        f"RSS total {sizes['total'] / MIB:.0f} MiB",
                        flush=True,
                    )
                await asyncio.sleep(plan.sample_every)

        sampler = asyncio.create_task(sample())
        try:
            await asyncio.gather(bursts(), *(steady() for _ in range(plan.clients)))
            gauges, waited = await drained(client)
        finally:
            sampler.cancel()
        if process is not None:  # one sample after the load, for the record
            sizes = resident(process)
            minute = (time.perf_counter() - started) / 60
            memory.extend(
                {"minute": minute, "process": name, "RSS MiB": size / MIB}
                for name, size in sizes.items()
            )
    aborted = {
        model: value - before["aborted"].get(model, 0) for model, value in gauges["aborted"].items()
    }
    notes = [] if process else [f"no process listens on {url} here: memory not sampled"]
    return SoakResult(
        outcomes,
        memory,
        gauges["running"],
        aborted,
        waited,
        plan.warmup / 60,
        plan.burst_size,
        notes,
    )


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (p99 of a few values is their maximum)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(1, math.ceil(share * len(ordered))) - 1]  # rank ⌈p·n⌉


def outcome_rows(outcomes: Sequence[Outcome]) -> list[dict]:
    """Per strategy and mode: requests, p50/p99 seconds of the 200s, each status's count."""
    rows = []
    for strategy, mode in sorted({(o.strategy, o.mode) for o in outcomes}):
        mine = [o for o in outcomes if (o.strategy, o.mode) == (strategy, mode)]
        done = [o.seconds for o in mine if o.status == "200"]
        rows.append(
            {
                "strategy": strategy,
                "mode": mode,
                "requests": len(mine),
                "p50 s": percentile(done, 0.5),
                "p99 s": percentile(done, 0.99),
                **dict(sorted(Counter(o.status for o in mine).items())),
            }
        )
    return rows


def burst_rows(outcomes: Sequence[Outcome], size: int) -> list[dict]:
    """Per burst (each lands in the outcomes as one block of `size`): its count of each
    status; at most the admission limit can be `held`."""
    if size <= 0:
        return []
    mine = [o for o in outcomes if o.mode == "burst"]
    return [
        {"burst": n + 1, **dict(sorted(Counter(o.status for o in mine[i : i + size]).items()))}
        for n, i in enumerate(range(0, len(mine), size))
    ]


def growth(memory: Sequence[dict], warmup_minutes: float) -> list[dict]:
    """Per process, after warm-up: the mean RSS of the first and the last third of the
    samples, their difference, and the least-squares slope."""
    rows = []
    for name in dict.fromkeys(r["process"] for r in memory):
        points = [
            (r["minute"], r["RSS MiB"])
            for r in memory
            if r["process"] == name and r["minute"] >= warmup_minutes
        ]
        if len(points) < 3:
            continue
        third = len(points) // 3
        first = statistics.mean(v for _, v in points[:third])
        last = statistics.mean(v for _, v in points[-third:])
        minutes = [m for m, _ in points]
        slope = (
            statistics.linear_regression(minutes, [v for _, v in points]).slope
            if len(set(minutes)) > 1
            else 0.0
        )
        rows.append(
            {
                "process": name,
                "samples": len(points),
                "first third MiB": first,
                "last third MiB": last,
                "growth MiB": last - first,
                "growth %": 100 * (last - first) / first,
                "slope MiB/min": slope,
                "peak MiB": max(v for _, v in points),
            }
        )
    return rows


def sections(result: SoakResult) -> dict[str, list[dict]]:
    """The report's tables."""
    models = dict.fromkeys([*result.running_at_end, *result.aborted])
    return {
        "soak: answers by strategy and status": outcome_rows(result.outcomes),
        "soak: bursts": burst_rows(result.outcomes, result.burst_size),
        f"soak: resident memory after {result.warmup_minutes:.2g} min of warm-up": growth(
            result.memory, result.warmup_minutes
        ),
        "soak: engine requests at the end": [
            {
                "model": m,
                "running at end": result.running_at_end.get(m, float("nan")),
                "aborted during soak": result.aborted.get(m, float("nan")),
                "seconds until none ran": result.drain_seconds,
            }
            for m in models
        ],
    }
