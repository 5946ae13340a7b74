"""Choosing the strategy: body, then the X-Alignment header, then a MODEL@STRATEGY alias."""

from __future__ import annotations

import json

import openai
import pytest
from fastapi.testclient import TestClient

from decoding.stand_in import StandInEngine
from server.app import build_app
from server.errors import APIError
from server.selection import select
from tests.unit.conftest import API_KEY
from tests.unit.test_server_stand_in import assert_error

MESSAGES = [{"role": "user", "content": "Hello"}]
RAIN = {"strategy": "rain", "max_visits": 2, "min_searches": 1, "rollout_max_tokens": 2}
ENGINES = {"chat": StandInEngine("chat"), "base": StandInEngine("base", role="base")}


@pytest.mark.parametrize(("model", "body", "header", "expected"), [
    ("chat", None, None, ("chat", None, "default")),
    ("chat", "rain", None, ("chat", "rain", "body")),
    ("chat", None, '{"strategy": "rain", "c": 1}', ("chat", {"strategy": "rain", "c": 1},
                                                    "header")),
    ("chat", None, "rain", ("chat", "rain", "header")),
    ("chat", None, '"rain"', ("chat", "rain", "header")),
    ("base@nudging", None, None, ("base", "nudging", "alias")),
    ("base@nudging", None, '{"gamma": 0.2}', ("base", {"strategy": "nudging", "gamma": 0.2},
                                              "alias")),
    ("base@nudging", {"gamma": 0.3}, "nudging", ("base", {"strategy": "nudging", "gamma": 0.3},
                                                 "header")),
    ("chat@rain", {"strategy": "rain", "c": 1}, "rain", ("chat", {"strategy": "rain", "c": 1},
                                                         "body")),
    ("chat", {"strategy": "rain", "c": 1}, '{"strategy": "rain", "c": 1}',
     ("chat", {"strategy": "rain", "c": 1}, "body")),
])
def test_precedence(model, body, header, expected):
    selection = select(model, body, header, ENGINES)
    assert (selection.model, selection.alignment, selection.source) == expected


@pytest.mark.parametrize(("model", "body", "header", "words"), [
    ("chat", "rain", "vanilla", ["body", "X-Alignment", "'rain'", "'vanilla'"]),
    ("chat@rain", None, "nudging", ["X-Alignment", "alias", "'nudging'", "'rain'"]),
    ("base@nudging", "vanilla", None, ["body", "alias", "'vanilla'", "'nudging'"]),
    ("chat", {"strategy": "rain", "c": 1}, '{"strategy": "rain", "c": 2}',
     ["body", "X-Alignment", "differ"]),
])
def test_conflicts_name_both(model, body, header, words):
    with pytest.raises(APIError) as caught:
        select(model, body, header, ENGINES)
    assert caught.value.status == 400 and caught.value.detail.code == "alignment_conflict"
    assert all(word in caught.value.detail.message for word in words)


@pytest.mark.parametrize(("model", "header", "param"), [
    ("chat@beam", None, "model"),
    ("chat", "[1, 2]", "X-Alignment"),
    ("chat", "17", "X-Alignment"),
])
def test_bad_alias_or_header(model, header, param):
    with pytest.raises(APIError) as caught:
        select(model, None, header, ENGINES)
    assert caught.value.detail.param == param


def test_a_served_id_with_an_at_sign_is_not_an_alias():
    engines = ENGINES | {"team@rain": StandInEngine("team@rain")}
    assert select("team@rain", None, None, engines).model == "team@rain"
    assert select("nobody@rain", None, None, engines).model == "nobody@rain"  # then a 404


class TemplateRefusesAssistant(StandInEngine):
    """A chat template that cannot continue an assistant turn (RAIN's judge prompt)."""

    def render_chat(self, messages, *, add_generation_prompt=True,
                    continue_final_message=False):
        if messages[-1].role == "assistant":
            raise ValueError("this template only ends on a user turn")
        return super().render_chat(messages, add_generation_prompt=add_generation_prompt)


