"""Nudging's rules (pure functions) and its bookkeeping over stand-in engines."""

from __future__ import annotations

import json
import math

import pytest

from decoding.prompts import render_plain
from decoding.strategies.nudging.policy import (
    RepeatGuard,
    Span,
    find_stop,
    is_uncertain,
    keep_whole_words,
    merge_spans,
    repeats_written,
    tokens_before,
    word_done,
)
from decoding.types import Message


@pytest.mark.parametrize(("p", "gamma", "uncertain"), [
    (0.39, 0.4, True), (0.4, 0.4, False), (0.9, 0.4, False), (0.5, 0.0, False),
    (0.999, 1.0, True)])
def test_uncertainty(p, gamma, uncertain):
    assert is_uncertain(math.log(p), gamma) is uncertain


@pytest.mark.parametrize(("word", "nxt", "done"), [
    ([" Par"], "is", False), ([" Paris"], " is", True), ([" Paris"], ",", False),
    (["\n\n"], " The", False), ([" end.\n"], "Next", True), ([], " a", False)])
def test_word_done(word, nxt, done):
    assert word_done(word, nxt) is done


@pytest.mark.parametrize(("previous", "accepted", "rejected", "keep"), [
    (" Paris", [" is", " the", " cap"], "ital", 2),   # drop the unfinished word
    (" Paris", [" is", " the"], " capital", 2),       # rejected token starts a word
    (" Paris", [",", " the"], None, 2),               # clean end (EOS) keeps all
    (" Paris", [" is"], "n't", 0),
    (" Paris", [","], "\n", 1),
    (" Paris", [",\n"], "The", 1),                    # newline is a boundary
    (" Par", ["is"], "ian", 0),
])
def test_keep_whole_words(previous, accepted, rejected, keep):
    assert keep_whole_words(previous, accepted, rejected) == keep


def test_stop_and_token_cuts():
    assert find_stop("abc\nQuestion: x", ["\nQuestion:"]) == 3
    assert find_stop("abc", ["x", ""]) is None
    assert tokens_before(["ab", "c\nQ", "uestion"], 3) == 1
    assert tokens_before(["ab", "c"], 10) == 2


def test_repeat_guard_stops_on_the_third_repeat():
    guard = RepeatGuard(3)
    assert [guard.exhausted(w) for w in [" a", " a", " a", " b", " b", " b", " b"]] == [
        False, False, False, False, False, False, True]


def test_repeats_written_needs_more_than_five_words():
    written = "one two three four five six seven"
    assert repeats_written(" two three four five six seven", written)
    assert not repeats_written(" two three", written)
    assert not repeats_written(" eight nine ten eleven twelve thirteen", written)


def test_merge_spans():
    spans = [Span("nudger", "A"), Span("nudger", " b"), Span("base", ""), Span("base", " c")]
    assert merge_spans(spans) == [Span("nudger", "A b"), Span("base", " c")]


# --- the driver over stand-in engines, through the HTTP app -------------------------

MESSAGES = [{"role": "user", "content": "Tell me something."}]


def nudge(client, gamma, max_tokens=40, **extra):
    body = {"model": "base", "messages": MESSAGES, "max_tokens": max_tokens,
            "alignment": {"strategy": "nudging", "nudging_model": "chat", "gamma": gamma,
                          "return_spans": True}} | extra
    reply = client.post("/v1/chat/completions", json=body)
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_gamma_one_gives_the_nudgers_own_greedy_answer(client):
    nudged = nudge(client, 1.0)
    alone = client.post("/v1/chat/completions", json={
        "model": "chat", "messages": MESSAGES, "max_tokens": 40, "temperature": 0}).json()
    assert nudged["choices"][0]["message"]["content"] == alone["choices"][0]["message"]["content"]
    stats = nudged["alignment"]["stats"]
    assert stats["nudge_ratio"] == 1.0 and stats["base_tokens_kept"] == 0
    assert [s["source"] for s in nudged["alignment"]["spans"]] == ["nudger"]


def test_gamma_zero_nudges_only_the_opening_word(client):
    nudged = nudge(client, 0.0)
    content = nudged["choices"][0]["message"]["content"]
    spans = nudged["alignment"]["spans"]
    assert [s["source"] for s in spans] == ["nudger", "base"]
    word = spans[0]["text"]
    assert " " not in word.strip()
    prompt = render_plain([Message("user", "Tell me something.")]) + " " + word
    alone = client.post("/v1/completions", json={
        "model": "base", "prompt": prompt, "max_tokens": 40 - len(word), "temperature": 0,
    }).json()
    assert content == word + alone["choices"][0]["text"]
    stats = nudged["alignment"]["stats"]
    assert stats["nudged_words"] == 1 and stats["handoffs"] == 1
    assert nudged["usage"]["completion_tokens"] == 40
    # the nudger decoded its word and the token that ended it (none when the word hit
    # max_word_tokens, 16); the base decoded nothing it did not keep
    word_end = 0 if stats["nudged_tokens"] == 16 else 1
    assert stats["engine_generated_tokens"] == {"nudger": stats["nudged_tokens"] + word_end,
                                                "base": stats["base_tokens_kept"]}


