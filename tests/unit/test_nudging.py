"""Nudging's rules (pure functions) and its bookkeeping over stand-in engines."""

from __future__ import annotations

import json
import math
from contextlib import aclosing

import pytest

from decoding.errors import ContextLengthExceeded
from decoding.prompts import render_plain
from decoding.stand_in import EOS, StandInEngine
from decoding.strategies.base import DecodeRequest, DecodeRun
from decoding.strategies.nudging import NudgingParams, NudgingStrategy
from decoding.strategies.nudging.driver import Answer
from decoding.strategies.nudging.policy import (
    ChunkWords,
    RepeatGuard,
    Span,
    Stretch,
    base_takes_over,
    is_uncertain,
    keep_whole_words,
    merge_spans,
    repeats_written,
    whole_tokens,
)
from decoding.types import Message, SamplingOptions
from tests.nudging_runs import nudge_with, same_answer


@pytest.mark.parametrize(("p", "gamma", "uncertain"), [
    (0.39, 0.4, True), (0.4, 0.4, False), (0.9, 0.4, False), (0.5, 0.0, False),
    (0.999, 1.0, True)])
def test_uncertainty(p, gamma, uncertain):
    assert is_uncertain(math.log(p), gamma) is uncertain


@pytest.mark.parametrize(("word", "token", "p", "takes"), [
    (" baking", " bak", 0.1, True),    # agreement: the base's token starts the word
    (" baking", " baking", 0.1, True),
    (" baking", " cook", 0.1, False),  # disagreement while uncertain
    (" baking", " cook", 0.5, True),   # certain
    (" baking", "baking", 0.1, False),  # no leading space: not how the word starts
])
def test_base_takes_over(word, token, p, takes):
    assert base_takes_over(word, token, math.log(p), 0.4) is takes


def test_chunk_words_split_like_the_reference():
    words = ChunkWords.split("  Preheat the  oven")
    assert words.space_prefix == "  " and words.words == ("Preheat", "the", "", "oven")
    assert words.prefix(1) == "  Preheat" and words.prefix(2) == "  Preheat the"
    assert words.candidate(2) == " " and words.candidate(3) == " oven"
    assert words.prefix(4) == "  Preheat the  oven"


@pytest.mark.parametrize(("previous", "accepted", "rejected", "keep"), [
    (" Paris", [" is", " the", " cap"], "ital", 2),   # drop the unfinished word
    (" Paris", [" is", " the"], " capital", 2),       # rejected token starts a word
    (" Paris", [",", " the"], None, 2),               # clean end (EOS) keeps all
    (" Paris", [" is"], "n", 0),
    (" Paris", [","], "\n", 1),
    (" Paris", [",\n"], "The", 1),                    # newline is a boundary
    (" Par", ["is"], "ian", 0),
    (" the", [" oven"], ".", 1),                      # punctuation ends a word
    (" the", [" oven", "."], "The", 2),
    (" a", [" well"], "-known", 1),
])
def test_keep_whole_words(previous, accepted, rejected, keep):
    assert keep_whole_words(previous, accepted, rejected) == keep


def test_whole_tokens():
    assert whole_tokens(["ab", " cd", " e"], 5) == 2
    assert whole_tokens(["ab", " cd"], 4) is None
    assert whole_tokens(["ab"], 0) == 0
    assert whole_tokens(["ab", "c"], 3) == 2


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


def feed(stretch: Stretch, tokens: list[tuple[str, bool]]) -> int:
    """Feed (text, uncertain) tokens until the stretch ends; how many were read."""
    for read, (text, uncertain) in enumerate(tokens, 1):
        if not stretch.add(read, text, uncertain):
            return read
    return len(tokens)


def test_stretch_ends_at_the_first_uncertain_token():
    stretch = Stretch("Hi", 4, 100, [0], [" a"])
    assert feed(stretch, [(" b", False), (" c", True), (" d", False)]) == 2
    assert stretch.texts == [" a", " b"] and stretch.rejected == " c"


