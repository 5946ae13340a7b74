"""Debian's nginx on loopback, with the repository's config, in front of the server."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.browser import Playground, headless_chromium
from tests.integration.conftest import API_KEY, GEMMA, SMOL
from tests.integration.nginx import start_nginx, start_stand_in, stop_nginx

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gateway(server_url, tmp_path_factory):
    url, process = start_nginx([int(server_url.rsplit(":", 1)[1])],
                               tmp_path_factory.mktemp("nginx"))
    yield url
    stop_nginx(process)


@pytest.fixture(scope="module")
def stand_in_gateway(tmp_path_factory):
    logs = tmp_path_factory.mktemp("stand-in")
    server = start_stand_in(logs)
    try:
        url, process = start_nginx([server.port], logs / "nginx")
        yield url
        stop_nginx(process)
    finally:
        server.stop()


def test_stream_arrives_chunk_by_chunk(gateway):
    body = {"model": GEMMA, "messages": [{"role": "user", "content": "How do I bake bread?"}],
            "max_tokens": 64, "stream": True, "alignment": {"strategy": "nudging"}}
    arrivals = []
    with httpx.Client(timeout=120) as client, client.stream(
            "POST", f"{gateway}/v1/chat/completions", json=body,
            headers={"Authorization": f"Bearer {API_KEY}"}) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if (line.startswith("data: {") and '"content":"' in line) or line == "data: [DONE]":
                arrivals.append(time.monotonic())
    assert len(arrivals) > 5
    spread = arrivals[-1] - arrivals[0]
    assert spread > 0.5  # had nginx buffered the stream, all chunks would land together
    assert arrivals[1] - arrivals[0] < spread / 2


def test_auth_and_error_bodies_pass_through(gateway):
    no_key = httpx.get(f"{gateway}/v1/models")
    assert no_key.status_code == 401
    assert no_key.json()["error"]["code"] == "invalid_api_key"
    headers = {"Authorization": f"Bearer {API_KEY}"}
    assert httpx.get(f"{gateway}/v1/models", headers=headers).status_code == 200
    bad = httpx.post(f"{gateway}/v1/chat/completions", headers=headers,
                     json={"model": GEMMA, "messages": [], "alignmnet": "rain"})
    assert bad.status_code == 400 and bad.json()["error"]["param"]
    big = httpx.post(f"{gateway}/v1/chat/completions", headers=headers,
                     content=b'{"model": "' + b"x" * (5 << 20) + b'"}',
                     timeout=60)
    assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"


def test_429_and_503_bodies_pass_through(stand_in_gateway):
    headers = {"Authorization": "Bearer gateway-key"}
    chat = {"model": "chat", "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 200, "stream": True, "ignore_eos": True}
    with httpx.Client(timeout=60) as client, client.stream(
            "POST", f"{stand_in_gateway}/v1/chat/completions", json=chat,
            headers=headers) as held:
        lines = held.iter_lines()  # keep it: a dropped iterator closes the stream
        assert next(lines).startswith("data: {")
        busy = client.post(f"{stand_in_gateway}/v1/chat/completions", headers=headers,
                           json=chat | {"stream": False})
        assert busy.status_code == 429, busy.text
        assert busy.headers["retry-after"] == "1"
        assert busy.json()["error"]["type"] == "rate_limit_error"
    dead = httpx.post(f"{stand_in_gateway}/v1/chat/completions", headers=headers,
                      json=chat | {"model": "dead", "stream": False})
    assert dead.status_code == 503
    assert dead.json()["error"]["code"] == "engine_unavailable"
    health = httpx.get(f"{stand_in_gateway}/health")
    assert health.status_code == 503 and json.loads(health.text)["error"]["message"]


def test_the_playground_works_through_nginx(gateway):
    """Relative URLs only: the home page's link, the page, its files and its streamed API
    calls all pass the gateway."""
    with headless_chromium() as driver:
        driver.get(f"{gateway}/")
        driver.find_element("link text", "Playground").click()
        page = Playground(driver, gateway)
        page.wait(lambda d: d.execute_script("return document.body.dataset.state") == "idle")
        assert driver.current_url == f"{gateway}/playground"
        page.enter_key(API_KEY)
        page.choose_model(SMOL)
        page.set_options(max_tokens=8, temperature=0)
        (vanilla,) = page.set_columns("vanilla")
        page.run(timeout=120)
        assert page.state(vanilla) == "done" and page.answer(vanilla)
        assert page.metric(vanilla, "tokens") == "8"
