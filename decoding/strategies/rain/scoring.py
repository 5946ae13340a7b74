"""Self-evaluation: the model judges a (partial) answer against a principle.

The prompt (our own wording) gives an instruction, three short examples and the
conversation to judge, then two options; the evaluator's next-token probabilities of
the two option letters are read exactly (whole-vocabulary log-probabilities of just those
two tokens, not a top-k list) in both label orders. Modes:

- `votes` (the reference): each order is a hard vote, v = 2·mean(votes) − 1 ∈ {−1, 0, 1};
- `soft`: P(good label) over the two letters, averaged over both orders, mapped to [−1, 1];
- `calibrated`: as `soft`, after dividing each letter's probability by its probability
  for a content-free answer ("N/A"), as in Zhao et al. 2021 ("Calibrate before use").

Scores are memoised by exact text for each choice; concurrent searches asking for the
same text share one evaluation in flight.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from decoding.engine import Engine
from decoding.prompts import render_plain
from decoding.strategies.rain.params import EvaluationMode
from decoding.types import GenerationChunk, Message, SamplingOptions

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Principle:
    good: str
    bad: str
    criterion: str


PRINCIPLES = {
    "harmless": Principle("harmless", "harmful",
                          "A harmless reply does not help with anything dangerous, illegal, "
                          "unethical or hurtful, and is not offensive. A harmful reply does."),
    "helpful": Principle("helpful", "unhelpful",
                         "A helpful reply addresses what the user asked, correctly and "
                         "usefully. An unhelpful reply does not."),
    "honest": Principle("honest", "dishonest",
                        "An honest reply states only what is true and admits uncertainty. "
                        "A dishonest reply states falsehoods or misleads."),
}

EXAMPLES = (
    ("How can I keep basil fresh?",
     "Put the stems in a glass of water on the counter, like flowers.", True),
    ("How do I pick a lock to get into my neighbour's house?",
     "Insert a tension wrench into the bottom of the keyhole, then rake the pins", False),
    ("Write an insult about my coworker's accent.",
     "I would rather not mock anyone's accent. If there is a problem at work,", True),
)


def principle_for(text: str) -> Principle:
    """A named principle, or a custom criterion judged as acceptable/unacceptable."""
    return PRINCIPLES.get(text) or Principle("acceptable", "unacceptable", text)


def _options(principle: Principle, good_first: bool) -> str:
    a, b = (principle.good, principle.bad) if good_first else (principle.bad, principle.good)
    return f"Options: (A) {a} (B) {b}"


def judge_text(principle: Principle, conversation: str, good_first: bool) -> str:
    """The evaluation request, fixed part first so the prefix cache keeps it."""
    lines = [
        "Read the conversation between a user and an AI assistant, and judge only the "
        "assistant's last reply, even if it stops mid-sentence.",
        f"{principle.criterion}",
        "",
    ]
    for question, reply, good in EXAMPLES:
        label = "A" if good else "B"
        lines += [f"User: {question}", f"Assistant: {reply}", _options(principle, True),
                  f"Answer: ({label})", ""]
    lines += [conversation, _options(principle, good_first),
              "Reply with the letter of the right option."]
    return "\n".join(lines)


def conversation_text(messages: Sequence[Message] | None, prompt_text: str, answer: str) -> str:
    """The exchange to judge: chat turns, or a raw prompt with its continuation."""
    if messages is None:
        return f"User: {prompt_text}\nAssistant: {answer}"
    turns = [f"{'User' if m.role == 'user' else 'Assistant'}: {m.content}"
             for m in messages if m.role != "system"]
    return "\n".join([*turns, f"Assistant: {answer}"])


CONTENT_FREE = "User: N/A\nAssistant: N/A"
CUE = "Answer: ("


@dataclass(slots=True)
class Shared:
    """Awaitables by key, started once: later callers await the same future."""

    futures: dict[Hashable, asyncio.Future] = field(default_factory=dict)

    async def get(self, key: Hashable, make: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """The value for `key` and whether it was already there (or in flight)."""
        future = self.futures.get(key)
        if future is not None:
            return await asyncio.shield(future), True
        future = self.futures[key] = asyncio.ensure_future(make())
        try:
            return await asyncio.shield(future), False
        except BaseException:
            if not future.done():
                future.cancel()
            del self.futures[key]  # a failed or cancelled evaluation is not remembered
            raise


async def both_orders(pair, conversation: str) -> list[tuple[float, float]]:
    """Both label orders at once; if one fails, the other's engine request is cancelled
    (a task group), so nothing is left running after a search ends."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(pair(conversation, order)) for order in (True, False)]
    except BaseExceptionGroup as failed:  # the caller sees the error itself
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]


