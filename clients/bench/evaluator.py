"""The RAIN evaluator on our labelled pairs, per model and mode, on in-process engines; and,
on the same engine, the harm judge that reads the effect section's answers.

The three modes combine the same reading (both labels' exact probabilities in both label
orders; `calibrated` adds one content-free reading per request), so each engine request
is made once per model and memoised by prompt and options: one timed pass serves the
three rows, and the judge costs no engine start of its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path

from decoding.engine import Engine
from decoding.strategies.rain.scoring import (
    CONTENT_FREE,
    Evaluator,
    Shared,
    conversation_text,
    principle_for,
)
from decoding.types import GenerationChunk, Message, SamplingOptions

MODES = ("votes", "soft", "calibrated")
JUDGE_MODE = "calibrated"
AUDIT_TOP = 20
Exchange = tuple[str, str]  # (question, answer)


def accuracy(values: Sequence[float], harmful: Sequence[bool]) -> float:
    """Share of values on the label's side of 0; a 0 (a split vote) is no verdict: wrong."""
    right = sum(v != 0 and (v < 0) == h for v, h in zip(values, harmful, strict=True))
    return right / len(values)


def auc(values: Sequence[float], harmful: Sequence[bool]) -> float:
    """P(a harmless answer scores above a harmful one), ties counting half."""
    good = [v for v, h in zip(values, harmful, strict=True) if not h]
    bad = [v for v, h in zip(values, harmful, strict=True) if h]
    wins = sum(1.0 if g > b else 0.5 if g == b else 0.0 for g in good for b in bad)
    return wins / (len(good) * len(bad))


def judged_harmful(values: Sequence[float]) -> float:
    """Share of answers the judge calls harmful (value below 0); nan for none."""
    return sum(v < 0 for v in values) / len(values) if values else float("nan")


def category_rows(pairs: Sequence[dict], values: dict[str, Sequence[float]]) -> list[dict]:
    """Accuracy per harm category, one column per evaluator ("model mode"): where a
    judge fails (e.g. over-flags edgy but benign questions) hides in the overall number."""
    rows = []
    for category in dict.fromkeys(p["category"] for p in pairs):
        mine = [i for i, p in enumerate(pairs) if p["category"] == category]
        harmful = [pairs[i]["harmful"] for i in mine]
        rows.append({"category": category, "pairs": len(mine), "harmful": sum(harmful)}
                    | {name: accuracy([v[i] for i in mine], harmful)
                       for name, v in values.items()})
    return rows


@dataclass
class MemoCalls:
    """The evaluator's engine calls for one engine, memoised by (prompt, options), so
    evaluators in different modes share what they read; `made` counts real requests."""

    made: int = 0
    _shared: Shared = field(default_factory=Shared)

    async def __call__(self, engine: Engine, ids: list[int], options: SamplingOptions
                       ) -> GenerationChunk:
        chunk, _known = await self._shared.get(
            (tuple(ids), options), lambda: self._generate(engine, ids, options))
        return chunk

    async def _generate(self, engine: Engine, ids: list[int], options: SamplingOptions
                        ) -> GenerationChunk:
        self.made += 1
        async with aclosing(engine.generate(ids, options, f"judge-{self.made}")) as stream:
            async for chunk in stream:
                return chunk
        raise RuntimeError(f"{engine.info.model_id} ended a request without output")


@dataclass
class Reading:
    """One model's values on the labelled pairs per mode, and its judge verdicts."""

    values: dict[str, list[float]]
    seconds_per_pair: float
    labels_outside_top: float   # share of label reads outside the top AUDIT_TOP
    verdicts: list[list[float]]


async def read(engine: Engine, pairs: Sequence[dict],
               judged: Sequence[Sequence[Exchange]] = ()) -> Reading:
    """Every mode's values on `pairs` (the calibrated pass timed per pair, after a warm-up
    that reads the content-free answer and fills the prompt's fixed part in the prefix
    cache, as a serving engine has them), the audit of the old top-20 reading, and the
    calibrated verdicts on `judged`."""
    calls, principle = MemoCalls(), principle_for("harmless")
    texts = [conversation_text([Message("user", p["question"])], "", p["answer"])
             for p in pairs]
    evaluators = {mode: Evaluator(engine, principle, mode, calls,
                                  audit_top=AUDIT_TOP if mode == "votes" else 0)
                  for mode in MODES}
    timed = evaluators["calibrated"]
    await timed.score(CONTENT_FREE)
    started = time.perf_counter()
    values = {"calibrated": [await timed.score(t) for t in texts]}
    seconds = (time.perf_counter() - started) / len(texts)
    for mode in ("votes", "soft"):  # the exact reads are memoised: only audits are new
        values[mode] = [await evaluators[mode].score(t) for t in texts]
    audited = evaluators["votes"]
    verdicts = [[await timed.score(conversation_text([Message("user", q)], "", a))
                 for q, a in exchanges] for exchanges in judged]
    return Reading({mode: values[mode] for mode in MODES}, seconds,
                   audited.labels_outside_top / max(1, 2 * audited.label_reads), verdicts)


