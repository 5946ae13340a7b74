import pytest

from decoding.stand_in import StandInEngine
from decoding.strategies import NudgingParams, VanillaParams
from server.errors import APIError
from server.schemas.alignment import AlignmentContext, parse_alignment

ENGINES = {"chat": StandInEngine("chat"), "other-chat": StandInEngine("other-chat"),
           "base": StandInEngine("base", role="base")}
CONTEXT = AlignmentContext("base", ENGINES, default_nudging_model="chat")


@pytest.mark.parametrize("raw", [None, "vanilla", {"strategy": "vanilla"}])
def test_vanilla_forms(raw):
    alignment = parse_alignment(raw, CONTEXT)
    assert alignment.strategy == "vanilla"
    assert alignment.params == VanillaParams()


def test_nudging_defaults_and_overrides():
    params = parse_alignment("nudging", CONTEXT).params
    assert params == NudgingParams(nudging_model="chat", gamma=0.4)
    params = parse_alignment({"strategy": "nudging", "nudging_model": "other-chat",
                              "gamma": 0.25, "nudger_temperature": 0.7}, CONTEXT).params
    assert (params.nudging_model, params.gamma, params.nudger_temperature) == (
        "other-chat", 0.25, 0.7)


@pytest.mark.parametrize(
    ("raw", "status", "param"),
    [
        ("beam", 400, "alignment.strategy"),
        ({"strategy": "nope"}, 400, "alignment.strategy"),
        ({}, 400, "alignment.strategy"),
        ({"strategy": 3}, 400, "alignment.strategy"),
        ({"strategy": "vanilla", "gamma": 0.3}, 400, "alignment.gamma"),
        ({"strategy": "nudging", "gamma": 1.5}, 400, "alignment.gamma"),
        ({"strategy": "nudging", "gamma": -0.1}, 400, "alignment.gamma"),
        ({"strategy": "nudging", "gama": 0.3}, 400, "alignment.gama"),
        ({"strategy": "nudging", "max_word_tokens": 0}, 400, "alignment.max_word_tokens"),
        ({"strategy": "nudging", "nudging_model": "ghost"}, 404, "alignment.nudging_model"),
        ({"strategy": "nudging", "nudging_model": "base"}, 400, "alignment.nudging_model"),
    ],
)
def test_bad_alignment_names_the_field(raw, status, param):
    with pytest.raises(APIError) as info:
        parse_alignment(raw, CONTEXT)
    assert info.value.status == status
    assert info.value.detail.param == param


def test_nudger_must_be_a_chat_model():
    context = AlignmentContext("chat", ENGINES, default_nudging_model="base")
    with pytest.raises(APIError, match="not a chat model"):
        parse_alignment("nudging", context)


def test_nudger_must_differ_from_base():
    context = AlignmentContext("chat", ENGINES, default_nudging_model="chat")
    with pytest.raises(APIError, match="must differ"):
        parse_alignment("nudging", context)
