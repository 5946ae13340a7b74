"""Every engine request's seed, in one place.

A strategy that makes many engine requests for one client request must not give them a
shared seed (identical samples) nor one read from a counter (the order coroutines start
in is not the order they were written in). Each request's seed is a hash of the
client's seed and *where the request sits* in the strategy: its choice, its purpose,
its place in the search. The same request then gets the same seed in every run.
"""

from __future__ import annotations

import hashlib

#: vLLM takes a signed 64-bit seed; derived seeds stay below this bound.
SEED_LIMIT = 2**63


def derive_seed(seed: int | None, *where: str | int) -> int | None:
    """A seed for the engine request at `where` (None when the client gave none)."""
    if seed is None:
        return None
    key = repr((seed, *where)).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") % SEED_LIMIT


def choice_seed(seed: int | None, index: int) -> int | None:
    """Choice `index` of an `n > 1` request samples with `seed + index`, as vLLM's own
    parallel sampling does (so vanilla matches vLLM's server), wrapped into int64."""
    return None if seed is None else engine_seed(seed + index)


def engine_seed(seed: int | None) -> int | None:
    """`seed` wrapped into vLLM's signed 64-bit range (two's complement), so arithmetic
    on a client's seed near the bound never reaches the engine as an overflow."""
    return None if seed is None else (seed + SEED_LIMIT) % (2 * SEED_LIMIT) - SEED_LIMIT