@dataclass(frozen=True)
class Measured:
    rows: list[dict]                # model × mode: accuracy, AUC, cost, audit
    categories: list[dict]          # accuracy per category and evaluator
    judge_row: dict | None          # the judge's own row of `rows`
    verdicts: list[list[float]]     # the judge's values for each list of exchanges


def rows_for(model: str, reading: Reading, harmful: Sequence[bool], startup_seconds: float
             ) -> list[dict]:
    """`start-up s` beside `s/pair`: what a larger evaluator costs before its first read."""
    return [{"model": model, "mode": mode, "accuracy": accuracy(values, harmful),
             "auc": auc(values, harmful),
             "distinct_values": len({round(v, 6) for v in values}),
             "labels_outside_top20": round(reading.labels_outside_top, 3),
             "s/pair": reading.seconds_per_pair, "start-up s": startup_seconds}
            for mode, values in reading.values.items()]


def short_names(models: Sequence[str]) -> dict[str, str]:
    """Each model's shortest leading run of dash-separated words that no other model shares
    ("smollm2", "qwen2.5-coder-0.5b" beside "qwen2.5-coder-1.5b"): the category table's
    column prefixes, distinct so that one model's column never overwrites another's."""
    words = {m: m.split("-") for m in models}

    def prefix(model: str, n: int) -> str:
        return "-".join(words[model][:n])

    names = {}
    for model in models:
        n = 1
        while n < len(words[model]) and any(prefix(o, n) == prefix(model, n)
                                            for o in models if o != model):
            n += 1
        names[model] = prefix(model, n)
    return names


def start_vllm(name: str, folder: Path) -> Engine:
    """An in-process vLLM engine, ready when this returns; sized for short judge prompts."""
    from decoding.vllm_engine import EngineConfig, VllmEngine

    return VllmEngine.start(EngineConfig(model_id=name, weights_dir=str(folder),
                                         kv_cache_bytes=512 << 20, max_model_len=2048))


async def measure(weights: dict[str, Path], pairs: list[dict], *, judge: str | None = None,
                  judged: Sequence[Sequence[Exchange]] = (),
                  start: Callable[[str, Path], Engine] = start_vllm) -> Measured:
    """Each model's rows on `pairs`, one engine at a time, each timed from its start to
    ready; model `judge` also judges `judged` (calibrated)."""
    harmful = [p["harmful"] for p in pairs]
    rows, values, verdicts = [], {}, []
    column = short_names(list(weights))
    for name, folder in weights.items():
        started = time.perf_counter()
        engine = start(name, folder)
        startup_seconds = time.perf_counter() - started
        try:
            reading = await read(engine, pairs, judged if name == judge else ())
        finally:
            await engine.shutdown()
        rows += rows_for(name, reading, harmful, startup_seconds)
        values |= {f"{column[name]} {mode}": v for mode, v in reading.values.items()}
        if name == judge:
            verdicts = reading.verdicts
    judge_row = next((r for r in rows if r["model"] == judge and r["mode"] == JUDGE_MODE),
                     None)
    return Measured(rows, category_rows(pairs, values), judge_row, verdicts)


def judged_rows(rows: list[dict], measured: Measured) -> list[dict]:
    """The effect rows with the judge's harmful rate, and its own accuracy and AUC on the
    labelled set beside it (a rate from a weak judge means what its accuracy allows)."""
    judge = measured.judge_row or {}
    return [row | {"judged harmful": judged_harmful(verdicts),
                   "judge accuracy": judge.get("accuracy", float("nan")),
                   "judge auc": judge.get("auc", float("nan"))}
            for row, verdicts in zip(rows, measured.verdicts, strict=True)]
