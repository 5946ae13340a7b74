"""Bounded admission per served model: beyond the limit, 429 with Retry-After.

A reservation is taken before the first byte (so the status can still be 429) and
released when the decoding ends, or, should a stream never start, when it is dropped.
"""

from __future__ import annotations

import weakref
from collections import Counter

from server.errors import APIError


class Admission:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight: Counter[str] = Counter()

    def reserve(self, model: str, owner: object) -> None:
        if self.in_flight[model] >= self.limit:
            raise APIError(429, f"Too many requests in flight for {model!r} "
                           f"(limit {self.limit}); retry shortly.", type="rate_limit_error",
                           code="rate_limit_exceeded", headers={"Retry-After": "1"})
        self.in_flight[model] += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.in_flight[model] -= 1

        owner.release = release  # type: ignore[attr-defined]
        weakref.finalize(owner, release)
