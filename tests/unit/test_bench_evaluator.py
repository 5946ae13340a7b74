"""The evaluator benchmark's arithmetic, and one shared reading serving every mode."""

import math

import pytest

from clients.bench.evaluator import (
    MODES,
    Measured,
    accuracy,
    auc,
    category_rows,
    judged_harmful,
    judged_rows,
    read,
    rows_for,
    short_names,
)
from decoding.strategies.rain.scoring import Evaluator, conversation_text, principle_for
from decoding.types import Message
from tests.unit.test_rain import KeywordJudge, recording_call


def test_accuracy_counts_a_zero_as_no_verdict():
    assert accuracy([0.5, -0.2, 0.0, -1.0], [False, True, True, False]) == 0.5
    assert accuracy([0.0, 0.0], [True, False]) == 0.0


def test_auc_ranks_harmless_above_harmful_with_ties_half():
    harmful = [True, True, False, False]
    assert auc([-1, -0.5, 0.2, 0.9], harmful) == 1.0
    assert auc([0.2, 0.9, -1, -0.5], harmful) == 0.0
    assert auc([0.3, 0.3, 0.3, 0.3], harmful) == 0.5
    assert auc([-1, 0.2, 0.2, 0.9], harmful) == 0.875  # one tie among four pairs


def test_judged_harmful_is_the_share_below_zero():
    assert judged_harmful([-0.1, 0.2, 0.0]) == pytest.approx(1 / 3)
    assert math.isnan(judged_harmful([]))


def test_category_rows_split_each_evaluator_by_category():
    pairs = [{"category": "drugs", "harmful": True}, {"category": "fraud", "harmful": False},
             {"category": "drugs", "harmful": False}]
    rows = category_rows(pairs, {"a votes": [-1, 1, -1], "b soft": [0.5, 0.5, 0.5]})
    assert rows == [{"category": "drugs", "pairs": 2, "harmful": 1, "a votes": 0.5,
                     "b soft": 0.5},
                    {"category": "fraud", "pairs": 1, "harmful": 0, "a votes": 1.0,
                     "b soft": 1.0}]


PAIRS = [{"question": "q", "answer": "a bad idea", "harmful": True, "category": "x"},
         {"question": "q", "answer": "a fine idea", "harmful": False, "category": "x"},
         {"question": "r", "answer": "bad bad", "harmful": True, "category": "y"}]


@pytest.mark.asyncio
async def test_one_reading_gives_every_mode_what_its_own_evaluator_would():
    judge = KeywordJudge("bad")
    reading = await read(judge, PAIRS, [[("q", "fine"), ("q", "bad")], []])
    for mode in MODES:
        alone = Evaluator(KeywordJudge("bad"), principle_for("harmless"), mode,
                          recording_call([]))
        assert reading.values[mode] == [await alone.score(conversation_text(
            [Message("user", p["question"])], "", p["answer"])) for p in PAIRS]
    # each pair's two label orders once, the content-free answer's two, the top-20 audit
    # of each pair's two reads, and the two judged answers' two orders; without sharing,
    # every mode would read again
    assert judge.calls == 2 * len(PAIRS) + 2 + 2 * len(PAIRS) + 2 * 2
    assert reading.verdicts[1] == []
    assert judged_harmful(reading.verdicts[0]) == 0.5 and reading.verdicts[0][1] < 0
    assert reading.labels_outside_top == 0.0 and reading.seconds_per_pair > 0
    rows = rows_for("m", reading, [p["harmful"] for p in PAIRS], startup_seconds=12.5)
    # calibrated: the harmless answer reads exactly like the content-free one, a 0
    assert [(r["mode"], r["accuracy"], r["auc"]) for r in rows] == [
        ("votes", 1.0, 1.0), ("soft", 1.0, 1.0), ("calibrated", 2 / 3, 1.0)]
    # one engine start and one timed pass serve a model's three rows
    assert {(r["start-up s"], r["s/pair"]) for r in rows} == {(12.5, reading.seconds_per_pair)}


@pytest.mark.parametrize(("models", "columns"), [
    (["smollm2-135m-instruct", "gemma-3-270m", "qwen2.5-coder-0.5b-instruct"],
     ["smollm2", "gemma", "qwen2.5"]),  # today's three keep their column names
    (["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"],
     ["smollm2", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]),
    (["a-b", "a-b-c"], ["a-b", "a-b-c"]),  # one name the other's prefix
])
def test_short_names_keep_every_models_category_columns_apart(models, columns):
    assert list(short_names(models).values()) == columns


def test_judged_rows_fill_each_rows_rate_and_show_the_judges_accuracy():
    rows = [{"setting": "a", "refusal rate": 0.0, "judged harmful": float("nan")},
            {"setting": "b", "refusal rate": float("nan"), "judged harmful": float("nan")}]
    measured = Measured([], [], {"model": "j", "mode": "calibrated", "accuracy": 0.7,
                                 "auc": 0.8}, [[-0.2, 0.1, -0.5, 0.3], []])
    a, b = judged_rows(rows, measured)
    assert list(a) == ["setting", "refusal rate", "judged harmful", "judge accuracy",
                       "judge auc"]  # the rate stays beside the refusal rate
    assert (a["judged harmful"], a["judge accuracy"], a["judge auc"]) == (0.5, 0.7, 0.8)
    assert math.isnan(b["judged harmful"]) and b["judge accuracy"] == 0.7
