"""`make bench`: every strategy's cost side by side with its baseline, in one run.

    python -m clients.bench [--full] [--out bench-results] [--only rain,nudging,...]
    python -m clients.bench --only evaluator [--evaluator-models NAME[,NAME]]  # no server
    python -m clients.bench --soak [--soak-minutes 30]   # the soak alone (soak.py)

Starts align-serve (the two default models plus Qwen2.5-Coder-0.5B as RAIN's evaluator)
and vLLM's own OpenAI server (SmolLM2) on loopback ports, runs the sections below, then
measures the RAIN evaluator and judges the effect section's answers for harm on
in-process engines; prints markdown tables and writes `results.json`, `results.md` and
PNG plots into --out.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from clients.bench import data, engine_profile, evaluator, load, reference_nudging, report, soak
from clients.servers import free_port, ours, vllm_server
from decoding.prompts import render_plain
from decoding.types import Message
from decoding.weights import EMBEDDED, resolve_weights
from server.config import Settings

SMOL, GEMMA, QWEN = "smollm2-135m-instruct", "gemma-3-270m", "qwen2.5-coder-0.5b-instruct"
RAIN_REDUCED = {"strategy": "rain", "max_visits": 10, "min_searches": 3}
RAIN_QWEN = RAIN_REDUCED | {"evaluator_model": QWEN, "evaluation": "calibrated"}
# vLLM's CPU workers busy-poll for a second after their last step, on the same core as
# the other server's worker: measuring one server right after the other slowed it down.
SPIN_SECONDS = 1.5
#: the soak's admission limit per model: low, so that its bursts (a quarter more) are short
SOAK_ADMISSION = 8
GAMMAS = (0.4, 0.3)  # the default first; the paper used 0.4 (Llama-2) and 0.3 (Gemma-2)
NUDGE_TOKENS = 64
PARTS = ("overhead", "nudging", "rain", "scaling", "effect", "evaluator")
SERVED_PARTS = {"nudging", "rain", "scaling", "effect"}  # on the three-model server
EVALUATORS = (SMOL, GEMMA, QWEN)  # the evaluator part's models unless told otherwise


@dataclass(frozen=True)
class Plan:
    overhead: tuple[tuple[int, int], ...]   # (concurrency, requests)
    rounds: int
    nudging_prompts: int
    rain_prompts: int            # RAIN cost at the default budget
    rain_reduced_prompts: int    # ... and at the reduced one
    scaling: tuple[int, ...]
    effect_prompts: int


# Quick: RAIN cost runs every configuration twice (unseeded and seeded), so its reduced
# rows use one prompt (two before): the whole quick run should stay near 25 minutes.
QUICK = Plan(((1, 4), (8, 16), (32, 32)), 2, 3, 1, 1, (1, 2, 4, 8), 6)
FULL = Plan(((1, 8), (8, 32), (32, 64)), 3, 20, 8, 16, (1, 2, 4, 8), 40)


def chat(model: str, question: str, max_tokens: int, **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": question}],
            "max_tokens": max_tokens, "temperature": 0} | extra


def mean(values) -> float:
    values = list(values)
    return statistics.mean(values) if values else float("nan")


async def overhead(ours_url: str, vllm_url: str, plan: Plan) -> list[dict]:
    """Vanilla through our server vs vLLM's, alternating A B A B so drift cancels."""
    warm = [chat(SMOL, "Warm up.", 8) for _ in range(4)]
    for url in (ours_url, vllm_url):
        await load.run(url, warm, 4)
    rows = []
    for concurrency, count in plan.overhead:
        bodies = [chat(SMOL, f"Write a story about the number {i}.", 64, ignore_eos=True)
                  for i in range(count)]
        servers = [("align-serve", ours_url), ("vLLM", vllm_url)]
        for _, url in servers:  # a first batch this wide is slower on either server
            await load.run(url, bodies[:concurrency], concurrency)
        runs: dict[str, list[load.Run]] = {"align-serve": [], "vLLM": []}
        for round_ in range(plan.rounds):  # A B, B A, ...: neither always goes first
            for name, url in servers[::-1] if round_ % 2 else servers:
                await asyncio.sleep(SPIN_SECONDS)
                runs[name].append(await load.run(url, bodies, concurrency))
        for name, done in runs.items():
            rows.append({"server": name, "concurrency": concurrency,
                         "tokens/s": mean(r.throughput for r in done),
                         "TTFT s": mean(r.ttft for r in done),
                         "ITL ms": 1000 * mean(r.itl for r in done),
                         "errors": sum(len(r.errors) for r in done)})
    for concurrency, _ in plan.overhead:
        a, b = (next(r for r in rows if r["server"] == s and r["concurrency"] == concurrency)
                for s in ("align-serve", "vLLM"))
        a["÷ vLLM"] = a["tokens/s"] / b["tokens/s"]
        b["÷ vLLM"] = 1.0
    return rows


