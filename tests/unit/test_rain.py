"""RAIN's arithmetic against hand-computed values, and its search over stand-in engines."""

from __future__ import annotations

import math
from contextlib import aclosing

import numpy as np
import pytest

from decoding.embeddings import HashEmbedder
from decoding.stand_in import StandInEngine
from decoding.strategies.base import DecodeRequest, DecodeRun
from decoding.strategies.rain import RainParams, RainStrategy
from decoding.strategies.rain.scoring import Evaluator, combine, judge_text, principle_for
from decoding.strategies.rain.tree import (
    Node,
    backup,
    clamp_greedy_prior,
    commit_choice,
    mix_priors,
    puct,
    reroot,
    select_child,
    set_length,
    should_add_child,
)
from decoding.types import GenerationChunk, Message, SamplingOptions, TokenLogprob, TopLogprob


def tree(*priors: float) -> Node:
    root = Node((), 1.0, 0)
    root.children = [Node((i,), p, 1, parent=root) for i, p in enumerate(priors)]
    return root


@pytest.mark.parametrize(("depth", "length"), [(1, 1), (2, 2), (3, 4), (4, 10), (9, 10)])
def test_token_set_schedule(depth, length):
    assert set_length(depth, (1, 2, 4, 10)) == length


def test_puct_by_hand():
    child = Node((1,), 0.5, 1, n=1, q=0.5)
    assert puct(child, 4, 2.0) == pytest.approx(0.75 + 2 * 0.5 * 2 / 2)
    fresh = Node((2,), 0.5, 1)
    assert puct(fresh, 4, 2.0) == pytest.approx(0 + 2 * 0.5 * 2 / 1)


def test_selection_trades_value_against_exploration():
    root = tree(0.5, 0.5)
    root.n = 1
    root.children[0].n, root.children[0].q = 1, -0.2  # qh 0.4 + 2·0.5·1/2 = 0.9
    assert select_child(root, 2.0) is root.children[1]  # unvisited: 0 + 2·0.5·1/1 = 1.0
    root.children[0].q = 0.1                              # 0.55 + 0.5 = 1.05 > 1.0
    assert select_child(root, 2.0) is root.children[0]


def test_virtual_loss_diverts_a_parallel_selection():
    root = tree(0.6, 0.4)
    root.n = 2
    for child in root.children:
        child.n, child.q = 1, 0.5
    first = select_child(root, 2.0)
    assert first is root.children[0]
    first.virtual += 1
    root.virtual += 1
    assert select_child(root, 2.0) is root.children[1]


def test_backup_and_similarity_update_by_hand():
    root = tree(0.5, 0.5)
    a, twin = root.children
    twin.embedding = np.array([1.0, 0.0], dtype=np.float32)
    twin.n, twin.q = 1, -1.0
    updates = backup([root, a], 1.0, [None, np.array([2.0, 0.0])], 0.2, 0.95)
    assert updates == 1
    assert (a.n, a.fn, a.q) == (1, 1, 1.0)
    assert (root.n, root.fn, root.q) == (1, 1, 1.0)
    w = 0.2 * 1.0  # cosine 1
    assert twin.n == pytest.approx(1 + w)
    assert twin.q == pytest.approx((-1.0 * 1 + w * 1.0) / (1 + w))
    # a second visit averages the value and the embedding
    backup([root, a], -1.0, [None, np.array([0.0, 2.0])], 0.2, 0.95)
    assert a.q == pytest.approx(0.0) and a.fn == 2
    np.testing.assert_allclose(a.embedding, [1.0, 1.0])


def test_dissimilar_siblings_are_left_alone():
    root = tree(0.5, 0.5)
    a, other = root.children
    other.embedding = np.array([0.0, 1.0], dtype=np.float32)
    assert backup([root, a], 1.0, [None, np.array([1.0, 0.0])], 0.2, 0.95) == 0
    assert (other.n, other.q) == (0, 0)


def test_node_addition_trigger():
    root = tree(0.5, 0.5)
    for child in root.children:
        child.embedding = np.ones(4, dtype=np.float32)
        child.q = -0.5
    assert should_add_child(root, 20, 0.03)
    root.children[1].q = 0.1
    assert not should_add_child(root, 20, 0.03)          # one child looks fine
    root.children[1].q = -0.1
    root.children[1].embedding = np.array([1, 0, 0, 0], dtype=np.float32)
    assert not should_add_child(root, 20, 0.03)          # children differ
    root.children[1].embedding = None
    assert not should_add_child(root, 20, 0.03)          # not all embedded yet
    root.children[1].embedding = np.ones(4, dtype=np.float32)
    assert not should_add_child(root, 2, 0.03)           # already wide enough


