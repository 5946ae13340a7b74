import pytest

from decoding.strategies import VanillaParams
from server.errors import APIError
from server.schemas.alignment import parse_alignment


@pytest.mark.parametrize("raw", [None, "vanilla", {"strategy": "vanilla"}])
def test_vanilla_forms(raw):
    alignment = parse_alignment(raw)
    assert alignment.strategy == "vanilla"
    assert alignment.params == VanillaParams()


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        ("beam", "alignment.strategy"),
        ({"strategy": "nope"}, "alignment.strategy"),
        ({}, "alignment.strategy"),
        ({"strategy": 3}, "alignment.strategy"),
        ({"strategy": "vanilla", "gamma": 0.3}, "alignment.gamma"),
    ],
)
def test_bad_alignment_names_the_field(raw, param):
    with pytest.raises(APIError) as info:
        parse_alignment(raw)
    assert info.value.status == 400
    assert info.value.detail.param == param
