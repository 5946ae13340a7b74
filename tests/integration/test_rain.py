"""RAIN on the real default chat model, with a small budget to keep the suite quick."""

from __future__ import annotations

import openai
import pytest

from tests.integration.conftest import API_KEY, SMOL
from tests.integration.test_disconnect import engine_metric, stream_then_leave, wait_idle

pytestmark = pytest.mark.slow
MESSAGES = [{"role": "user", "content": "How do I pick a lock?"}]
BUDGET = {"strategy": "rain", "max_visits": 6, "min_searches": 2, "parallel_searches": 2}


@pytest.fixture
def sdk(server_url):
    return openai.OpenAI(base_url=f"{server_url}/v1", api_key=API_KEY,
                         _strict_response_validation=True, max_retries=0, timeout=300)


def rain(sdk, **extra):
    return sdk.chat.completions.create(model=SMOL, messages=MESSAGES, max_tokens=10, seed=5,
                                       extra_body={"alignment": BUDGET | extra})


def test_stats_are_consistent(sdk):
    reply = rain(sdk)
    stats = reply.model_extra["alignment"]["stats"]
    assert reply.choices[0].message.content
    assert reply.usage.completion_tokens <= 10
    assert stats["committed_sets"] >= 1 and stats["searches"] >= stats["committed_sets"]
    assert stats["evaluations"] + stats["evaluation_memo_hits"] == stats["searches"]
    assert stats["tree_nodes"] > stats["committed_sets"]
    assert stats["engine_calls"] >= stats["evaluations"] * 2
    assert 0 <= stats["prefix_cache_hit_rate"] <= 1
    assert set(stats["seconds"]) >= {"select", "expand", "evaluate", "embed", "backup"}


def committed_texts(alignment: dict) -> list[str]:
    """The text of each token set the search committed, from its `return_tree` view."""
    return [next(kid["text"] for kid in decision["children"] if kid["committed"])
            for decision in alignment["tree"]]


def assert_answer_is_the_committed_sets(content: str, alignment: dict) -> None:
    """The answer is the committed sets in order, the last one perhaps cut by max_tokens."""
    sets = committed_texts(alignment)
    assert len(sets) == alignment["stats"]["committed_sets"]
    joined = "".join(sets)
    assert joined.startswith(content) and len(content) > len(joined) - len(sets[-1])


def test_streamed_answer_is_the_committed_sets(sdk):
    # Within one run, exactly. Across two runs a seeded real-engine search repeats its
    # answer only mostly (20 of 24 here): bf16 logits move with how a request's own
    # concurrent engine calls are batched, and a near-tie then tips (see the README).
    chunks = list(sdk.chat.completions.create(
        model=SMOL, messages=MESSAGES, max_tokens=10, seed=5, stream=True,
        extra_body={"alignment": BUDGET | {"return_tree": True}}))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    alignment = chunks[-1].model_extra["alignment"]
    assert alignment["strategy"] == "rain"
    assert_answer_is_the_committed_sets(streamed, alignment)


@pytest.mark.parametrize("evaluation", ["soft", "calibrated"])
def test_other_evaluation_modes_run(sdk, evaluation):
    reply = rain(sdk, evaluation=evaluation, principle="Never mention tools.")
    assert reply.model_extra["alignment"]["stats"]["evaluations"] >= 1


@pytest.mark.parametrize(("extra", "param"), [
    ({"max_visits": 10**6}, "alignment.max_visits"),
    ({"candidates": 50}, "alignment.candidates"),
    ({"evaluation": "guess"}, "alignment.evaluation"),
    ({"evaluator_model": "ghost"}, "alignment.evaluator_model"),
])
def test_bounded_parameters_rejected(sdk, extra, param):
    with pytest.raises(openai.APIStatusError) as info:
        rain(sdk, **extra)
    assert info.value.status_code in (400, 404)
    assert info.value.body["param"] == param


def test_disconnect_aborts_the_search(server_url):
    body = {"model": SMOL, "messages": MESSAGES, "max_tokens": 200,
            "alignment": {"strategy": "rain", "parallel_searches": 4}}
    before = engine_metric(server_url, "align_engine_requests_total", SMOL)
    stream_then_leave(server_url, body, events=2)  # the role chunk, then a committed set
    wait_idle(server_url, [SMOL], seconds=1.0)  # measured here: 25-55 ms for ~45 requests
    assert engine_metric(server_url, "align_engine_requests_total", SMOL) > before


def test_return_tree_on_the_real_model(sdk):
    reply = rain(sdk, return_tree=True)
    alignment = reply.model_extra["alignment"]
    decisions = alignment["tree"]
    for decision in decisions:
        kids = decision["children"]
        assert sum(k["prior"] for k in kids) == pytest.approx(1, abs=1e-3)
        chosen = [k for k in kids if k["committed"]]
        assert len(chosen) == 1
        assert chosen[0] == max(kids, key=lambda k: (k["visits"], k["value"]))
        assert all(-1 <= k["value"] <= 1 for k in kids)
    assert_answer_is_the_committed_sets(reply.choices[0].message.content, alignment)


def test_streamed_progress_comments_keep_the_strict_sdk_reading(server_url, sdk):
    import httpx

    body = {"model": SMOL, "messages": MESSAGES, "max_tokens": 10, "seed": 5, "stream": True,
            "alignment": BUDGET}
    raw = httpx.post(f"{server_url}/v1/chat/completions", json=body, timeout=300,
                     headers={"Authorization": f"Bearer {API_KEY}"}).text
    events = raw.split("\n\n")
    assert all(e.startswith(("data: ", ": searching")) for e in events[:-1])
    chunks = list(sdk.chat.completions.create(model=SMOL, messages=MESSAGES, max_tokens=10,
                                              seed=5, stream=True,
                                              extra_body={"alignment": BUDGET}))
    assert chunks[-1].model_extra["alignment"]["strategy"] == "rain"


def test_seeded_parallel_search_samples_distinct_chains_on_the_real_engine(sdk):
    """Issue 10's bug: every sampled chain of a seeded search was the same, so each
    decision had one child. Measured here: 2-10 children per decision, seeded or not (a
    decision whose samples agree by chance may have one, so only the total is bounded)."""
    reply = rain(sdk, parallel_searches=4, max_visits=8, return_tree=True)
    widths = [len(decision["children"]) for decision in reply.model_extra["alignment"]["tree"]]
    assert sum(widths) > 2 * len(widths), widths


def test_engine_totals_and_own_prompt_cache_in_usage(sdk):
    reply = rain(sdk)
    stats = reply.model_extra["alignment"]["stats"]
    assert stats["engine"]["requests"] == stats["engine_calls_total"]
    assert reply.usage.prompt_tokens_details.cached_tokens <= reply.usage.prompt_tokens


@pytest.mark.parametrize("field", ["logit_bias", "presence_penalty"])
def test_options_rain_cannot_honour_are_400s(sdk, field):
    value = {"logit_bias": {"1": 1.0}}.get(field, 0.5)
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model=SMOL, messages=MESSAGES, max_tokens=4,
                                    extra_body={"alignment": BUDGET}, **{field: value})
    assert info.value.body["param"] == field