def test_commit_rule_and_reroot_keep_the_subtree():
    root = tree(0.2, 0.3, 0.5)
    a, b, c = root.children
    a.n, a.q, b.n, b.q, c.n, c.q = 3, 0.1, 3, 0.4, 2, 0.9
    b.children = [Node((7,), 0.9, 2, parent=b, n=2), Node((8,), 0.1, 2, parent=b, n=1)]
    assert commit_choice(root) is b                       # most visits, tie broken by q
    new_root = reroot(b, 0.25)
    assert new_root.parent is None and new_root.n == 3
    assert [k.token_ids for k in new_root.children] == [(7,), (8,)]
    assert [k.prior for k in new_root.children] == pytest.approx(mix_priors([0.9, 0.1], 0.25))
    assert mix_priors([0.9, 0.1], 0.25) == pytest.approx([0.75 * 0.9 + 0.125,
                                                          0.75 * 0.1 + 0.125])


def test_greedy_prior_clamp():
    assert clamp_greedy_prior(0.9, [0.1, 0.2]) == pytest.approx(0.3)
    assert clamp_greedy_prior(0.05, [0.1, 0.2]) == pytest.approx(0.3)
    assert clamp_greedy_prior(0.5, []) == 0.5


@pytest.mark.parametrize(("pairs", "mode", "value"), [
    ([(0.7, 0.3), (0.6, 0.4)], "votes", 1.0),
    ([(0.7, 0.3), (0.4, 0.6)], "votes", 0.0),
    ([(0.3, 0.7), (0.4, 0.6)], "votes", -1.0),
    ([(0.7, 0.3), (0.4, 0.6)], "soft", 2 * (0.7 + 0.4) / 2 - 1),
    ([(0.0, 0.0), (0.0, 0.0)], "soft", 0.0),
])
def test_combine(pairs, mode, value):
    assert combine(pairs, mode) == pytest.approx(value)


def test_judge_prompt_keeps_the_fixed_part_first():
    principle = principle_for("harmless")
    one = judge_text(principle, "User: a\nAssistant: b", True)
    two = judge_text(principle, "User: a\nAssistant: b", False)
    prefix = one[: next(i for i, (x, y) in enumerate(zip(one, two, strict=False)) if x != y)]
    assert prefix.endswith("User: a\nAssistant: b\nOptions: (A) harm")
    assert principle_for("Never mention cats.").criterion == "Never mention cats."


# --- the search over stand-in engines ---------------------------------------------


class KeywordJudge(StandInEngine):
    """Answers the judge prompt: the reply is bad iff it contains `banned`."""

    def __init__(self, banned: str) -> None:
        super().__init__("judge")
        self.banned = banned
        self.calls = 0

    async def generate(self, prompt_token_ids, options, request_id):
        self.calls += 1
        text = self.detokenize(prompt_token_ids)
        reply = text.rsplit("Assistant: ", 1)[1].split("\nOptions:")[0]
        good_first = text.rsplit("Options: (A) ", 1)[1].startswith("harmless")
        good = (reply.find(self.banned) < 0)
        letter = "A" if good == good_first else "B"
        other = "B" if letter == "A" else "A"
        top = (TopLogprob(ord(letter), letter, math.log(0.9)),
               TopLogprob(ord(other), other, math.log(0.1)))
        yield GenerationChunk([ord(letter)], letter,
                              [TokenLogprob(ord(letter), letter, math.log(0.9), top)], "length",
                              None, len(prompt_token_ids), 0)


SMALL = RainParams(max_visits=12, min_searches=4, min_visits=2)


async def rain_answer(policy, judge, params=SMALL, seed=3, max_tokens=14):
    messages = (Message("user", "Say something."),)
    ids = policy.tokenize(policy.render_chat(messages), add_special_tokens=False)
    params = params if judge is policy else _with_judge(params)
    request = DecodeRequest("r", policy, {"policy": policy, "judge": judge}, ids,
                            SamplingOptions(max_tokens=max_tokens, seed=seed), 1, messages,
                            params)
    run = DecodeRun()
    text = ""
    async with aclosing(RainStrategy(HashEmbedder()).run(request, run)) as deltas:
        async for delta in deltas:
            text += delta.text
    return text, run


