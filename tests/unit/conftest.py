"""Server tests over the deterministic stand-in engine: fast, no vLLM."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from fastapi.testclient import TestClient

from decoding.embeddings import HashEmbedder
from decoding.stand_in import StandInEngine
from decoding.strategies import STRATEGIES, RainStrategy
from server.app import build_app
from server.config import Settings

API_KEY = "test-key"


@pytest.fixture(autouse=True)
def rain_without_a_sentence_model(monkeypatch):
    """Server tests run RAIN with the hash embedder: loading the real sentence model takes
    a minute on a busy machine and says nothing about the HTTP surface."""
    monkeypatch.setitem(STRATEGIES, "rain", RainStrategy(HashEmbedder()))


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


class BrokenEngine(StandInEngine):
    """An engine with a bug: every generation raises an unexpected exception."""

    async def generate(self, prompt_token_ids, options, request_id):
        raise RuntimeError("a bug in the engine adapter")
        yield  # pragma: no cover - makes this an async generator


@pytest.fixture(scope="session")
def live_url() -> Iterator[str]:
    """The app over stand-in engines, served by uvicorn in a thread (real sockets)."""
    engines = {"chat": StandInEngine("chat", max_model_len=4096),
               "base": StandInEngine("base", role="base", max_model_len=4096),
               "broken": BrokenEngine("broken")}
    settings = Settings(api_keys=[API_KEY], models=[], default_nudging_model="chat")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(build_app(settings, engines), host="127.0.0.1",
                                           port=port, log_level="critical", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60  # a loaded 2-core machine took over 10 s
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