@pytest.fixture
def app_client(settings):
    engines = {"chat": StandInEngine("chat", max_model_len=4096),
               "base": StandInEngine("base", role="base", max_model_len=4096),
               "picky": TemplateRefusesAssistant("picky", max_model_len=4096)}
    with TestClient(build_app(settings, engines),
                    headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        yield client


@pytest.fixture
def sdk(app_client):
    return openai.OpenAI(api_key=API_KEY, base_url="http://testserver/v1",
                         http_client=app_client, _strict_response_validation=True)


@pytest.mark.parametrize(("how", "strategy"), [
    ("header", "rain"), ("header", "nudging"), ("alias", "rain"), ("alias", "nudging"),
    ("alias", "vanilla"), ("body", "rain"),
])
def test_each_source_selects_through_the_sdk(sdk, app_client, how, strategy):
    model = "base" if strategy == "nudging" else "chat"
    params = RAIN if strategy == "rain" else {"strategy": strategy}
    kwargs = {"model": model, "messages": MESSAGES, "max_tokens": 3, "seed": 1}
    if how == "header":
        kwargs["extra_headers"] = {"X-Alignment": json.dumps(params)}
    elif how == "alias":
        kwargs["model"] = f"{model}@{strategy}"
        if strategy == "rain":  # parameters beside an alias come from the header
            kwargs["extra_headers"] = {"X-Alignment": '{"max_visits": 2, "min_searches": 1}'}
    else:
        kwargs["extra_body"] = {"alignment": params}
    raw = sdk.chat.completions.with_raw_response.create(**kwargs)
    reply = raw.parse()
    assert raw.headers["x-alignment-strategy"] == strategy
    assert reply.model_extra["alignment"]["strategy"] == strategy
    assert reply.model_extra["alignment"]["selected_by"] == how
    assert reply.model == kwargs["model"]  # an alias is echoed as asked
    metrics = app_client.get("/metrics").text
    assert f'align_strategy_selections_total{{source="{how}",strategy="{strategy}"}} 1.0' \
        in metrics


def test_stream_and_completions_carry_the_strategy_header(app_client):
    with app_client.stream("POST", "/v1/chat/completions", json={
            "model": "base@nudging", "messages": MESSAGES, "max_tokens": 3,
            "stream": True}) as response:
        assert response.headers["x-alignment-strategy"] == "nudging"
        last = [line for line in response.iter_lines() if line.startswith("data: {")][-1]
    assert '"strategy":"nudging"' in last and '"selected_by":"alias"' in last
    reply = app_client.post("/v1/completions", json={"model": "chat", "prompt": "a",
                                                     "max_tokens": 2},
                            headers={"X-Alignment": "vanilla"})
    assert reply.headers["x-alignment-strategy"] == "vanilla"
    assert reply.json()["alignment"]["selected_by"] == "header"


def test_conflict_through_http_names_both(app_client):
    error = assert_error(app_client.post(
        "/v1/chat/completions", json={"model": "chat", "messages": MESSAGES,
                                      "alignment": "rain"},
        headers={"X-Alignment": '{"strategy": "vanilla"}'}), 400, "alignment",
        code="alignment_conflict")
    assert "X-Alignment" in error["message"] and "body" in error["message"]


def test_models_list_aliases_and_capabilities(app_client):
    cards = {c["id"]: c for c in app_client.get("/v1/models").json()["data"]}
    # chat is the default nudger, so it cannot nudge itself; picky cannot judge for RAIN
    assert cards["chat"]["strategies"] == ["vanilla", "rain"]
    assert "must differ" in cards["chat"]["unavailable"]["nudging"]
    assert cards["base"]["strategies"] == ["vanilla", "nudging", "rain"]
    assert cards["picky"]["strategies"] == ["vanilla", "nudging"]
    assert "evaluator prompt" in cards["picky"]["unavailable"]["rain"]
    aliases = {i: c for i, c in cards.items() if c["parent"] is not None}
    assert set(aliases) == {a for c in cards.values() for a in c["aliases"]}
    assert aliases["base@nudging"] | {"id": "base"} == cards["base"] | {
        "parent": "base", "strategies": ["nudging"], "aliases": [], "unavailable": {}}
    assert app_client.get("/v1/models/base@rain").json()["parent"] == "base"
    error = assert_error(app_client.get("/v1/models/chat@nudging"), 404, "model")
    assert "must differ" in error["message"]


def test_listed_capabilities_are_enforced(app_client):
    body = {"model": "picky", "messages": MESSAGES, "max_tokens": 2}
    assert_error(app_client.post("/v1/chat/completions", json=body | {"alignment": RAIN}),
                 400, "alignment.evaluator_model")
    assert_error(app_client.post("/v1/chat/completions", json=body | {"model": "picky@rain"}),
                 400, "alignment.evaluator_model")
    judged = body | {"alignment": RAIN | {"evaluator_model": "chat"}}
    assert app_client.post("/v1/chat/completions", json=judged).status_code == 200
    assert_error(app_client.post("/v1/chat/completions", json=body | {"model": "chat@nudging"}),
                 400, "alignment.nudging_model")


def test_metrics_per_strategy_histograms(app_client):
    for model, strategy in (("chat", "vanilla"), ("base", "nudging"), ("chat", "rain")):
        body = {"model": f"{model}@{strategy}", "messages": MESSAGES, "max_tokens": 3}
        if strategy == "rain":
            body["alignment"] = RAIN
        assert app_client.post("/v1/chat/completions", json=body).status_code == 200
    samples = {}
    for line in app_client.get("/metrics").text.splitlines():
        if line.startswith(("align_engine_tokens_per_answer_token_",
                            "align_time_to_first_token_seconds_")):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    ratio = "align_engine_tokens_per_answer_token_{}{{strategy=\"{}\"}}"
    for strategy in ("vanilla", "nudging", "rain"):
        assert samples[ratio.format("count", strategy)] == 1
        assert samples[f'align_time_to_first_token_seconds_count{{strategy="{strategy}"}}'] == 1
    assert samples[ratio.format("sum", "vanilla")] == 1.0  # one decoded token per answer token
    assert samples[ratio.format("sum", "nudging")] >= 1  # both models decode for it
    assert samples[ratio.format("sum", "rain")] > 5  # chains, rollouts and judge calls
    body_source = 'align_strategy_selections_total{source="body",strategy="rain"}'
    assert body_source in app_client.get("/metrics").text


@pytest.mark.parametrize(("body", "headers", "param"), [
    ({"alignment": {"strategy": 5}}, {}, "alignment.strategy"),
    ({"alignment": {"strategy": {"x": 1}}}, {}, "alignment.strategy"),
    ({"alignment": 5}, {}, "alignment"),
    ({}, {"X-Alignment": '{"strategy": 5}'}, "X-Alignment"),
    ({}, {"X-Alignment": "true"}, "X-Alignment"),
])
def test_a_strategy_that_is_not_a_name_is_a_400(client, body, headers, param):
    for route, extra in (("/v1/chat/completions", {"messages": [
            {"role": "user", "content": "Hi"}]}), ("/v1/completions", {"prompt": "Hi"})):
        reply = client.post(route, json={"model": "chat", "max_tokens": 2} | extra | body,
                            headers=headers)
        assert reply.status_code == 400, (route, reply.text)
        assert reply.json()["error"]["param"] == param
