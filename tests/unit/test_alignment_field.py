import pytest

from decoding.stand_in import StandInEngine
from decoding.strategies import NudgingParams, VanillaParams
from server.config import Settings
from server.errors import APIError
from server.schemas.alignment import AlignmentContext, parse_alignment

ENGINES = {"chat": StandInEngine("chat"), "other-chat": StandInEngine("other-chat"),
           "base": StandInEngine("base", role="base")}
SETTINGS = Settings(models=[], default_nudging_model="chat", rain_max_visits=100)
CONTEXT = AlignmentContext("base", ENGINES, SETTINGS)


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
        ({"strategy": "nudging", "chunk_tokens": 0}, 400, "alignment.chunk_tokens"),
        ({"strategy": "nudging", "nudging_model": "ghost"}, 404, "alignment.nudging_model"),
        ({"strategy": "nudging", "nudging_model": "base"}, 400, "alignment.nudging_model"),
        ({"strategy": "rain", "max_visits": 101}, 400, "alignment.max_visits"),
        ({"strategy": "rain", "c": -1}, 400, "alignment.c"),
        ({"strategy": "rain", "candidates": 21}, 400, "alignment.candidates"),
        ({"strategy": "rain", "evaluation": "vibes"}, 400, "alignment.evaluation"),
        ({"strategy": "rain", "token_set_lengths": [1, 0]}, 400,
         "alignment.token_set_lengths"),
        ({"strategy": "rain", "evaluator_model": "ghost"}, 404, "alignment.evaluator_model"),
        ({"strategy": "rain", "parallel_searches": 17}, 400, "alignment.parallel_searches"),
    ],
)
def test_bad_alignment_names_the_field(raw, status, param):
    with pytest.raises(APIError) as info:
        parse_alignment(raw, CONTEXT)
    assert info.value.status == status
    assert info.value.detail.param == param


def test_rain_defaults_are_the_references():
    params = parse_alignment("rain", CONTEXT).params
    assert (params.c, params.max_visits, params.min_visits, params.value_threshold,
            params.candidates, params.token_set_lengths, params.evaluation) == (
        2.0, 50, 6, 0.8, 10, (1, 2, 4, 10), "votes")
    assert params.max_engine_calls == SETTINGS.rain_max_engine_calls


def test_nudger_must_be_a_chat_model():
    context = AlignmentContext("chat", ENGINES, SETTINGS.model_copy(
        update={"default_nudging_model": "base"}))
    with pytest.raises(APIError, match="not a chat model"):
        parse_alignment("nudging", context)


def test_nudger_must_differ_from_base():
    context = AlignmentContext("chat", ENGINES, SETTINGS)
    with pytest.raises(APIError, match="must differ"):
        parse_alignment("nudging", context)
