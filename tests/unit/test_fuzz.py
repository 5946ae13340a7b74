"""Property-based run over the OpenAPI schema (schemathesis) against the stand-in server
on real sockets: no 5xx, every error OpenAI-shaped, healthy afterwards."""

from __future__ import annotations

import itertools

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.unit.conftest import API_KEY


def assert_openai_shaped(response) -> None:
    """No 5xx; a JSON error body is `{"error": {message, type, param, code}}`."""
    assert response.status_code < 500, response.text
    content_type = response.headers.get("content-type") or [""]  # schemathesis: a list
    json_body = content_type[0].startswith("application/json")
    if response.status_code >= 400 and json_body:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"]


def fuzz(base_url: str, *, api_key: str, max_examples: int) -> int:
    """Every operation of the schema, `max_examples` valid and as many invalid cases each
    (schemathesis's positive and negative modes); returns how
    many requests were sent. (Driven through hypothesis directly: schemathesis's pytest
    plugin does not load under this pytest.)"""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    sent = 0
    for result, mode in itertools.product(schema.get_all_operations(), GenerationMode):
        operation = result.ok()

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=max_examples, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case) -> None:
            nonlocal sent
            sent += 1
            response = case.call(base_url=base_url, timeout=60,
                                 headers={"Authorization": f"Bearer {api_key}"})
            assert_openai_shaped(response)

        try:
            check()
        except Unsatisfiable:  # nothing to make invalid (GET /health has no input)
            assert mode is GenerationMode.NEGATIVE
    return sent


def test_fuzz_the_stand_in_server(live_url):
    assert fuzz(live_url, api_key=API_KEY, max_examples=30) > 100
    assert httpx.get(f"{live_url}/health").status_code == 200
