"""The shared text rules and seed derivation."""

import pytest

from decoding.seeds import SEED_LIMIT, choice_seed, derive_seed, engine_seed
from decoding.text import find_stop, stop_safe_length, tokens_before


@pytest.mark.parametrize(("text", "stops", "expected"), [
    ("Say Hello", ["Hello world"], 4),   # "Hello" may become the stop
    ("Say Hello w", ["Hello world"], 4),
    ("Say Hello x", ["Hello world"], 11),
    (" .n", ["nn"], 2),                  # a stop's first letter at the end is held
    ("abc", [], 3),
    ("abc", [""], 3),
    ("ab", ["b", "abc"], 0),             # the longest possible stop decides
])
def test_stop_safe_length(text, stops, expected):
    assert stop_safe_length(text, stops) == expected


def test_find_stop_earliest():
    assert find_stop("a stop b halt", ["halt", "stop"]) == 2
    assert find_stop("nothing", ["x", ""]) is None


def test_tokens_before():
    assert tokens_before(["ab", "cd", "ef"], 3) == 1
    assert tokens_before(["ab", "cd"], 4) == 2


def test_derived_seeds_differ_by_place_and_repeat():
    seeds = {derive_seed(3, "chain", i) for i in range(10)}
    assert len(seeds) == 10
    assert derive_seed(3, "chain", 1) == derive_seed(3, "chain", 1)
    assert derive_seed(4, "chain", 1) != derive_seed(3, "chain", 1)
    assert derive_seed(None, "chain", 1) is None
    assert all(0 <= s < SEED_LIMIT for s in seeds)
    assert derive_seed(2**63 - 1, "x") < SEED_LIMIT


def test_choice_seed_matches_vllm_rule():
    assert choice_seed(7, 0) == 7 and choice_seed(7, 2) == 9 and choice_seed(None, 1) is None


@pytest.mark.parametrize(("seed", "wrapped"), [
    (0, 0), (-1, -1), (2**63 - 1, 2**63 - 1), (-(2**63), -(2**63)),
    (2**63, -(2**63)), (2**63 + 5, -(2**63) + 5), (2**64 + 3, 3), (None, None),
])
def test_engine_seed_wraps_into_int64(seed, wrapped):
    assert engine_seed(seed) == wrapped


def test_choice_seed_never_leaves_int64():
    top = 2**63 - 1
    assert [choice_seed(top, i) for i in range(3)] == [top, -(2**63), -(2**63) + 1]
