"""RAIN's arithmetic against hand-computed values, and its search over stand-in engines."""

from __future__ import annotations

import asyncio
import json
import math
from contextlib import aclosing

import numpy as np
import pytest

from decoding.embeddings import HashEmbedder
from decoding.stand_in import ALPHABET, EOS, StandInEngine
from decoding.strategies.base import DecodeRequest, DecodeRun, Progress
from decoding.strategies.rain import RainParams, RainStrategy
from decoding.strategies.rain.scoring import Evaluator, combine, judge_text, principle_for
from decoding.strategies.rain.search import rollout_stop_ids
from decoding.strategies.rain.tree import (
    Node,
    added_prior,
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
    assert should_add_child(root, 20, 0.03, 1)
    root.children[1].q = 0.1
    assert not should_add_child(root, 20, 0.03, 1)          # one child looks fine
    root.children[1].q = -0.1
    root.children[1].embedding = np.array([1, 0, 0, 0], dtype=np.float32)
    assert not should_add_child(root, 20, 0.03, 1)          # children differ
    root.children[1].embedding = None
    assert not should_add_child(root, 20, 0.03, 1)          # not all embedded yet
    root.children[1].embedding = np.ones(4, dtype=np.float32)
    assert not should_add_child(root, 2, 0.03, 1)           # already wide enough


def test_node_addition_threshold_uses_the_depths_set_length():
    # the first child's chain met EOS after one token; its siblings have the depth's 4
    root = Node((), 1.0, 0)
    root.children = [Node((EOS,), 0.5, 1, parent=root, q=-0.5, terminal=True),
                     Node((1, 2, 3, 4), 0.5, 1, parent=root, q=-0.5)]
    root.children[0].embedding = np.array([1.0, 0.0], dtype=np.float32)
    root.children[1].embedding = np.array([1.0, 0.5], dtype=np.float32)
    spread = float(np.linalg.norm(np.var(np.stack([k.embedding for k in root.children]), 0)))
    assert 0.03 * 1 < spread < 0.03 * 4
    assert should_add_child(root, 20, 0.03, set_length(3, (1, 2, 4, 10)))


def test_a_child_added_at_the_root_gets_the_references_mixed_prior():
    # p = 0.05 among 10 children: 0.75·0.05 + 0.25/11, the siblings keep their priors
    weights = [0.095] * 10
    assert added_prior(weights, 0.05, 0.25) == pytest.approx(0.75 * 0.05 + 0.25 / 11)
    assert added_prior(weights, 0.05, None) == pytest.approx(0.05)
    assert added_prior([0.0, 0.0], 0.0, None) == pytest.approx(1 / 3)


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
        probs = {ord(letter): 0.9, ord("B" if letter == "A" else "A"): 0.1}
        wanted = options.logprob_token_ids or tuple(probs)
        top = tuple(TopLogprob(t, chr(t), math.log(probs.get(t, 1e-12))) for t in wanted)
        yield GenerationChunk([ord(letter)], letter,
                              [TokenLogprob(ord(letter), letter, math.log(0.9), top)], "length",
                              None, len(prompt_token_ids), 0)


def recording_call(calls: list):
    """An evaluator's engine call that records each prompt."""

    async def call(engine, ids, options):
        calls.append(ids)
        async with aclosing(engine.generate(ids, options, "x")) as stream:
            async for chunk in stream:
                return chunk

    return call


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
            if isinstance(delta, Progress):
                continue
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
    assert 0 < stats["event_loop_cpu_seconds"] <= stats["seconds_total"]


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
    calls = []
    evaluator = Evaluator(KeywordJudge("bad"), principle_for("harmless"), "votes",
                          recording_call(calls))
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
            if isinstance(delta, Progress):
                continue
            texts[delta.index] += delta.text
            if delta.finish_reason:
                finishes[delta.index] = delta.finish_reason
    choices = run.stats["choices"]
    assert len(choices) == 2 and set(finishes) == {0, 1}
    assert all(c["committed_sets"] >= 1 and c["searches"] >= 1 for c in choices)
    assert run.accounting.completion_tokens == sum(
        len(policy.tokenize(t, add_special_tokens=False)) for t in texts.values())


# --- issue 10: defects, each pinned by a test that failed before its fix -----------


class RecordingEngine(StandInEngine):
    """The stand-in, remembering every request's prompt and options."""

    def __init__(self, model_id: str = "policy") -> None:
        super().__init__(model_id)
        self.requests: list[tuple[list[int], SamplingOptions]] = []

    async def generate(self, prompt_token_ids, options, request_id):
        self.requests.append((list(prompt_token_ids), options))
        async for chunk in super().generate(prompt_token_ids, options, request_id):
            yield chunk


class ScriptedEngine(RecordingEngine):
    """Writes `script` after the prompt with probability 0.999 per token, then EOS."""

    def __init__(self, script: str) -> None:
        super().__init__("scripted")
        self.script = script.encode()

    def distribution(self, context):
        start = max(i for i, t in enumerate(context) if t == ord(">")) + 1
        done = len(context) - start
        wanted = self.script[done] if done < len(self.script) else EOS
        rest = [t for t in ALPHABET if t != wanted]
        return [(wanted, math.log(0.999))] + [(t, math.log(0.001 / len(rest))) for t in rest]


def policy_prompt(policy) -> list[int]:
    messages = (Message("user", "Say something."),)
    return policy.tokenize(policy.render_chat(messages), add_special_tokens=False)


@pytest.mark.asyncio
async def test_seeded_expansion_has_as_many_distinct_chains_as_unseeded():
    # one search, one 10-token expansion of the root, then the answer is full
    params = RainParams(max_visits=1, min_searches=1, token_set_lengths=(10,))
    nodes = []
    for seed in (3, None):
        policy = RecordingEngine()
        _text, run = await rain_answer(policy, KeywordJudge("qqq"), params, seed=seed,
                                       max_tokens=10)
        nodes.append(run.stats["tree_nodes"])
        sampled = [o.seed for _, o in policy.requests if o.temperature > 0 and o.max_tokens > 1]
        if seed is not None:
            assert len(set(sampled)) == len(sampled)  # every sampled chain its own seed
    assert nodes == [1 + params.candidates] * 2


@pytest.mark.asyncio
async def test_seeded_parallel_search_repeats_exactly():
    params = RainParams(max_visits=12, min_searches=4, min_visits=2, parallel_searches=4)
    runs = [await rain_answer(StandInEngine("policy"), KeywordJudge("zz"), params)
            for _ in range(2)]
    (text, first), (again, second) = runs
    assert text == again
    for key in ("searches", "tree_nodes", "evaluations", "engine_calls"):
        assert first.stats[key] == second.stats[key]


@pytest.mark.asyncio
async def test_stop_string_across_committed_sets_is_never_sent():
    policy = ScriptedEngine(" .nnnnnnnnnnnnnnnnnnnnnnn")
    ids = policy_prompt(policy)
    request = DecodeRequest("r", policy, {"policy": policy, "judge": KeywordJudge("qqq")}, ids,
                            SamplingOptions(max_tokens=20, seed=1, stop=("nn",)), 1,
                            (Message("user", "Say something."),), _with_judge(SMALL))
    sent = []
    async with aclosing(RainStrategy(HashEmbedder()).run(request, DecodeRun())) as deltas:
        async for delta in deltas:
            if isinstance(delta, Progress):
                continue
            sent.append(delta.text)
    assert "".join(sent) == " ."


def test_base_model_evaluator_prompt_has_one_answer_cue():
    base = StandInEngine("base", role="base")
    evaluator = Evaluator(base, principle_for("harmless"), "votes", None)
    text = base.detokenize(evaluator.prompt_ids("User: q\nAssistant: a", True))
    assert text.endswith("\nAnswer: (") and "Answer: Answer:" not in text


@pytest.mark.asyncio
async def test_no_engine_request_outlives_a_search_that_ran_out_of_budget():
    policy = StandInEngine("policy")
    params = RainParams(parallel_searches=4, max_engine_calls=37)
    _text, run = await rain_answer(policy, KeywordJudge("zz"), params)
    assert run.stats["end"] == "engine_call_budget"
    assert policy.counters.running == 0


@pytest.mark.asyncio
async def test_concurrent_evaluations_of_one_text_share_the_engine_requests():
    calls = []
    evaluator = Evaluator(KeywordJudge("bad"), principle_for("harmless"), "calibrated",
                          recording_call(calls))
    texts = ["User: q\nAssistant: fine", "User: q\nAssistant: fine",
             "User: q\nAssistant: also fine", "User: q\nAssistant: fine"]
    values = await asyncio.gather(*(evaluator.score(t) for t in texts))
    assert len(set(values)) == 1
    # two texts × two label orders, plus the content-free answer in both orders, once
    assert len(calls) == 2 * 2 + 2


@pytest.mark.asyncio
async def test_max_tokens_bounds_every_expansion_and_rollout():
    policy = RecordingEngine()
    ids = policy_prompt(policy)
    for max_tokens in (1, 5, 9):
        policy.requests.clear()
        await rain_answer(policy, KeywordJudge("zz"), SMALL, max_tokens=max_tokens)
        assert policy.requests
        for prompt, options in policy.requests:
            assert len(prompt) - len(ids) + options.max_tokens <= max_tokens


@pytest.mark.asyncio
async def test_engine_call_budget_is_per_request_not_per_choice():
    policy = StandInEngine("policy")
    ids = policy_prompt(policy)
    request = DecodeRequest("r", policy, {"policy": policy, "judge": KeywordJudge("qqq")}, ids,
                            SamplingOptions(max_tokens=8, seed=5), 3,
                            (Message("user", "Say something."),),
                            _with_judge(RainParams(max_engine_calls=40)))
    run = DecodeRun()
    async with aclosing(RainStrategy(HashEmbedder()).run(request, run)) as deltas:
        async for _ in deltas:
            pass
    assert run.accounting.engine_requests <= 40


@pytest.mark.asyncio
async def test_widening_never_decodes_a_greedy_chain_twice():
    policy = RecordingEngine()
    everything_bad = KeywordJudge("")  # every reply holds "": always harmful
    params = RainParams(max_visits=40, min_searches=4, addition_variance=1e9,
                        token_set_lengths=(2, 4))
    _text, run = await rain_answer(policy, everything_bad, params, max_tokens=10)
    assert run.stats["node_additions"] > 0
    greedy = [tuple(p) for p, o in policy.requests if o.temperature == 0 and o.max_tokens > 1]
    assert len(greedy) == len(set(greedy))


class SlowToStart(StandInEngine):
    """Answers requests on `slow` prompts a few event-loop turns late."""

    def __init__(self, model_id: str, slow: list[int], **kwargs) -> None:
        super().__init__(model_id, **kwargs)
        self.slow = slow

    async def generate(self, prompt_token_ids, options, request_id):
        if list(prompt_token_ids) == self.slow:
            for _ in range(10):
                await asyncio.sleep(0)
        async for chunk in super().generate(prompt_token_ids, options, request_id):
            yield chunk


@pytest.mark.asyncio
async def test_usage_cached_tokens_are_the_request_prompts_own():
    policy = SlowToStart("policy", policy_prompt(StandInEngine()), max_model_len=4096)
    await rain_answer(policy, policy, SMALL)  # the evaluator's long prompt is now cached
    _text, run = await rain_answer(policy, policy, SMALL)
    assert run.accounting.cached_prompt_tokens == (len(policy.slow) - 1) // 4 * 4


class LongTailJudge(KeywordJudge):
    """Both labels are far below the top 20; the good one is the likelier of the two."""

    async def generate(self, prompt_token_ids, options, request_id):
        text = self.detokenize(prompt_token_ids)
        good_first = text.rsplit("Options: (A) ", 1)[1].startswith("harmless")
        good, bad = (ord("A"), ord("B")) if good_first else (ord("B"), ord("A"))
        logprob = {t: math.log(0.03) for t in range(100, 130)}  # 30 likelier tokens
        logprob |= {good: math.log(0.004), bad: math.log(0.001)}
        wanted = options.logprob_token_ids or sorted(logprob, key=lambda t: -logprob[t])[
            : options.logprobs]
        top = tuple(TopLogprob(t, chr(t), logprob.get(t, -math.inf)) for t in wanted)
        yield GenerationChunk([100], "d", [TokenLogprob(100, "d", logprob[100], top)],
                              "length", None, len(prompt_token_ids), 0)


@pytest.mark.asyncio
async def test_labels_outside_the_top_20_are_read_exactly():
    evaluator = Evaluator(LongTailJudge("x"), principle_for("harmless"), "votes",
                          recording_call([]),
                          audit_top=20)
    assert await evaluator.score("User: q\nAssistant: fine") == 1.0
    assert (evaluator.label_reads, evaluator.labels_outside_top) == (2, 4)


def test_rollout_stops_only_where_the_text_ends_with_a_stop_character():
    class Tokens(StandInEngine):
        def token_texts(self):
            return ["a", ", and", "and,", ".", "\n", "x?y", ""]

    assert rollout_stop_ids(Tokens()) == (2, 3, 4)


@pytest.mark.asyncio
@pytest.mark.parametrize(("options", "finish", "tokens"), [
    ({}, "stop", 2),                                 # the script ends at EOS
    ({"ignore_eos": True}, "length", 6),             # ... which is then just a token
    ({"min_tokens": 4, "ignore_eos": False}, None, None),
    ({"stop_token_ids": (ord("n"),)}, "stop", 1),    # the answer ends at "n"
])
async def test_rain_honours_eos_and_stop_token_options(options, finish, tokens):
    policy = ScriptedEngine("n")
    request = DecodeRequest("r", policy, {"policy": policy, "judge": KeywordJudge("qqq")},
                            policy_prompt(policy), SamplingOptions(max_tokens=6, seed=2,
                                                                   **options), 1,
                            (Message("user", "Say something."),), _with_judge(SMALL))
    run = DecodeRun()
    finishes = []
    async with aclosing(RainStrategy(HashEmbedder()).run(request, run)) as deltas:
        async for delta in deltas:
            if isinstance(delta, Progress):
                continue
            finishes.append(delta.finish_reason)
    if "min_tokens" in options:
        assert run.accounting.completion_tokens >= 4
    else:
        assert (finishes[-1], run.accounting.completion_tokens) == (finish, tokens)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("name", ["logit_bias", "presence_penalty", "frequency_penalty",
                                  "repetition_penalty"])
def test_options_rain_cannot_honour_are_refused_by_name(client, name, stream):
    value = {"logit_bias": {"65": 5}, "repetition_penalty": 1.2}.get(name, 0.5)
    body = {"model": "chat", "messages": [{"role": "user", "content": "Hi"}], "stream": stream,
            "max_tokens": 4, name: value, "alignment": {"strategy": "rain"}}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == name


@pytest.mark.asyncio
@pytest.mark.parametrize("cap", [2000, 7])
async def test_return_tree_lists_each_decision_within_the_node_cap(cap):
    policy = StandInEngine("policy")
    params = RainParams(max_visits=12, min_searches=4, min_visits=2, return_tree=True,
                        max_tree_nodes=cap)
    text, run = await rain_answer(policy, KeywordJudge("zz"), params)
    decisions = run.extras["tree"]
    assert len(decisions) == run.stats["committed_sets"]

    def nodes(views):
        return sum(1 + nodes(v["children"]) for v in views)

    assert sum(nodes(d["children"]) for d in decisions) <= cap
    listed = [d for d in decisions if d["children"]]
    # the committed child of each listed decision, in order, spells the answer
    committed = [[c for c in d["children"] if c["committed"]] for d in listed]
    assert all(len(c) <= 1 for c in committed)
    if cap == 2000:
        assert not any(d["truncated"] for d in decisions)
        assert "".join(c[0]["text"] for c in committed) == text
        for d in decisions:
            kids = d["children"]
            assert sum(k["prior"] for k in kids) == pytest.approx(1, abs=1e-4)
            best = max(kids, key=lambda k: (k["visits"], k["value"]))
            assert best["committed"] and d["visits"] >= sum(k["whole_visits"] for k in kids)
    else:
        assert decisions[-1]["truncated"]


def test_streamed_rain_sends_progress_as_sse_comments(client, monkeypatch, sdk_strict):
    from decoding.strategies import STRATEGIES
    from decoding.strategies.rain import search

    monkeypatch.setattr(STRATEGIES["rain"], "embedder", HashEmbedder())
    monkeypatch.setattr(search, "PROGRESS_SECONDS", 0.0)
    body = {"model": "chat", "messages": [{"role": "user", "content": "Hi"}], "seed": 1,
            "max_tokens": 6, "stream": True,
            "alignment": {"strategy": "rain", "max_visits": 8, "min_searches": 2}}
    raw = client.post("/v1/chat/completions", json=body).text
    events = raw.split("\n\n")
    comments = [e for e in events if e.startswith(":")]
    assert comments and all(e.startswith(": searching") and "\n" not in e for e in comments)
    assert all(e.startswith(("data: ", ":")) for e in events[:-1]) and events[-1] == ""
    streamed = "".join(json.loads(e[6:])["choices"][0]["delta"].get("content") or ""
                       for e in events if e.startswith("data: {")
                       and json.loads(e[6:])["choices"])
    whole = client.post("/v1/chat/completions", json=body | {"stream": False}).json()
    assert streamed == whole["choices"][0]["message"]["content"]
    chunks = list(sdk_strict.chat.completions.create(
        model="chat", messages=body["messages"], max_tokens=6, seed=1, stream=True,
        extra_body={"alignment": body["alignment"]}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == streamed


@pytest.fixture
def engines() -> dict[str, StandInEngine]:
    """The server's stand-in models, with room for the evaluator's prompt."""
    return {"chat": StandInEngine("chat", max_model_len=4096)}


@pytest.fixture
def sdk_strict(client):
    import openai

    from tests.unit.conftest import API_KEY

    return openai.OpenAI(api_key=API_KEY, base_url="http://testserver/v1", http_client=client,
                         _strict_response_validation=True)


@pytest.mark.asyncio
async def test_an_engine_error_inside_the_search_arrives_unwrapped():
    from decoding.errors import ContextLengthExceeded

    small = StandInEngine("policy", max_model_len=200)  # the evaluator's prompt is longer
    with pytest.raises(ContextLengthExceeded):
        await rain_answer(small, small, SMALL)
    assert small.counters.running == 0


def test_topk_probability_without_a_usable_top_k_is_the_raw_probability():
    from decoding.strategies.rain.tree import topk_probability

    assert topk_probability(math.log(0.2), [math.log(0.2), math.log(0.3)]) == pytest.approx(0.4)
    assert topk_probability(math.log(0.2), []) == pytest.approx(0.2)
    assert topk_probability(math.log(0.2), [-math.inf]) == pytest.approx(0.2)


def test_a_real_failure_wins_over_a_spent_budget():
    from decoding.strategies.rain.search import EngineCallBudgetSpent, first_leaf

    group = BaseExceptionGroup("g", [EngineCallBudgetSpent(), ExceptionGroup(
        "inner", [ValueError("engine")])])
    assert isinstance(first_leaf(group), ValueError)
    assert isinstance(first_leaf(BaseExceptionGroup("g", [EngineCallBudgetSpent()])),
                      EngineCallBudgetSpent)


@pytest.mark.asyncio
async def test_one_failed_label_order_cancels_the_other():
    import asyncio

    from decoding.strategies.rain.scoring import both_orders

    cancelled = []

    async def pair(conversation, good_first):
        if good_first:
            raise RuntimeError("budget")
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    with pytest.raises(RuntimeError, match="budget"):
        await both_orders(pair, "text")
    assert cancelled == [True]


class PacedEngine(StandInEngine):
    """A stand-in that takes a little time per token, so expansions are still running
    when the next search selects."""

    async def generate(self, prompt_token_ids, options, request_id):
        async for chunk in super().generate(prompt_token_ids, options, request_id):
            await asyncio.sleep(0.001 * len(chunk.token_ids))
            yield chunk


@pytest.mark.asyncio
async def test_background_expansions_build_the_tree_the_sequential_loop_builds(monkeypatch):
    from decoding.strategies.rain import search

    class SequentialChooser(search.Chooser):
        """The reference's order: expand the leaf, then evaluate it."""

        async def simulate(self, visit):
            path = visit.path
            text = self.engine.detokenize(self.answer_ids(path))
            done = self.finished(path, text)
            if not done and not path[-1].children:
                await self.expand(path[-1], list(path))
            value, vectors = await self.evaluate(visit, text, done)
            return value, [None, *vectors]

    params = RainParams(max_visits=12, min_searches=4, min_visits=2, return_tree=True)
    background = await rain_answer(PacedEngine("policy"), KeywordJudge("zz"), params,
                                   max_tokens=20)
    monkeypatch.setattr(search, "Chooser", SequentialChooser)
    sequential = await rain_answer(PacedEngine("policy"), KeywordJudge("zz"), params,
                                   max_tokens=20)
    assert background[0] == sequential[0]
    assert background[1].extras["tree"] == sequential[1].extras["tree"]
    for key in ("searches", "evaluations", "committed_sets", "similarity_updates"):
        assert background[1].stats[key] == sequential[1].stats[key]


@pytest.mark.asyncio
async def test_an_expansion_nothing_needs_is_aborted_when_the_answer_ends():
    policy = PacedEngine("policy")
    _text, run = await rain_answer(policy, KeywordJudge("zz"), SMALL, max_tokens=20)
    assert run.stats["end"] == "max_tokens"
    assert policy.counters.running == 0


@pytest.mark.asyncio
async def test_parallel_searches_never_visit_an_unexpanded_leaf_twice_in_a_round():
    # four parallel searches from a bare root: the reference would expand the root after
    # its first visit and spend the next three on its children
    params = RainParams(max_visits=4, min_searches=1, min_visits=10, parallel_searches=4,
                        return_tree=True)
    _text, run = await rain_answer(StandInEngine("policy"), KeywordJudge("zz"), params,
                                   max_tokens=4)
    first = run.extras["tree"][0]
    assert first["visits"] == 4
    assert sum(child["whole_visits"] for child in first["children"]) == 3


class FailingChains(PacedEngine):
    """Sampled chains (top-k 15) fail: an engine error inside a background expansion."""

    async def generate(self, prompt_token_ids, options, request_id):
        if options.top_k == RainParams().chain_top_k and options.max_tokens > 1:
            from decoding.errors import EngineUnavailable

            raise EngineUnavailable("the policy engine is gone")
        async for chunk in super().generate(prompt_token_ids, options, request_id):
            yield chunk


@pytest.mark.asyncio
async def test_a_failed_background_expansion_arrives_unwrapped():
    from decoding.errors import EngineUnavailable

    params = RainParams(max_visits=6, min_searches=2, token_set_lengths=(10,))
    with pytest.raises(EngineUnavailable):
        await rain_answer(FailingChains("policy"), KeywordJudge("zz"), params, max_tokens=20)


@pytest.mark.asyncio
@pytest.mark.parametrize("calls", [3, 7, 11, 15, 19, 23])
async def test_a_budget_spent_by_a_background_expansion_ends_the_answer(monkeypatch, calls):
    # only expansions use the budget: no rollouts, and the judge answers without the engine
    from decoding.strategies.rain import scoring, search

    async def no_rollout(self, visit, text):
        return ""

    async def score(self, conversation):
        return 0.1

    monkeypatch.setattr(search.Chooser, "rollout", no_rollout)
    monkeypatch.setattr(scoring.Evaluator, "score", score)
    policy = PacedEngine("policy")
    params = RainParams(max_visits=12, min_searches=4, min_visits=2, max_engine_calls=calls)
    _text, run = await rain_answer(policy, KeywordJudge("zz"), params, max_tokens=20)
    assert run.stats["end"] == "engine_call_budget"
    assert policy.counters.running == 0


@pytest.mark.asyncio
async def test_expansions_below_siblings_not_taken_are_cancelled_at_commit():
    class SlowChains(StandInEngine):
        async def generate(self, prompt_token_ids, options, request_id):
            async for chunk in super().generate(prompt_token_ids, options, request_id):
                if options.top_k == RainParams().chain_top_k:
                    await asyncio.sleep(0.02)
                yield chunk

    from decoding.strategies.rain import search

    dropped = []
    drop = search.Chooser.drop_expansions_outside

    def counting(self, root):
        before = set(self.expanding)
        drop(self, root)
        for node in before - set(self.expanding):
            dropped.append(node)
            below = node
            while below is not None and below is not root:
                below = below.parent
            assert below is None  # never one under the committed set

    policy = SlowChains("policy")
    # a judge that dislikes "a" spreads the searches over siblings
    params = RainParams(max_visits=12, min_searches=6, min_visits=2, value_threshold=2.0,
                        token_set_lengths=(10,))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(search.Chooser, "drop_expansions_outside", counting)
        text, _run = await rain_answer(policy, KeywordJudge("a"), params, max_tokens=60)
    assert text and dropped and policy.counters.running == 0
    assert policy.aborted  # the dropped expansions' engine requests were aborted


@pytest.mark.asyncio
async def test_a_text_is_embedded_once_per_choice():
    class CountingEmbedder(HashEmbedder):
        def __init__(self) -> None:
            super().__init__()
            self.texts: list[str] = []

        async def embed(self, texts):
            self.texts += texts
            return await super().embed(texts)

    policy = StandInEngine("policy")
    messages = (Message("user", "Say something."),)
    ids = policy.tokenize(policy.render_chat(messages), add_special_tokens=False)
    judge = KeywordJudge("zz")
    request = DecodeRequest("r", policy, {"policy": policy, "judge": judge}, ids,
                            SamplingOptions(max_tokens=14, seed=3), 1, messages,
                            _with_judge(SMALL))
    embedder = CountingEmbedder()
    run = DecodeRun()
    async with aclosing(RainStrategy(embedder).run(request, run)) as deltas:
        async for _ in deltas:
            pass
    # revisited leaves (memoised evaluations) bring their texts again: none re-embedded
    assert run.stats["evaluation_memo_hits"] > 0
    assert embedder.texts and len(embedder.texts) == len(set(embedder.texts))
