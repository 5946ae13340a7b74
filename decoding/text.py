"""Text rules every strategy shares: stop strings, and which text is safe to send."""

from __future__ import annotations

from collections.abc import Sequence


def find_stop(text: str, stops: Sequence[str]) -> int | None:
    """Where the earliest stop string starts in `text`, if any."""
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(hits) if hits else None


def stop_safe_length(text: str, stops: Sequence[str]) -> int:
    """How much of `text` no later text can cut: the text before the earliest suffix of
    it that begins some stop string (text after it may still complete that stop)."""
    for start in range(max(0, len(text) - max((len(s) for s in stops), default=0) + 1),
                       len(text)):
        tail = text[start:]
        if any(s.startswith(tail) for s in stops if s):
            return start
    return len(text)


def tokens_before(texts: Sequence[str], cut: int) -> int:
    """How many whole tokens fit in the first `cut` characters of their concatenation."""
    end = 0
    for count, text in enumerate(texts):
        end += len(text)
        if end > cut:
            return count
    return len(texts)