@pytest.mark.parametrize("gamma", [0.2, 0.35, 0.5])
def test_spans_concatenate_to_content_and_stream_matches(client, gamma):
    whole = nudge(client, gamma)
    content = whole["choices"][0]["message"]["content"]
    assert "".join(s["text"] for s in whole["alignment"]["spans"]) == content
    stats = whole["alignment"]["stats"]
    assert stats["nudged_tokens"] + stats["base_tokens_kept"] == whole["usage"][
        "completion_tokens"]
    for role in ("base", "nudger"):  # hits never exceed what whole blocks allow
        assert 0 <= stats["prefix_cache_hit_rate"][role] <= stats["prefix_cache_hit_ceiling"][
            role] < 1
    body = {"model": "base", "messages": MESSAGES, "max_tokens": 40, "stream": True,
            "alignment": {"strategy": "nudging", "nudging_model": "chat", "gamma": gamma}}
    events = client.post("/v1/chat/completions", json=body).text.split("\n\n")
    chunks = [json.loads(e[6:]) for e in events[:-2]]
    streamed = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks
                       if c["choices"])
    assert streamed == content
    assert chunks[-1]["alignment"]["strategy"] == "nudging"


def test_stop_string_cuts_the_answer(client):
    whole = nudge(client, 0.3)["choices"][0]["message"]["content"]
    stop = whole[10:12]
    cut = nudge(client, 0.3, stop=[stop])
    assert cut["choices"][0]["message"]["content"] == whole[: whole.index(stop)]
    assert cut["choices"][0]["finish_reason"] == "stop"


def test_nudging_needs_chat_and_refuses_logprobs(client):
    reply = client.post("/v1/completions", json={"model": "base", "prompt": "x",
                                                 "alignment": "nudging"})
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "alignment.strategy"
    reply = client.post("/v1/chat/completions", json={
        "model": "base", "messages": MESSAGES, "logprobs": True, "alignment": "nudging"})
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "logprobs"


def test_n_choices_are_independent_runs(client):
    one = nudge(client, 0.35)
    two = nudge(client, 0.35, n=2)
    contents = [c["message"]["content"] for c in two["choices"]]
    assert [c["index"] for c in two["choices"]] == [0, 1]
    assert contents == [one["choices"][0]["message"]["content"]] * 2  # greedy: the same
    assert two["usage"]["completion_tokens"] == 2 * one["usage"]["completion_tokens"]
    assert len(two["alignment"]["spans"]) == 2
    assert two["alignment"]["stats"]["end"] == [one["alignment"]["stats"]["end"]] * 2


@pytest.mark.asyncio
@pytest.mark.parametrize("gamma", [0.2, 0.35, 0.5])
async def test_kept_open_sessions_write_what_fresh_requests_write(gamma):
    """Greedy runs go through sessions; a penalty sends every run as a new request.
    The stand-in ignores penalties, so both paths must give the same answer."""
    from contextlib import aclosing

    from decoding.stand_in import StandInEngine
    from decoding.strategies.base import DecodeRequest, DecodeRun
    from decoding.strategies.nudging import NudgingParams, NudgingStrategy
    from decoding.types import SamplingOptions

    answers, runs = [], []
    for penalty in (1.0, 1.01):
        engines = {"chat": StandInEngine("chat"), "base": StandInEngine("base", role="base")}
        request = DecodeRequest(
            "r", engines["base"], engines, [], SamplingOptions(
                max_tokens=40, temperature=0, repetition_penalty=penalty), 1,
            (Message("user", "Tell me something."),), NudgingParams("chat", gamma=gamma))
        run, text = DecodeRun(), ""
        async with aclosing(NudgingStrategy().run(request, run)) as deltas:
            async for delta in deltas:
                text += delta.text
        answers.append(text)
        runs.append(run.stats)
        assert all(e.counters.running == 0 for e in engines.values())
    assert answers[0] == answers[1]
    session, fresh = runs
    assert session["handoffs"] == fresh["handoffs"]
    assert session["engine_requests"]["nudger"] < fresh["engine_requests"]["nudger"]