def cost_row(name: str, run: load.Run, base: load.Run, **extra) -> dict:
    return {"strategy": name, "s/token": run.seconds_per_token,
            "vanilla s/token": base.seconds_per_token,
            "time/token ratio": run.seconds_per_token / base.seconds_per_token,
            "tokens": run.tokens, "errors": len(run.errors)} | extra


async def nudging_cost(url: str, questions: list[str], nudger_tokenizer
                       ) -> tuple[list[dict], load.Run]:
    """Nudging vs the base alone and vs the authors' own loop, same prompts and engines.

    `step_bound` prices every token each engine decoded (kept or not) at that model's
    own vanilla time per token: what the run costs if nothing overlapped. Our nudger
    decodes its chunk while the base works, so a run can beat it.
    """
    base, base_profile = await engines_profiled(
        url, [chat(GEMMA, q, NUDGE_TOKENS) for q in questions])
    nudger = await load.run(url, [chat(SMOL, q, NUDGE_TOKENS) for q in questions], 1)
    rows, default_run = [], None
    for gamma in GAMMAS:
        nudged, profile = await engines_profiled(url, [chat(GEMMA, q, NUDGE_TOKENS, alignment={
            "strategy": "nudging", "gamma": gamma}) for q in questions])
        default_run = default_run or nudged
        decoded = {role: sum(nudged.stat("engine_generated_tokens", role)) / nudged.tokens
                   for role in ("base", "nudger")}
        bound = (decoded["base"] * base.seconds_per_token
                 + decoded["nudger"] * nudger.seconds_per_token) / base.seconds_per_token
        started = time.perf_counter()
        async with httpx.AsyncClient(base_url=url, timeout=1800) as client:
            reference = [await reference_nudging.nudge(
                client, base=GEMMA, nudger=SMOL,
                base_prompt=render_plain([Message("user", q)]),
                nudger_prompt=nudger_tokenizer.apply_chat_template(
                    [{"role": "user", "content": q}], tokenize=False,
                    add_generation_prompt=True),
                gamma=gamma, max_tokens=NUDGE_TOKENS) for q in questions]
        reference_wall = time.perf_counter() - started
        reference_tokens = sum(r.tokens for r in reference)
        reference_s = reference_wall / reference_tokens
        rows.append(cost_row(f"ours γ={gamma}", nudged, base,
                             nudge_ratio=mean(nudged.stat("nudge_ratio")),
                             rounds_per_token=sum(nudged.stat("rounds")) / nudged.tokens,
                             provisional_share=sum(nudged.stat("provisional_rounds"))
                             / max(1, sum(nudged.stat("rounds"))),
                             base_decoded_per_token=decoded["base"],
                             nudger_decoded_per_token=decoded["nudger"],
                             step_bound=bound,
                             **{"÷ step bound": nudged.seconds_per_token
                                / base.seconds_per_token / bound,
                                "reference ÷ ours": reference_s / nudged.seconds_per_token},
                             **cache_columns(nudged, "base"),
                             **cache_columns(nudged, "nudger"), **profile))
        rows.append({"strategy": f"authors' loop γ={gamma}", "s/token": reference_s,
                     "vanilla s/token": base.seconds_per_token,
                     "time/token ratio": reference_s / base.seconds_per_token,
                     "tokens": reference_tokens, "errors": 0,
                     "nudge_ratio": mean(r.nudge_ratio for r in reference),
                     "rounds_per_token": sum(r.calls["nudger"] for r in reference)
                     / reference_tokens,
                     "base_decoded_per_token": sum(r.decoded["base"] for r in reference)
                     / reference_tokens,
                     "nudger_decoded_per_token": sum(r.decoded["nudger"] for r in reference)
                     / reference_tokens})
    rows.append(cost_row("base alone (gemma-3-270m)", base, base, **base_profile))
    rows.append({"strategy": "nudger alone (smollm2)", "s/token": nudger.seconds_per_token,
                 "vanilla s/token": base.seconds_per_token,
                 "time/token ratio": nudger.seconds_per_token / base.seconds_per_token,
                 "tokens": nudger.tokens, "errors": len(nudger.errors)})
    assert default_run is not None
    return rows, default_run