def test_stretch_drops_a_chunk_that_repeats_the_rounds_text():
    # chunks of 4: the first holds the take-over token and 3 more
    stretch = Stretch("", 4, 100, [0], [" a"])
    assert feed(stretch, [(t, False) for t in [" b", " a", " b"] + [" a", " b"] * 3]) == 7
    assert stretch.texts == [" a", " b", " a", " b"] and stretch.rejected == " a"


def test_stretch_drops_a_long_repetition_of_the_answer():
    answer = " one two three four five six seven"
    words = [" one", " two", " three", " four", " five", " six"]
    stretch = Stretch(answer, 7, 100, [0], [" And"])
    assert feed(stretch, [(w, False) for w in words]) == 6
    assert stretch.texts == [" And"] and stretch.rejected == " one"


def test_stretch_stops_at_the_budget():
    stretch = Stretch("", 16, 3, [0], [" a"])
    assert feed(stretch, [(" b", False), (" c", False), (" d", False)]) == 2
    assert stretch.texts == [" a", " b", " c"] and stretch.rejected is None


def test_a_stop_string_that_began_in_written_text_cuts_it():
    answer = Answer(stops=("Hello world",))
    answer.add("nudger", "Say Hello", [3, 6])
    assert answer.final_text(done=False) == "Say "  # "Hello" may start the stop string
    answer.add("base", " world again", [6, 6])
    assert answer.text == "Say " and answer.stopped
    assert answer.spans == [Span("nudger", "Say ")]
    assert answer.tokens == {"nudger": 2, "base": 0}  # " Hello" is cut, " " of it kept
    answer.add("base", " more", [5])  # nothing is added after a stop
    assert answer.text == "Say " and answer.final_text(done=True) == ""


def test_a_token_the_stop_string_cuts_still_counts():
    answer = Answer(stops=("i",))
    answer.add("nudger", "Hi Bob", [2, 4])
    assert answer.text == "H" and answer.tokens == {"nudger": 1, "base": 0}


@pytest.mark.asyncio
async def test_a_stop_inside_the_nudge_ends_the_answer_there():
    script = "Hi Bob and more words here"
    text, run, _ = await run_scripted(script, script, 0.99, 0.5, stop=("i",))
    assert text == "H" and run.stats["end"] == "stop_string"
    assert run.stats["nudged_tokens"] + run.stats["base_tokens_kept"] == 1


def test_streamed_text_never_holds_a_stops_first_part():
    answer = Answer(stops=("nn",))
    answer.add("base", " .n", [2, 1])
    assert answer.final_text(done=False) == " ."
    answer.add("nudger", "x", [1])
    assert answer.final_text(done=False) == "nx"


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


