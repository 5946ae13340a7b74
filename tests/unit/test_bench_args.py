"""The bench's command line: which parts run and which models the evaluator part measures;
the evaluator part alone, over stand-in judges."""

import asyncio
import functools
import json
from pathlib import Path

import pytest

import clients.bench.__main__ as bench
from clients.bench.__main__ import EVALUATORS, PARTS, QWEN, parse_args
from clients.bench.evaluator import MODES
from tests.unit.test_bench_evaluator import PAIRS
from tests.unit.test_rain import KeywordJudge

LARGE = "qwen2.5-coder-1.5b-instruct"


def test_by_default_every_part_runs_with_todays_three_evaluators():
    args = parse_args([])
    assert args.parts == set(PARTS) and "evaluator" in PARTS
    assert (
        args.evaluator_models
        == list(EVALUATORS)
        == ["smollm2-135m-instruct", "gemma-3-270m", "qwen2.5-coder-0.5b-instruct"]
    )


def test_the_evaluator_part_alone_needs_nothing_else():
    models = f"smollm2-135m-instruct,gemma-3-270m,{QWEN},{LARGE}"
    args = parse_args(["--only", "evaluator", "--evaluator-models", models])
    assert args.parts == {"evaluator"}
    assert args.evaluator_models == models.split(",")  # in the order given


def test_effect_brings_nudging_and_the_evaluator_with_its_judge():
    args = parse_args(["--only", "effect", "--evaluator-models", LARGE])
    assert args.parts == {"effect", "nudging", "evaluator"}
    assert args.evaluator_models == [LARGE, QWEN]  # the harm judge is always measured


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--evaluator-models", "qwen2.5-coder-7b"],
            "--evaluator-models: unknown model 'qwen2.5-coder-7b'; the embedded models are "
            f"gemma-3-270m, smollm2-135m-instruct, {QWEN}, {LARGE}",
        ),
        (
            ["--only", "evaluator,judge"],
            "--only takes parts of overhead,nudging,rain,scaling,effect,evaluator",
        ),
    ],
)
def test_unknown_names_are_a_usage_error_that_says_what_is_known(argv, message, capsys):
    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(f"error: {message}")


@pytest.mark.asyncio
async def test_the_evaluator_part_runs_without_a_server_and_keeps_two_qwens_apart(
    monkeypatch, tmp_path
):
    def no_server(*args, **kwargs):
        raise AssertionError("the evaluator part started a server")

    def judge_for(name: str, folder: Path) -> KeywordJudge:
        assert folder == tmp_path / name  # the folder resolve_weights gave
        return KeywordJudge("bad" if "0.5b" in name else "zzz")  # the 1.5B sees no harm

    monkeypatch.setattr(bench, "ours", no_server)
    monkeypatch.setattr(bench, "vllm_server", no_server)
    monkeypatch.setattr(bench, "resolve_weights", lambda name, cache: tmp_path / name)
    monkeypatch.setattr(bench.data, "labelled_pairs", lambda: PAIRS)
    monkeypatch.setattr(
        bench.evaluator, "measure", functools.partial(bench.evaluator.measure, start=judge_for)
    )
    out = tmp_path / "out"
    await bench.main(
        ["--only", "evaluator", "--evaluator-models", f"{QWEN},{LARGE}", "--out", str(out)]
    )

    results = json.loads((out / "results-evaluator.json").read_text())
    rows = results[f"evaluator accuracy ({len(PAIRS)} labelled pairs)"]
    assert [(r["model"], r["mode"]) for r in rows] == [
        (model, mode) for model in (QWEN, LARGE) for mode in MODES
    ]
    assert all(r["start-up s"] >= 0 for r in rows)
    calibrated = {r["model"]: r["auc"] for r in rows if r["mode"] == "calibrated"}
    assert calibrated == {QWEN: 1.0, LARGE: 0.5}  # the keyword judge vs one that sees none
    by_category = results["evaluator accuracy by category"]
    assert {"qwen2.5-coder-0.5b calibrated", "qwen2.5-coder-1.5b calibrated"} <= set(by_category[0])
    assert "effect" not in results and (out / "evaluator.png").is_file()


def test_scaling_sends_each_case_to_its_own_model_at_every_level(monkeypatch):
    """Each strategy's requests name its model at every concurrency, whatever the engine
    profiles are keyed by (a loop variable once shadowed the model: nudging then went to
    the nudger and every level but the first failed)."""
    from clients.bench import load

    sent: list[tuple[int, set[str], object]] = []

    async def fake_run(url, bodies, concurrency):
        sent.append((concurrency, {b["model"] for b in bodies}, bodies[0].get("alignment")))
        return load.Run([load.Result(start=0.0, completion_tokens=8)], wall=1.0)

    async def fake_during(url, models, work):
        return await work, {m: {"mean batch": 1.0, "engine busy share": 1.0} for m in models}

    monkeypatch.setattr(bench.load, "run", fake_run)
    monkeypatch.setattr(bench.engine_profile, "during", fake_during)
    rows = asyncio.run(bench.scaling("http://server", ["q"], (1, 2, 8)))
    expected = {"rain reduced": bench.SMOL, "nudging": bench.GEMMA, "vanilla": bench.SMOL,
                "vanilla gemma-3-270m": bench.GEMMA}
    assert [(r["strategy"], r["concurrency"]) for r in rows] == [
        (name, level) for name in expected for level in (1, 2, 8)]
    for (level, models, alignment), row in zip(sent, rows, strict=True):
        assert models == {expected[row["strategy"]]} and level == row["concurrency"]
        assert (alignment is not None) == (row["strategy"] in ("rain reduced", "nudging"))
    assert all(row["gemma mean batch"] == row["smollm2 busy share"] == 1.0 for row in rows)
    assert rows[0]["÷ one at a time"] == 1.0