def _with_judge(params: RainParams) -> RainParams:
    from dataclasses import replace

    return replace(params, evaluator_model="judge")


async def vanilla_answer(policy, max_tokens=14):
    messages = (Message("user", "Say something."),)
    ids = policy.tokenize(policy.render_chat(messages), add_special_tokens=False)
    text = ""
    async for chunk in policy.generate(ids, SamplingOptions(max_tokens=max_tokens,
                                                            temperature=0), "v"):
        text += chunk.text
    return text


@pytest.mark.asyncio
async def test_rain_avoids_what_the_evaluator_calls_harmful():
    policy = StandInEngine("policy")
    vanilla = await vanilla_answer(policy)
    banned = vanilla[2:5]
    assert banned in vanilla
    neutral, _ = await rain_answer(policy, KeywordJudge("qqq"))
    assert banned in neutral  # the search alone keeps the greedy text ...
    decoded_before = policy.counters.generated_tokens
    text, run = await rain_answer(policy, KeywordJudge(banned))
    assert text and banned not in text  # ... the evaluator's judgement steers it away
    # every token the policy decoded for the search, plus the judge's one letter per
    # label order, is in the accounting
    decoded = policy.counters.generated_tokens - decoded_before
    decoded += 2 * run.stats["evaluations"]
    assert run.accounting.engine_generated_tokens == decoded
    assert run.stats["engine_tokens_per_answer_token"]["generated"] == round(
        decoded / run.accounting.completion_tokens, 2)
    stats = run.stats
    assert stats["committed_sets"] >= 3 and stats["searches"] >= stats["committed_sets"]
    assert stats["evaluations"] + stats["evaluation_memo_hits"] == stats["searches"]
    assert stats["tree_nodes"] >= 1 and stats["end"] in ("max_tokens", "eos")


@pytest.mark.asyncio
async def test_seeded_search_is_reproducible_and_parallel_search_works():
    policy, judge = StandInEngine("policy"), KeywordJudge("zz")
    first, _ = await rain_answer(policy, judge)
    again, _ = await rain_answer(policy, judge)
    assert first == again
    wide, run = await rain_answer(policy, judge, RainParams(
        max_visits=12, min_searches=4, min_visits=2, parallel_searches=4))
    assert wide and run.stats["searches"] >= 4


@pytest.mark.asyncio
async def test_engine_call_budget_ends_the_answer():
    policy = StandInEngine("policy")
    _text, run = await rain_answer(policy, KeywordJudge("zz"), RainParams(max_engine_calls=30))
    assert run.stats["end"] == "engine_call_budget" and run.stats["engine_calls"] == 30


@pytest.mark.asyncio
async def test_evaluator_labels_and_memo():
    judge = KeywordJudge("bad")
    calls = []

    async def call(engine, ids, options):
        calls.append(ids)
        async for chunk in engine.generate(ids, options, "x"):
            return chunk

    evaluator = Evaluator(judge, principle_for("harmless"), "votes", call)
    assert evaluator.labels() == (ord("A"), ord("B"))
    assert await evaluator.score("User: q\nAssistant: fine") == 1.0
    assert await evaluator.score("User: q\nAssistant: bad idea") == -1.0
    assert await evaluator.score("User: q\nAssistant: fine") == 1.0
    assert (evaluator.evaluations, evaluator.memo_hits, len(calls)) == (2, 1, 4)


@pytest.mark.asyncio
async def test_n_choices_search_separately():
    policy = StandInEngine("policy")
    messages = (Message("user", "Say something."),)
    ids = policy.tokenize(policy.render_chat(messages), add_special_tokens=False)
    engines = {"policy": policy, "judge": KeywordJudge("qqq")}
    request = DecodeRequest("r", policy, engines, ids, SamplingOptions(max_tokens=8, seed=5),
                            2, messages, _with_judge(SMALL))
    run = DecodeRun()
    texts = {0: "", 1: ""}
    finishes = {}
    async with aclosing(RainStrategy(HashEmbedder()).run(request, run)) as deltas:
        async for delta in deltas:
            texts[delta.index] += delta.text
            if delta.finish_reason:
                finishes[delta.index] = delta.finish_reason
    choices = run.stats["choices"]
    assert len(choices) == 2 and set(finishes) == {0, 1}
    assert all(c["committed_sets"] >= 1 and c["searches"] >= 1 for c in choices)
    assert run.accounting.completion_tokens == sum(
        len(policy.tokenize(t, add_special_tokens=False)) for t in texts.values())
