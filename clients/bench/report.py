"""The benchmark's outputs: a markdown table per section, a JSON file and PNG plots."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any


def machine(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """Where the numbers come from: the processor model and its wide-vector extensions
    matter (vLLM's CPU kernels differ with them, in speed and in bf16 numerics)."""
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        lines = []
    fields = {key.strip(): value.strip() for key, _, value in
              (line.partition(":") for line in lines if ":" in line)}
    model = fields.get("model name") or platform.processor() or platform.machine()
    if "flags" in fields:  # x86: which vector extensions
        flags = set(fields["flags"].split())
        vector = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
        model += f" ({' '.join(vector) or 'no AVX2'})"
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}"


def table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no rows)\n"
    keys = list(dict.fromkeys(key for row in rows for key in row))  # rows may differ
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        cells = [_cell(row.get(key, "")) for key in keys]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def write(out: Path, sections: dict[str, list[dict]], meta: dict, stem: str = "results") -> str:
    """`STEM.json` (sections and meta), `STEM.md` (a table per section) and the plots."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps({"meta": meta, **sections}, indent=1))
    laps = ", ".join(f"{name} {s:.0f} s" for name, s in meta.get("section seconds", {}).items())
    text = f"Machine: {meta['machine']}; mode: {meta['mode']}; " \
           f"total {meta['seconds']:.0f} s ({laps}).\n\n"
    for name, rows in sections.items():
        text += f"### {name}\n\n{table(rows)}\n"
    (out / f"{stem}.md").write_text(text)
    plot(out, sections)
    return text


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finish(fig, ax, path: Path, legend: bool = True, **labels) -> None:
    """Label the axes, lay out, save to `path` and free the figure."""
    ax.set(**labels)
    if legend:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    _pyplot().close(fig)


def line_plot(path: Path, rows: list[dict], series: str, x: str, y: str, style: str = "o-",
          **labels) -> None:
    """One line per value of `series`, `y` against `x`."""
    if not rows:
        return
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in dict.fromkeys(r[series] for r in rows):
        mine = [r for r in rows if r[series] == key]
        ax.plot([r[x] for r in mine], [r[y] for r in mine], style, label=key)
    _finish(fig, ax, path, **labels)


def memory_plot(out: Path, samples: list[dict], warmup_minutes: float) -> None:
    """The soak's resident memory per process over time (`soak-memory.png`)."""
    out.mkdir(parents=True, exist_ok=True)
    line_plot(out / "soak-memory.png", samples, "process", "minute", "RSS MiB", style="-",
          xlabel=f"minutes (warm-up: the first {warmup_minutes:.2g})", ylabel="RSS MiB",
          yscale="log", title="Soak: resident memory of the server and its engines")


def evaluator_plot(path: Path, rows: list[dict]) -> None:
    """Each evaluator's AUC against its cost per pair, one marker per mode, each model
    named with its engine's start-up time: is a larger judge worth what it costs?"""
    if not rows:
        return
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for mode, marker in zip(dict.fromkeys(r["mode"] for r in rows), "os^v", strict=False):
        mine = [r for r in rows if r["mode"] == mode]
        ax.plot([r["s/pair"] for r in mine], [r["auc"] for r in mine], marker, label=mode)
    for row in {r["model"]: r for r in rows}.values():
        ax.annotate(f"{row['model']}\n(start-up {row['start-up s']:.0f} s)",
                    (row["s/pair"], row["auc"]), fontsize=7, xytext=(4, 4),
                    textcoords="offset points")
    ax.axhline(0.5, color="grey", linewidth=0.5)  # chance
    ax.margins(x=0.3, y=0.15)  # room for the names
    _finish(fig, ax, path, xlabel="seconds per labelled pair (warm engine)",
            ylabel="AUC (0.5: chance)", title="RAIN evaluator: separation against cost")


def step_cost_plot(path: Path, rows: list[dict], fits: list[dict]) -> None:
    """Each run's mean engine step time against the tokens its steps carried, and the
    fitted price of a step: is a step's cost fixed (as on a GPU) or paid per token?"""
    if not rows or not fits:
        return
    plt = _pyplot()
    fit = fits[0]
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [r["engine tokens/step"] for r in rows]
    ax.plot(xs, [r["ms/step"] for r in rows], "o", label="runs of this section")
    for row in rows:
        ax.annotate(row["strategy"].replace("rain ", ""), (row["engine tokens/step"],
                    row["ms/step"]), fontsize=6, xytext=(3, -8), textcoords="offset points")
    top = max(xs) * 1.1
    ax.plot([0, top], [fit["fixed ms/step"], fit["fixed ms/step"] + fit[
        "ms per token in a step"] * top], "-", label=f"{fit['fixed ms/step']:.0f} ms + "
            f"{fit['ms per token in a step']:.2f} ms × tokens")
    _finish(fig, ax, path, xlabel="engine tokens per step (prompt computed + decoded)",
            ylabel="ms per step", title="Price of an engine step (SmolLM2, this machine)")


def plot(out: Path, sections: dict[str, list[dict]]) -> None:
    import matplotlib.ticker

    plt = _pyplot()
    line_plot(out / "overhead.png", sections.get("server overhead", []), "server", "concurrency",
          "tokens/s", xlabel="concurrency", ylabel="output tokens/s", xscale="log",
          title="Vanilla throughput: align-serve vs vLLM's server")
    line_plot(out / "scaling.png", sections.get("scaling", []), "strategy", "concurrency",
          "tokens/s", xlabel="concurrent requests", ylabel="aggregate output tokens/s",
          yscale="log", title="Continuous batching across requests")
    evaluator_plot(out / "evaluator.png", next(
        (rows for name, rows in sections.items() if name.startswith("evaluator accuracy (")),
        []))
    step_cost_plot(out / "step-cost.png", sections.get("RAIN cost", []),
                   sections.get("RAIN step cost", []))
    cost = sections.get("nudging cost", []) + sections.get("RAIN cost", [])
    if cost:
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.barh([r["strategy"] for r in cost], [r["time/token ratio"] for r in cost])
        ax.set_xscale("log")  # before the formatter: setting a scale resets it
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        _finish(fig, ax, out / "cost.png", legend=False,
                xlabel="wall time per token ÷ vanilla on the same model",
                title="Cost of alignment")
