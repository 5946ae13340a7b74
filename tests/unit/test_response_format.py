"""response_format: vanilla hands it to the engine; other strategies refuse it by name."""

from __future__ import annotations

import json

import openai
import pytest

from decoding.types import JsonOutput
from tests.unit.conftest import API_KEY
from tests.unit.test_server_stand_in import CHAT, assert_error

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}},
          "required": ["city"], "additionalProperties": False}
JSON_SCHEMA = {"type": "json_schema",
               "json_schema": {"name": "place", "schema": SCHEMA, "strict": True}}


def test_json_schema_reaches_the_engine_through_the_sdk(client, engines):
    sdk = openai.OpenAI(api_key=API_KEY, base_url="http://testserver/v1", http_client=client,
                        _strict_response_validation=True)
    sdk.chat.completions.create(model="chat", messages=CHAT["messages"], max_tokens=4,
                                response_format=JSON_SCHEMA)
    (_, options), = engines["chat"].calls
    assert json.loads(options.json_output.schema) == SCHEMA


@pytest.mark.parametrize(("response_format", "expected"), [
    ({"type": "json_object"}, JsonOutput(None)),
    ({"type": "text"}, None),
])
def test_other_formats(client, engines, response_format, expected):
    body = {"model": "base", "prompt": "a", "max_tokens": 2, "response_format": response_format}
    assert client.post("/v1/completions", json=body).status_code == 200
    assert engines["base"].calls[-1][1].json_output == expected


@pytest.mark.parametrize("alignment", [{"strategy": "rain"}, {"strategy": "nudging"}])
def test_other_strategies_refuse_it(client, alignment):
    body = CHAT | {"model": "base", "alignment": alignment, "response_format": JSON_SCHEMA}
    error = assert_error(client.post("/v1/chat/completions", json=body), 400,
                         "response_format")
    assert alignment["strategy"] in error["message"]


@pytest.mark.parametrize(("response_format", "param"), [
    ({"type": "json_schema"}, "response_format"),
    ({"type": "json_object", "json_schema": JSON_SCHEMA["json_schema"]}, "response_format"),
    ({"type": "json_schema", "json_schema": {"name": "has space", "schema": SCHEMA}},
     "response_format.json_schema.name"),
    ({"type": "json_schema", "json_schema": {"name": "x"}}, "response_format.json_schema.schema"),
    ({"type": "xml"}, "response_format.type"),
])
def test_malformed_formats(client, response_format, param):
    body = CHAT | {"response_format": response_format}
    assert_error(client.post("/v1/chat/completions", json=body), 400, param)
