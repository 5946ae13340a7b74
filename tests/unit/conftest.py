"""Server tests over the deterministic stand-in engine: fast, no vLLM."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from decoding.stand_in import StandInEngine
from server.app import build_app
from server.config import Settings

API_KEY = "test-key"


@pytest.fixture
def engines() -> dict[str, StandInEngine]:
    return {"chat": StandInEngine("chat"), "base": StandInEngine("base", role="base")}


@pytest.fixture
def settings() -> Settings:
    return Settings(api_keys=[API_KEY], models=[], max_body_bytes=20_000, max_n=4,
                    default_nudging_model="chat")


@pytest.fixture
def client(engines, settings):
    with TestClient(build_app(settings, engines),
                    headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        yield client
