"""Nudging's rules as pure functions: uncertainty, word boundaries, guards, spans.

Words are whitespace-delimited (the reference splits on spaces). A handoff between the
models happens only at a word boundary, so each model's tokenizer sees whole words.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Source = Literal["base", "nudger"]


def is_uncertain(top1_logprob: float, gamma: float) -> bool:
    """The base is uncertain when its most likely next token has probability < gamma."""
    return math.exp(top1_logprob) < gamma


def boundary_before(previous: str, token: str) -> bool:
    """True when a word boundary lies between two consecutive token texts."""
    return token[:1].isspace() or previous[-1:].isspace()


def word_done(word: Sequence[str], next_token: str) -> bool:
    """The nudger's word is complete once the next token starts a new word."""
    text = "".join(word)
    return bool(text.strip()) and boundary_before(text, next_token)


def keep_whole_words(previous: str, accepted: Sequence[str], rejected: str | None) -> int:
    """How many accepted base tokens to keep so the kept text ends on a word boundary.

    `previous` is the answer before the base run; `rejected` the first token not
    accepted (None when the run ended cleanly, e.g. at EOS, which closes the word).
    """
    if rejected is None:
        return len(accepted)
    texts = [previous[-1:], *accepted, rejected]
    for keep in range(len(accepted), -1, -1):
        if boundary_before(texts[keep], texts[keep + 1]):
            return keep
    return 0


def find_stop(text: str, stops: Sequence[str]) -> int | None:
    """Where the earliest stop string starts in `text`, if any."""
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(hits) if hits else None


def tokens_before(texts: Sequence[str], cut: int) -> int:
    """How many whole tokens fit in the first `cut` characters of their concatenation."""
    end = 0
    for count, text in enumerate(texts):
        end += len(text)
        if end > cut:
            return count
    return len(texts)


def repeats_written(run: str, written: str, min_words: int = 5) -> bool:
    """The reference's guard: a base run of more than `min_words` words already written."""
    return len(run.split(" ")) > min_words and run in written


@dataclass(slots=True)
class RepeatGuard:
    """Stop when the same nudge comes `limit` more times in a row (reference: 3)."""

    limit: int
    last: str | None = None
    repeats: int = 0

    def exhausted(self, nudge: str) -> bool:
        if nudge == self.last:
            self.repeats += 1
        else:
            self.last, self.repeats = nudge, 0
        return self.repeats >= self.limit


@dataclass(frozen=True, slots=True)
class Span:
    source: Source
    text: str


def merge_spans(spans: Sequence[Span]) -> list[Span]:
    """Adjacent spans of the same source joined; empty spans dropped."""
    merged: list[Span] = []
    for span in spans:
        if not span.text:
            continue
        if merged and merged[-1].source == span.source:
            merged[-1] = Span(span.source, merged[-1].text + span.text)
        else:
            merged.append(span)
    return merged
