"""--allowed-origins: CORS for browser pages on other origins; off by default."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from server.app import build_app
from server.cli import parse_args
from tests.unit.conftest import API_KEY

PAGE = "https://notebook.example"
PREFLIGHT = {"Origin": PAGE, "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization,content-type,x-alignment"}


def test_off_by_default(client):
    preflight = client.options("/v1/chat/completions", headers=PREFLIGHT)
    assert "access-control-allow-origin" not in preflight.headers
    answer = client.get("/v1/models", headers={"Origin": PAGE})
    assert "access-control-allow-origin" not in answer.headers


@pytest.mark.parametrize("origins", [[PAGE], ["*"]])
def test_allowed_origin(engines, settings, origins):
    allowed = settings.model_copy(update={"allowed_origins": origins})
    with TestClient(build_app(allowed, engines)) as client:
        preflight = client.options("/v1/chat/completions", headers=PREFLIGHT)  # no key
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] in (PAGE, "*")
        assert "x-alignment" in preflight.headers["access-control-allow-headers"].lower()
        reply = client.post("/v1/chat/completions", headers={
            "Origin": PAGE, "Authorization": f"Bearer {API_KEY}"}, json={
            "model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
        assert reply.status_code == 200
        assert reply.headers["access-control-allow-origin"] in (PAGE, "*")
        exposed = reply.headers["access-control-expose-headers"].lower()
        assert "x-request-id" in exposed and "x-alignment-strategy" in exposed
        refused = client.get("/v1/models", headers={"Origin": PAGE})  # 401, still readable
        assert refused.status_code == 401 and "access-control-allow-origin" in refused.headers
        if origins == [PAGE]:
            other = client.options("/v1/models", headers=PREFLIGHT | {"Origin": "https://x.y"})
            assert other.status_code == 400


def test_flag_and_environment(monkeypatch):
    settings, _ = parse_args(["--allowed-origins", "https://a.example,https://b.example",
                              "--allowed-origins", "https://c.example"])
    assert settings.allowed_origins == ["https://a.example", "https://b.example",
                                        "https://c.example"]
    monkeypatch.setenv("ALIGN_ALLOWED_ORIGINS", "https://d.example, *")
    assert parse_args([])[0].allowed_origins == ["https://d.example", "*"]
