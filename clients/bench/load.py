"""Load generation: N streamed chat requests at concurrency C, timed per chunk."""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Result:
    """One request's timings and what the server said about it."""

    start: float
    first: float | None = None
    chunk_times: list[float] = field(default_factory=list)
    text: str = ""
    completion_tokens: int = 0
    alignment: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def end(self) -> float:
        return self.chunk_times[-1] if self.chunk_times else self.start


async def one(client: httpx.AsyncClient, body: dict) -> Result:
    result = Result(time.perf_counter())
    body = body | {"stream": True, "stream_options": {"include_usage": True}}
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                result.error = f"{response.status_code}: {(await response.aread())[:200]!r}"
                return result
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                now = time.perf_counter()
                if "error" in chunk:
                    result.error = chunk["error"]["message"]
                    continue
                for choice in chunk.get("choices", []):
                    piece = choice["delta"].get("content") or ""
                    if piece:
                        result.first = result.first or now
                        result.chunk_times.append(now)
                        result.text += piece
                if chunk.get("usage"):
                    result.completion_tokens = chunk["usage"]["completion_tokens"]
                if chunk.get("alignment"):
                    result.alignment = chunk["alignment"]
    except httpx.HTTPError as exc:
        result.error = repr(exc)
    return result


@dataclass
class Run:
    """A batch of requests at one concurrency, and its aggregate numbers."""

    results: list[Result]
    wall: float

    @property
    def tokens(self) -> int:
        return sum(r.completion_tokens for r in self.results)

    @property
    def throughput(self) -> float:
        return self.tokens / self.wall if self.wall else 0.0

    @property
    def seconds_per_token(self) -> float:
        return self.wall / self.tokens if self.tokens else float("nan")

    @property
    def ttft(self) -> float:
        firsts = [r.first - r.start for r in self.results if r.first]
        return statistics.mean(firsts) if firsts else float("nan")

    @property
    def itl(self) -> float:
        gaps = [b - a for r in self.results for a, b in itertools.pairwise(r.chunk_times)]
        return statistics.mean(gaps) if gaps else float("nan")

    @property
    def errors(self) -> list[str]:
        return [r.error for r in self.results if r.error]

    def stat(self, *path: str) -> list[Any]:
        values = []
        for r in self.results:
            value: Any = r.alignment.get("stats", {})
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            if value is not None:
                values.append(value)
        return values


async def run(base_url: str, bodies: list[dict], concurrency: int,
              api_key: str | None = None, timeout: float = 1800) -> Run:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=concurrency + 4)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=timeout,
                                 limits=limits) as client:
        gate = asyncio.Semaphore(concurrency)

        async def limited(body: dict) -> Result:
            async with gate:
                return await one(client, body)

        start = time.perf_counter()
        results = await asyncio.gather(*(limited(b) for b in bodies))
        return Run(list(results), time.perf_counter() - start)