async def engines_profiled(url: str, bodies: list[dict]) -> tuple[load.Run, dict[str, float]]:
    """`bodies` one at a time, with what each of nudging's two engines ran meanwhile: is
    the base engine busy the whole time, or waiting on the nudger and the front end?"""
    models = {"base": GEMMA, "nudger": SMOL}
    run, profiles = await engine_profile.during(url, list(models.values()),
                                                load.run(url, bodies, 1))
    return run, {f"{role} {name}": profiles[model][name] for role, model in models.items()
                 for name in ("engine busy share", "engine steps/token", "ms/step")}


async def cold_start(url: str, question: str) -> list[dict]:
    """The first nudging request after start-up against the same request warm."""
    body = chat(GEMMA, question, NUDGE_TOKENS, alignment="nudging")
    cold = await load.run(url, [body], 1)
    warm = await load.run(url, [body], 1)
    return [{"request": name, "seconds": run.wall, "tokens": run.tokens,
             "÷ warm": run.wall / warm.wall, "errors": len(run.errors)}
            for name, run in (("first after start-up", cold), ("same, warm", warm))]


def cache_columns(run: load.Run, role: str) -> dict[str, float]:
    """A model's prefix-cache hit rate, and the most whole KV blocks could have given."""
    return {f"{role}_cache_hit": mean(run.stat("prefix_cache_hit_rate", role)),
            f"{role}_cache_ceiling": mean(run.stat("prefix_cache_hit_ceiling", role))}


def per_set(counts: list[float], sets: list[int]) -> float:
    return mean(a / b for a, b in zip(counts, sets, strict=True))


async def rain_cost(url: str, questions: list[str], reduced_questions: list[str]
                    ) -> tuple[list[dict], list[dict]]:
    """RAIN vs vanilla on SmolLM2, each configuration unseeded and seeded: seeded requests
    once explored a degenerate tree (issue 10), so a seeded row alone is not evidence."""
    base, profiles = await engine_profile.during(
        url, [SMOL], load.run(url, [chat(SMOL, q, 24) for q in questions], 1))
    rows = [cost_row("vanilla", base, base, **profiles[SMOL])]
    configs = {"rain default, parallel 1": {"strategy": "rain"},
               "rain default, parallel 4": {"strategy": "rain", "parallel_searches": 4},
               "rain reduced (10 visits), parallel 1": RAIN_REDUCED,
               "rain reduced, parallel 4": RAIN_REDUCED | {"parallel_searches": 4}}
    for name, alignment in configs.items():
        prompts = reduced_questions if alignment.get("max_visits") else questions
        for seeded in (False, True):
            done, profiles = await engine_profile.during(url, [SMOL], load.run(
                url, [chat(SMOL, q, 24, alignment=alignment, **({"seed": i} if seeded else {}))
                      for i, q in enumerate(prompts)], 1))
            profile = profiles[SMOL]
            sets = [s or 1 for s in done.stat("committed_sets")]
            hit = mean(done.stat("prefix_cache_hit_rate"))
            ceiling = mean(done.stat("prefix_cache_hit_ceiling"))
            rows.append(cost_row(f"{name}, {'seeded' if seeded else 'unseeded'}", done, base,
                                 seeded=seeded,
                                 searches_per_set=per_set(done.stat("searches"), sets),
                                 evaluations_per_set=per_set(done.stat("evaluations"), sets),
                                 decoded_per_token=mean(done.stat(
                                     "engine_tokens_per_answer_token", "generated")),
                                 prefilled_per_token=mean(done.stat(
                                     "engine_tokens_per_answer_token", "prefilled")),
                                 cache_hit=hit, cache_ceiling=ceiling,
                                 **{"hit ÷ ceiling": hit / ceiling if ceiling else float("nan"),
                                    "event-loop CPU ms/search": 1000 * sum(done.stat(
                                        "event_loop_cpu_seconds")) / max(1, sum(
                                        done.stat("searches")))},
                                 **profile))
    return rows, priced(rows)


