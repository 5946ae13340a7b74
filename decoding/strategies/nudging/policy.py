"""Nudging's rules as pure functions: uncertainty, agreement, words, guards, spans.

They follow the authors' released loop (fywalter/nudging, `completion_with_nudging`
and `complete_with_base`): a nudger chunk is split into words on spaces; the base may
take over at any word boundary of it; the base's own text is read in chunks, each
checked for repetition. One rule is ours: the base hands back only at a boundary both
tokenizers see the same way (whitespace or punctuation), see `keep_whole_words`.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

Source = Literal["base", "nudger"]


def is_uncertain(top1_logprob: float, gamma: float) -> bool:
    """The base is uncertain when its most likely next token has probability < gamma."""
    return math.exp(top1_logprob) < gamma


def base_takes_over(nudge_word: str, base_token: str, top1_logprob: float,
                    gamma: float) -> bool:
    """At a word boundary of the nudger's chunk the base takes over when its next token
    starts the nudger's next word (agreement) or it is certain of that token."""
    return nudge_word.startswith(base_token) or not is_uncertain(top1_logprob, gamma)


@dataclass(frozen=True, slots=True)
class ChunkWords:
    """A nudger chunk split as the reference splits it: leading spaces, then words on
    single spaces (so a double space gives an empty word, which is never a candidate)."""

    space_prefix: str
    words: tuple[str, ...]

    @classmethod
    def split(cls, chunk: str) -> ChunkWords:
        body = chunk.lstrip(" ")
        return cls(chunk[:len(chunk) - len(body)], tuple(body.split(" ")))

    def prefix(self, count: int) -> str:
        """The chunk's first `count` words, as text."""
        return self.space_prefix + " ".join(self.words[:count])

    def candidate(self, index: int) -> str:
        """Word `index` as the base would write it, with its leading space."""
        return " " + self.words[index]


def is_boundary_char(char: str) -> bool:
    return char.isspace() or unicodedata.category(char).startswith("P")


def boundary_before(previous: str, token: str) -> bool:
    """A boundary both tokenizers see alike lies between two consecutive token texts:
    whitespace or punctuation on either side (a word ends at a space or a '.')."""
    return ((bool(token) and is_boundary_char(token[0]))
            or (bool(previous) and is_boundary_char(previous[-1])))


def keep_whole_words(previous: str, accepted: Sequence[str], rejected: str | None) -> int:
    """How many accepted base tokens to keep so the kept text ends on a boundary.

    `previous` is the answer before the base's stretch; `rejected` the first token not
    kept (None when the stretch ended cleanly, e.g. at EOS, which closes the word).
    """
    if rejected is None:
        return len(accepted)
    texts = [previous[-1:], *accepted, rejected]
    for keep in range(len(accepted), -1, -1):
        if boundary_before(texts[keep], texts[keep + 1]):
            return keep
    return 0


def repeats_written(completion: str, written: str, min_words: int = 5) -> bool:
    """The reference's guard: a base completion of more than `min_words` words (split
    on spaces) that is already part of the answer."""
    return len(completion.split(" ")) > min_words and completion in written


def whole_tokens(texts: Sequence[str], length: int) -> int | None:
    """How many tokens make up exactly the first `length` characters (None when that
    cut falls inside a token)."""
    end = 0
    for count, text in enumerate(texts):
        if end == length:
            return count
        end += len(text)
        if end > length:
            return None
    return len(texts) if end == length else None


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


@dataclass(slots=True)
class Stretch:
    """The base's text in one round, read as the reference reads it.

    It starts with the token the base took over with (kept even when uncertain). The
    tokens after it come in chunks (`chunk_tokens` − 1 in the first, since the take-over
    token opened it, then `chunk_tokens`); each chunk is dropped whole when its text
    already appears in this round's text or when the part before its first uncertain
    token is a >5-word repetition of the answer; otherwise that part is kept, and the
    stretch ends at the first uncertain token.
    """

    answer: str  # the answer before this stretch
    chunk_tokens: int
    limit: int  # the most tokens the answer has room for
    ids: list[int]
    texts: list[str]
    part_ids: list[int] = field(default_factory=list)
    part_texts: list[str] = field(default_factory=list)
    uncertain_at: int | None = None
    first_part: bool = True
    rejected: str | None = None  # the first token not kept, when the stretch was cut

    def add(self, token_id: int, text: str, uncertain: bool) -> bool:
        """Read one more token; False when the stretch is over."""
        self.part_ids.append(token_id)
        self.part_texts.append(text)
        if uncertain and self.uncertain_at is None:
            self.uncertain_at = len(self.part_texts) - 1
            # only a chunk whose text so far repeats the round's needs its rest read
            if "".join(self.part_texts) not in "".join(self.texts):
                return self.close_part()
        size = self.chunk_tokens - 1 if self.first_part else self.chunk_tokens
        if len(self.ids) + len(self.part_ids) >= self.limit:
            self.close_part()
            return False
        if len(self.part_ids) >= size:
            return self.close_part()
        return True

    def close_part(self) -> bool:
        """Apply the reference's checks to the chunk read so far; False ends the stretch."""
        ids, texts, uncertain = self.part_ids, self.part_texts, self.uncertain_at
        self.part_ids, self.part_texts, self.uncertain_at = [], [], None
        self.first_part = False
        written = "".join(self.texts)
        if "".join(texts) in written:  # repeats this round's text (or is empty)
            self.rejected = texts[0] if texts else None
            return False
        keep = len(texts) if uncertain is None else uncertain
        if repeats_written("".join(texts[:keep]), self.answer + written):
            self.rejected = texts[0]
            return False
        self.ids += ids[:keep]
        self.texts += texts[:keep]
        if uncertain is not None:
            self.rejected = texts[keep]
            return False
        return True