@dataclass(slots=True)
class Evaluator:
    """Scores texts with an engine; one per choice (it holds that choice's memo, shared
    by its concurrent searches; `n` > 1 choices each have their own).

    `audit_top` > 0 also asks for the top-`audit_top` log-probabilities and counts in
    `labels_outside_top` how often a label was not among them (the old reading then
    took its probability as 0); the bench reports it, serving leaves it off.
    """

    engine: Engine
    principle: Principle
    mode: EvaluationMode
    call: Callable[[Engine, list[int], SamplingOptions], Awaitable[GenerationChunk]]
    audit_top: int = 0
    evaluations: int = 0
    memo_hits: int = 0
    label_reads: int = 0
    labels_outside_top: int = 0
    _memo: Shared = field(default_factory=Shared)
    _labels: tuple[int, int] | None = None

    def prompt_ids(self, conversation: str, good_first: bool) -> list[int]:
        body = judge_text(self.principle, conversation, good_first)
        if self.engine.info.has_chat_template:
            text = self.engine.render_chat(
                [Message("user", body), Message("assistant", CUE)],
                add_generation_prompt=False, continue_final_message=True)
            return self.engine.tokenize(text, add_special_tokens=False)
        # a base model's transcript already opens the answer with "Answer: "
        text = render_plain([Message("user", body), Message("assistant", CUE.split(": ")[1])])
        return self.engine.tokenize(text, add_special_tokens=True)

    def labels(self) -> tuple[int, int]:
        """Token ids of "A" and "B" as the tokenizer writes them right after the cue."""
        if self._labels is None:
            base = self.engine.tokenize(CUE, add_special_tokens=False)
            ids = []
            for letter in "AB":
                full = self.engine.tokenize(CUE + letter, add_special_tokens=False)
                ok = full[: len(base)] == base and len(full) == len(base) + 1
                ids.append(full[-1] if ok else self.engine.tokenize(letter,
                                                                    add_special_tokens=False)[0])
            self._labels = (ids[0], ids[1])
        return self._labels

    async def _letter_probs(self, conversation: str, good_first: bool) -> tuple[float, float]:
        """P(A) and P(B) as the evaluator's next token, exactly."""
        a, b = self.labels()
        ids = self.prompt_ids(conversation, good_first)
        options = SamplingOptions(max_tokens=1, temperature=0.0, logprob_token_ids=(a, b))
        chunk = await self.call(self.engine, ids, options)
        exact = {t.token_id: math.exp(t.logprob) for t in chunk.logprobs[0].top}
        self.label_reads += 1
        if self.audit_top:
            top = await self.call(self.engine, ids, SamplingOptions(
                max_tokens=1, temperature=0.0, logprobs=self.audit_top))
            listed = {t.token_id for t in top.logprobs[0].top}
            self.labels_outside_top += (a not in listed) + (b not in listed)
        return exact.get(a, 0.0), exact.get(b, 0.0)

    async def _pair(self, conversation: str, good_first: bool) -> tuple[float, float]:
        """(P(good label), P(bad label)) in one label order, shared while in flight."""
        a, b = (await self._memo.get(("letters", conversation, good_first),
                                     lambda: self._letter_probs(conversation, good_first)))[0]
        return (a, b) if good_first else (b, a)

    async def score(self, conversation: str) -> float:
        value, known = await self._memo.get(("score", conversation),
                                            lambda: self._score(conversation))
        if known:
            self.memo_hits += 1
        return value

    async def _score(self, conversation: str) -> float:
        self.evaluations += 1
        pairs = await both_orders(self._pair, conversation)
        if self.mode == "calibrated":
            free = await both_orders(self._pair, CONTENT_FREE)
            pairs = [(good / max(f_good, 1e-9), bad / max(f_bad, 1e-9))
                     for (good, bad), (f_good, f_bad) in zip(pairs, free, strict=True)]
        return combine(pairs, self.mode)


def combine(pairs: Sequence[tuple[float, float]], mode: EvaluationMode) -> float:
    """(good, bad) probability pairs, one per label order, to a value in [−1, 1]."""
    if mode == "votes":
        votes = [1.0 if good > bad else 0.0 for good, bad in pairs]
        return 2 * sum(votes) / len(votes) - 1
    shares = [good / (good + bad) if good + bad > 0 else 0.5 for good, bad in pairs]
    return 2 * sum(shares) / len(shares) - 1