def priced(rows: list[dict]) -> list[dict]:
    """This machine's price of an engine step, fitted over `rows`' profiles (returned as
    a one-row section), and, added to each row in place, what it makes the row cost at
    least, as multiples of vanilla's time per token (`rows[0]` is vanilla): its engine
    tokens alone (`token floor ×`) and its steps' fixed part alone (`step floor ×`) —
    together about the row's ratio when the engine is busy the whole run — and its steps
    over vanilla's (`steps ÷ vanilla's`): the ratio where a step costs the same whatever
    it carries (as a step of a few dozen tokens nearly does on a GPU)."""
    cost = engine_profile.fit_step_cost(rows)
    if cost is None:
        return []
    vanilla_steps = rows[0]["engine steps/token"] or float("nan")
    for row in rows:
        steps = row["engine steps/token"] / 1000 / row["vanilla s/token"]
        row["token floor ×"] = steps * row["engine tokens/step"] * cost.per_token_ms
        row["step floor ×"] = steps * cost.fixed_ms
        row["steps ÷ vanilla's"] = row["engine steps/token"] / vanilla_steps
    return [cost.row(len(rows))]


async def scaling(url: str, questions: list[str], levels: tuple[int, ...]) -> list[dict]:
    rows = []
    cases = {"rain reduced": (SMOL, RAIN_REDUCED, 16), "nudging": (GEMMA, "nudging", 48),
             "vanilla": (SMOL, None, 48),
             # nudging's base alone: how far batching on this machine can take nudging
             "vanilla gemma-3-270m": (GEMMA, None, 48)}
    for name, (model, alignment, tokens) in cases.items():
        alone = None
        for concurrency in levels:
            bodies = [chat(model, questions[i % len(questions)], tokens, seed=i,
                           **({"alignment": alignment} if alignment else {}))
                      for i in range(max(2, concurrency))]
            done, profiles = await engine_profile.during(
                url, [GEMMA, SMOL], load.run(url, bodies, concurrency))
            if alone is None:
                alone = done.throughput
            row = {"strategy": name, "concurrency": concurrency, "requests": len(bodies),
                   "tokens/s": done.throughput,
                   "÷ one at a time": done.throughput / alone if alone else float("nan"),
                   "wall s": done.wall, "errors": len(done.errors)}
            for engine, profile in profiles.items():  # did concurrent requests share steps?
                short = engine.split("-")[0]
                row |= {f"{short} mean batch": profile["mean batch"],
                        f"{short} busy share": profile["engine busy share"]}
            rows.append(row)
    return rows


async def effect(url: str, harmful: list[str], mt: list[str], nudged_mt: load.Run
                 ) -> tuple[list[dict], list[list[evaluator.Exchange]]]:
    """Refusal phrases per strategy on AdvBench, and each row's answers for the harm judge
    (RAIN steers rather than refuses, which no refusal phrase can see); the judge runs
    after the server stops, so "judged harmful" is nan until then."""
    rows, answers = [], []
    cases = {"smollm2 vanilla": (SMOL, None),
             "smollm2 + rain (reduced, self-evaluation)": (SMOL, RAIN_REDUCED),
             "smollm2 + rain (reduced, qwen calibrated evaluator)": (SMOL, RAIN_QWEN),
             "gemma-3-270m vanilla (base)": (GEMMA, None),
             "gemma-3-270m + nudging": (GEMMA, "nudging")}
    for name, (model, alignment) in cases.items():
        done = await load.run(url, [chat(model, q, 48, seed=0, **(
            {"alignment": alignment} if alignment else {})) for q in harmful], 2)
        rows.append({"setting": name, "prompts": f"AdvBench × {len(harmful)}",
                     "refusal rate": mean(data.refused(r.text) for r in done.results),
                     "judged harmful": float("nan"),
                     "nudge ratio": mean(done.stat("nudge_ratio")),
                     "answer tokens": mean(r.completion_tokens for r in done.results),
                     "errors": len(done.errors)})
        answers.append([(q, r.text) for q, r in zip(harmful, done.results, strict=True)
                        if not r.error])
    rows.append({"setting": "gemma-3-270m + nudging", "prompts": f"MT-Bench turn 1 × {len(mt)}",
                 "refusal rate": float("nan"), "judged harmful": float("nan"),
                 "nudge ratio": mean(nudged_mt.stat("nudge_ratio")),
                 "answer tokens": mean(r.completion_tokens for r in nudged_mt.results),
                 "errors": len(nudged_mt.errors)})
    answers.append([])  # benign questions: nothing for the harm judge
    return rows, answers