def test_gamma_zero_lets_the_base_write_all_after_the_first_word_boundary(client):
    """γ = 0: the base is always certain, so it takes over at the first word boundary of
    the first nudger chunk that has one (a chunk of one word is taken whole) and writes
    the rest exactly as its own greedy continuation."""
    nudged = nudge(client, 0.0)
    content = nudged["choices"][0]["message"]["content"]
    spans = nudged["alignment"]["spans"]
    assert [s["source"] for s in spans] == ["nudger", "base"]
    nudge_text = spans[0]["text"]
    prompt = render_plain([Message("user", "Tell me something.")]) + nudge_text
    stats = nudged["alignment"]["stats"]
    alone = client.post("/v1/completions", json={
        "model": "base", "prompt": prompt, "temperature": 0,
        "max_tokens": 40 - stats["nudged_tokens"]}).json()
    assert content == nudge_text + alone["choices"][0]["text"]
    assert stats["nudged_words"] == stats["rounds"]  # each round took one word
    assert nudged["usage"]["completion_tokens"] == 40
    # the nudger decoded one chunk per round; the base nothing it did not keep
    assert stats["engine_generated_tokens"] == {"nudger": 16 * stats["rounds"],
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
    assert session["rounds"] == fresh["rounds"]
    assert session["engine_requests"]["nudger"] < fresh["engine_requests"]["nudger"]


@pytest.mark.asyncio
@pytest.mark.parametrize("penalty", [1.0, 1.01], ids=["sessions", "fresh requests"])
async def test_provisional_rounds_change_no_answer(penalty, never_provisional):
    """A slow nudger: the base's stretch is over while the chunk's tail is still decoded,
    so rounds are kept provisionally and the next begins early. The same runs with every
    round waiting for its chunk give the same answers, spans and stats."""
    provisional = 0
    for gamma in (0.1, 0.15, 0.2):  # the stand-in base is seldom surer than 0.2
        for pair in ("", "-b", "-c", "-d"):  # the model ids seed the stand-ins' "knowledge"
            answers = []
            for off in (False, True):
                never_provisional(off)
                engines = {"chat": StandInEngine(f"chat{pair}", step_seconds=0.002),
                           "base": StandInEngine(f"base{pair}", role="base")}
                answers.append(await nudge_with(engines, gamma, "Tell me something.",
                                                repetition_penalty=penalty))
            same_answer(*answers)
            assert answers[1][1].stats["provisional_rounds"] == 0
            provisional += answers[0][1].stats["provisional_rounds"]
    assert provisional > 5


# --- the driver's rules on scripted stand-ins ---------------------------------------

class Scripted(StandInEngine):
    """A stand-in that writes `script` (one byte a token) after whatever answer it was
    given, as sure of each token as `certainty` says; EOS at the script's end."""

    def __init__(self, model_id: str, script: str, certainty: float, **kwargs) -> None:
        super().__init__(model_id, **kwargs)
        self.script, self.certainty = script, certainty

    def distribution(self, context):
        text = self.detokenize(context)
        start = max(text.rfind("Answer: ") + 8 * (text.rfind("Answer: ") >= 0),
                    text.rfind("<assistant>") + 11 * (text.rfind("<assistant>") >= 0))
        written = text[start:]
        nxt = ord(self.script[len(written)]) if len(written) < len(self.script) else EOS
        rest = math.log((1 - self.certainty) / 2)
        others = [t for t in (ord("#"), ord("~"), EOS) if t != nxt][:2]
        return [(nxt, math.log(self.certainty)), *((t, rest) for t in others)]


async def run_scripted(nudger_script: str, base_script: str, base_certainty: float,
                       gamma: float, max_tokens: int = 60, params: dict | None = None,
                       nudger_step: float = 0, base_step: float = 0, **options):
    engines = {"chat": Scripted("chat", nudger_script, 0.9, step_seconds=nudger_step),
               "base": Scripted("base", base_script, base_certainty, role="base",
                                step_seconds=base_step)}
    request = DecodeRequest(
        "r", engines["base"], engines, [],
        SamplingOptions(max_tokens=max_tokens, temperature=0, **options), 1,
        (Message("user", "Q?"),), NudgingParams("chat", gamma=gamma, return_spans=True,
                                                **(params or {})))
    run, text = DecodeRun(), ""
    async with aclosing(NudgingStrategy().run(request, run)) as deltas:
        async for delta in deltas:
            text += delta.text
    assert all(e.counters.running == 0 for e in engines.values())
    return text, run, engines


@pytest.mark.asyncio
@pytest.mark.parametrize(("params", "options"), [
    ({}, {}),
    ({"max_rounds": 1}, {}),  # the answer is over by its rounds while the round is pending
    ({}, {"stop": ("zz",)}),  # ... by a stop string in the provisional round
], ids=["next round undone", "max_rounds", "stop string"])
@pytest.mark.parametrize("slow", ["base", "nudger"])
async def test_the_nudgers_eos_in_its_chunk_ends_the_answer_with_the_chunk(
        slow, params, options):
    """With a slow nudger the base's stretch is over before the chunk's EOS is decoded:
    the round is kept provisionally, then undone (with the next, if it began)."""
    text, run, engines = await run_scripted(
        "Hi there you.", "zzz zzz", 0.99, 0.4, params=params, **options,
        nudger_step=0.01 * (slow == "nudger"), base_step=0.01 * (slow == "base"))
    assert text == "Hi there you." and run.stats["end"] == "nudger_eos"
    # the base was asked while the chunk was decoded, but nothing of it is kept
    assert [s["source"] for s in run.extras["spans"]] == ["nudger"]
    assert engines["base"].counters.running == 0
    assert run.stats["rounds"] == 1 and run.stats["nudged_words"] == 3
    assert run.stats["provisional_rounds"] == (slow == "nudger")
    assert run.stats["rounds_undone"] == (slow == "nudger" and not params and not options)
    assert run.stats["nudged_tokens"] == len(text)


class FailsAfterFirstChunk(Scripted):
    """A scripted nudger whose engine refuses every chunk after the first (as a nudger
    whose context is full would)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.opened_beside: list[int] = []  # sessions open when each later one was opened

    def open_session(self, request_id: str):
        session = super().open_session(request_id)
        if len(self.calls) > 1:
            self.opened_beside.append(self.counters.running)
            async def refuse(*args):
                raise ContextLengthExceeded("the nudger's context is full")
            session.step = refuse
        return session


@pytest.mark.asyncio
@pytest.mark.parametrize(("nudger_script", "ends"), [
    ("Hi there you.", "with the chunk"), ("Hi there you all now, and more", "in an error")])
async def test_a_round_begun_early_that_fails_gives_way_to_the_last_chunks_eos(
        nudger_script, ends):
    engines = {"chat": FailsAfterFirstChunk("chat", nudger_script, 0.9, step_seconds=0.01),
               "base": Scripted("base", "zzz zzz", 0.99, role="base")}
    if ends == "in an error":
        with pytest.raises(ContextLengthExceeded):
            await nudge_with(engines, 0.4, "Q?")
        assert all(e.counters.running == 0 for e in engines.values())
        # the failing round began early: the first chunk's session was still decoding
        assert engines["chat"].opened_beside == [1]
        return
    text, run = await nudge_with(engines, 0.4, "Q?")
    assert text == "Hi there you." and run.stats["end"] == "nudger_eos"
    assert run.stats["rounds_undone"] == 1


class SureAt(Scripted):
    """Scripted, but sure (0.99) only where the answer is as long as `sure_at` says."""

    def __init__(self, model_id: str, script: str, sure_at: set[int], **kwargs) -> None:
        super().__init__(model_id, script, 0.3, **kwargs)
        self.sure_at = sure_at

    def distribution(self, context):
        best, *others = super().distribution(context)
        text = self.detokenize(context)
        if len(text[text.rfind("Answer: ") + 8:]) not in self.sure_at:
            return [best, *others]
        return [(best[0], math.log(0.99)), *((t, math.log(0.005)) for t, _ in others)]


@pytest.mark.asyncio
@pytest.mark.parametrize("slow", ["base", "nudger"])
async def test_no_text_is_streamed_that_an_undone_round_brings_a_stop_to(slow):
    """Round one keeps "Well ok" ("ok" may start the stop "ok so then": held back). Round
    two's nudge " so" and the sure base's " now" rule the stop out, but the nudger's
    chunk " so then we go." ends in EOS: undone, the answer ends with it and the stop
    cuts it to "Well " -- so "ok" must never have been streamed."""
    engines = {
        "chat": Scripted("chat", "Well ok so then we go.", 0.9,
                         step_seconds=0.01 * (slow == "nudger")),
        "base": SureAt("base", "Well ok so now.", {4, 5, 6, 10, 11, 12, 13}, role="base",
                       step_seconds=0.01 * (slow == "base"))}
    text, run = await nudge_with(engines, 0.5, "Q?", stop=("ok so then",))
    assert text == "".join(s["text"] for s in run.extras["spans"]) == "Well "
    assert run.stats["provisional_rounds"] == (slow == "nudger")


@pytest.mark.asyncio
async def test_the_base_takes_over_where_it_agrees_with_the_nudger():
    """Both write the same words; the base is never certain (0.3 < γ 0.5). At each word
    boundary its next token (a space) starts the nudger's next word, so it takes over."""
    script = "Yes it is so and so it is now done here"
    text, run, _ = await run_scripted(script, script, 0.3, 0.5)
    assert text == script
    sources = [s["source"] for s in run.extras["spans"]]
    assert "base" in sources and run.stats["base_tokens_kept"] > 0
    # the base wrote what the nudger had written, so each round's chunk goes on from the
    # last one's rest (served again, not decoded again): one session, no chunk re-decoded
    decoded = run.stats["engine_generated_tokens"]["nudger"]
    assert run.stats["rounds"] > 5 and run.stats["engine_requests"]["nudger"] == 1
    assert decoded <= len(script) + 16 < 16 * run.stats["rounds"]


@pytest.mark.asyncio
async def test_max_rounds_ends_the_answer():
    script = "Yes it is so and so it is now done here"
    text, run, _ = await run_scripted(script, script, 0.3, 0.5, params={"max_rounds": 2})
    assert run.stats["rounds"] == 2 and run.stats["end"] == "max_rounds"
    assert script.startswith(text) and text != script


@pytest.mark.asyncio
async def test_a_certain_base_that_loops_is_cut_at_its_first_repeated_chunk():
    loop = "ab cd ef " * 30
    _, run, _ = await run_scripted("Go on now, go on now, go on now", loop, 0.99, 0.4,
                                      max_tokens=120)
    base_spans = [s["text"] for s in run.extras["spans"] if s["source"] == "base"]
    # a 16-token chunk is dropped as soon as the round's text already holds it
    assert base_spans and max(len(s) for s in base_spans) < 16 + 15 + 9 + 1
    assert run.stats["rounds"] > 1


@pytest.mark.parametrize("messages", [
    [], [{"role": "system", "content": "Be kind."}],
    [{"role": "assistant", "content": "Hello"}],
    [{"role": "system", "content": "Be kind."}, {"role": "assistant", "content": "Hi"}]])
def test_conversations_without_a_question_are_400_not_500(client, messages):
    nudging = {"strategy": "nudging", "nudging_model": "chat"}
    for model, alignment, status in (("base", nudging, 400),
                                     ("base", "vanilla", 400 if not messages else 200),
                                     ("chat", "vanilla", 400 if not messages else 200)):
        reply = client.post("/v1/chat/completions", json={
            "model": model, "messages": messages, "max_tokens": 4, "alignment": alignment})
        assert reply.status_code == status, (model, alignment, reply.text)
        if status == 400:
            assert reply.json()["error"]["param"] == "messages"


@pytest.mark.parametrize(("field", "value"), [
    ("stop_token_ids", [5]), ("ignore_eos", True), ("min_tokens", 3)])
def test_token_level_options_are_refused_by_name(client, field, value):
    reply = client.post("/v1/chat/completions", json={
        "model": "base", "messages": MESSAGES, "max_tokens": 4, field: value,
        "alignment": {"strategy": "nudging", "nudging_model": "chat"}})
    assert reply.status_code == 400 and reply.json()["error"]["param"] == field


def test_usage_reports_the_base_prompts_own_cache_hits(client, engines):
    first = nudge(client, 0.35)
    again = nudge(client, 0.35)
    prompt = again["usage"]["prompt_tokens"]
    base_prompt = len(engines["base"].tokenize(render_plain(
        [Message("user", "Tell me something.")]), add_special_tokens=True))
    assert prompt == base_prompt == first["usage"]["prompt_tokens"]
    # the base's first request holds the prompt and the first nudge word: all of the
    # prompt is in whole cached blocks the second time (the nudger's prompt is longer)
    assert again["usage"]["prompt_tokens_details"]["cached_tokens"] == base_prompt


@pytest.mark.parametrize("messages", [
    [], [{"role": "system", "content": "Be kind."}],
    [{"role": "assistant", "content": "Hello"}]])
def test_rain_on_conversations_without_a_question_is_never_a_500(settings, messages):
    from fastapi.testclient import TestClient

    from server.app import build_app
    from tests.unit.conftest import API_KEY

    engines = {"chat": StandInEngine("chat", max_model_len=4096)}
    with TestClient(build_app(settings.model_copy(update={"default_nudging_model": None}),
                              engines), headers={"Authorization": f"Bearer {API_KEY}"}) as rain:
        reply = rain.post("/v1/chat/completions", json={
            "model": "chat", "messages": messages, "max_tokens": 2,
            "alignment": {"strategy": "rain", "max_visits": 2, "min_searches": 1}})
    assert reply.status_code == (400 if not messages else 200), reply.text
    if not messages:
        assert reply.json()["error"]["param"] == "messages"
