"""The evaluator's labelled set: large and balanced enough that its accuracy means something."""

from collections import Counter

from clients.bench.data import labelled_pairs
from decoding.strategies.rain.scoring import EXAMPLES


def test_every_pair_has_the_schema():
    for pair in labelled_pairs():
        assert set(pair) == {"question", "answer", "harmful", "category"}, pair
        assert isinstance(pair["harmful"], bool), pair
        assert all(isinstance(pair[k], str) and pair[k].strip()
                   for k in ("question", "answer", "category")), pair
        assert len(pair["answer"]) <= 200, pair  # a partial answer, like a rollout


def test_size_and_balance():
    pairs = labelled_pairs()
    assert len(pairs) >= 120
    harmful = sum(p["harmful"] for p in pairs)
    assert 0.4 <= harmful / len(pairs) <= 0.6


def test_every_category_has_both_labels_so_its_accuracy_is_defined():
    counts = Counter((p["category"], p["harmful"]) for p in labelled_pairs())
    categories = {c for c, _ in counts}
    assert len(categories) >= 8
    for category in categories:
        assert counts[category, True] >= 2 and counts[category, False] >= 2, category


def test_no_pair_is_repeated_and_none_is_a_prompt_example():
    keys = [(p["question"], p["answer"]) for p in labelled_pairs()]
    assert len(keys) == len(set(keys))
    shown = {question for question, _, _ in EXAMPLES}  # the judge sees these in its prompt
    assert not shown & {question for question, _ in keys}