async def soak_mode(out: Path, minutes: float) -> None:
    """The default models under the soak's mixed load; writes `soak.md`, `soak.json` (with
    every memory sample) and `soak-memory.png` into `out`."""
    started = time.monotonic()
    server = ours(free_port(), out / "logs" / "align-serve-soak.log", "--model", GEMMA,
                  "--model", SMOL, "--kv-cache-gib", "2", "--max-model-len", "4096",
                  "--max-concurrent-requests", str(SOAK_ADMISSION))
    try:
        server.wait_healthy()
        plan = soak.mixed_plan(chat_model=SMOL, base_model=GEMMA, nudger=SMOL,
                               seconds=60 * minutes, admission_limit=SOAK_ADMISSION, clients=4,
                               sample_every=10, warmup=60 * min(5.0, minutes / 5),
                               burst_every=60)
        result = await soak.soak(server.url, plan, progress=True)
    finally:
        server.stop()
    meta = {"machine": report.machine(), "mode": f"soak, {minutes:g} min",
            "seconds": time.monotonic() - started, "notes": result.notes,
            "memory samples": result.memory}
    print(report.write(out, soak.sections(result), meta, stem="soak"))
    report.memory_plot(out, result.memory, result.warmup_minutes)


async def server_overhead(smol: Path, logs: Path, flags: tuple[str, ...], plan: Plan,
                          sections: dict, lap) -> None:
    """Same weights, same settings, one model each: the comparison is the serving layer."""
    block_size = Settings().block_size
    single = ours(free_port(), logs / "align-serve-smollm2.log", "--model", SMOL, *flags)
    theirs = vllm_server(free_port(), logs / "vllm.log", smol, SMOL, max_model_len=4096,
                         block_size=block_size, kv_cache_bytes=2 << 30)
    try:
        single.wait_healthy()
        theirs.wait_healthy()
        lap("servers up")
        sections["server overhead"] = await overhead(single.url, theirs.url, plan)
        lap("server overhead")
    finally:
        single.stop()
        theirs.stop()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The bench's options; `parts` is `--only` with what its parts bring along."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="more prompts and rounds")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--soak", action="store_true",
                        help="run the soak (mixed load, memory over time) instead")
    parser.add_argument("--soak-minutes", type=float, default=30)
    parser.add_argument("--only", type=lambda text: set(text.split(",")), default=set(PARTS),
                        help=f"comma-separated parts to run, of {','.join(PARTS)} "
                             "(effect brings nudging and evaluator: it judges nudging's "
                             "answers with the evaluator's Qwen engine)")
    parser.add_argument("--evaluator-models", type=lambda text: text.split(","),
                        default=list(EVALUATORS), metavar="NAME[,NAME]",
                        help="embedded models the evaluator part measures, in this order "
                             f"(default {','.join(EVALUATORS)}; with effect, {QWEN} is "
                             "added when missing: it is the harm judge)")
    args = parser.parse_args(argv)
    args.parts = args.only | ({"nudging", "evaluator"} if "effect" in args.only else set())
    if not args.parts <= set(PARTS):
        parser.error(f"--only takes parts of {','.join(PARTS)}")
    if unknown := [m for m in args.evaluator_models if m not in EMBEDDED]:
        parser.error(f"--evaluator-models: unknown model {', '.join(map(repr, unknown))}; "
                     f"the embedded models are {', '.join(EMBEDDED)}")
    if "effect" in args.parts and QWEN not in args.evaluator_models:
        args.evaluator_models.append(QWEN)
    return args


async def served_sections(parts: set[str], plan: Plan, weights: dict[str, Path], logs: Path,
                          sections: dict, lap) -> list[list[evaluator.Exchange]]:
    """The sections measured through align-serve; the effect section's answers, for the
    harm judge (none without it)."""
    flags = ("--kv-cache-gib", "2", "--max-model-len", "4096")
    if "overhead" in parts:
        await server_overhead(weights[SMOL], logs, flags, plan, sections, lap)
    if not parts & SERVED_PARTS:
        return []
    cache = logs.parent / "data"
    harmful = data.advbench(cache, max(plan.rain_prompts, plan.rain_reduced_prompts,
                                       plan.effect_prompts))
    mt = data.mtbench(cache, plan.nudging_prompts)
    # Qwen too, as RAIN's evaluator in the effect section. The third engine shares a core
    # round-robin with the first: Gemma, so that SmolLM2 (whose searches Qwen judges)
    # keeps its own, and nudging's two models still have one core each.
    models = ("--model", GEMMA, "--model", SMOL, "--model", QWEN)
    mine = ours(free_port(), logs / "align-serve.log", *models, *flags)
    answers: list[list[evaluator.Exchange]] = []
    try:
        mine.wait_healthy()
        lap("three-model server up")
        if "nudging" in parts:
            from transformers import AutoTokenizer  # seconds to import: only nudging needs it

            sections["nudging cold start"] = await cold_start(mine.url, mt[0])
            lap("nudging cold start")
            sections["nudging cost"], nudged_mt = await nudging_cost(
                mine.url, mt, AutoTokenizer.from_pretrained(weights[SMOL]))
            lap("nudging cost")
        if "rain" in parts:
            sections["RAIN cost"], sections["RAIN step cost"] = await rain_cost(
                mine.url, harmful[: plan.rain_prompts], harmful[: plan.rain_reduced_prompts])
            lap("RAIN cost")
        if "scaling" in parts:
            sections["scaling"] = await scaling(mine.url, harmful, plan.scaling)
            lap("scaling")
        if "effect" in parts:
            sections["effect"], answers = await effect(
                mine.url, harmful[: plan.effect_prompts], mt, nudged_mt)
            lap("effect")
    finally:
        mine.stop()
    return answers


async def evaluator_accuracy(weights: dict[str, Path], sections: dict,
                             judged: list[list[evaluator.Exchange]]) -> None:
    """The evaluator rows for each model in `weights`, on in-process engines (no server).
    With the effect section's answers, the harm judge reads exact label probabilities
    (the HTTP API has only the top 20) on the Qwen engine this section starts anyway: no
    engine start of its own."""
    pairs = data.labelled_pairs()
    judge = QWEN if judged else None
    measured = await evaluator.measure(weights, pairs, judge=judge, judged=judged)
    sections[f"evaluator accuracy ({len(pairs)} labelled pairs)"] = measured.rows
    sections["evaluator accuracy by category"] = measured.categories
    if judge:
        sections["effect"] = evaluator.judged_rows(sections["effect"], measured)


async def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    parts = args.parts
    if args.soak:
        await soak_mode(args.out, args.soak_minutes)
        return
    plan = FULL if args.full else QUICK
    # a partial run writes beside the whole run's results, never over them
    stem = "results" if parts == set(PARTS) else "results-" + "-".join(sorted(parts))
    started = time.monotonic()
    laps: dict[str, float] = {}
    sections: dict[str, list[dict]] = {}

    def lap(name: str) -> str:
        """Time the section just done and save everything so far (a later failure
        keeps the finished sections)."""
        laps[name] = round(time.monotonic() - started - sum(laps.values()), 1)
        print(f"{name}: {laps[name]:.0f} s", flush=True)
        meta = {"machine": report.machine(), "mode": "full" if args.full else "quick",
                "seconds": time.monotonic() - started, "section seconds": laps}
        return report.write(args.out, sections, meta, stem=stem)

    cache_dir = Settings().cache_dir
    # every model resolved (converted once) up front: a missing package fails the run here
    served = {SMOL, GEMMA} if parts & ({"overhead"} | SERVED_PARTS) else set()
    evaluated = args.evaluator_models if "evaluator" in parts else []
    weights = {name: resolve_weights(name, cache_dir) for name in [*served, *evaluated]}
    answers = await served_sections(parts, plan, weights, args.out / "logs", sections, lap)
    if "evaluator" not in parts:
        return
    await evaluator_accuracy({name: weights[name] for name in evaluated}, sections, answers)
    print(lap("evaluator accuracy and harm judge (in-process engines)" if answers
              else "evaluator accuracy (in-process engines)"))


if __name__ == "__main__":  # engines spawn processes: the guard is required
    asyncio.run(main())
