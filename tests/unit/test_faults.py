"""Engine death and shutdown over stand-in engines: the drain's deadlines, the HTTP
answers in-process, and the server's own runner in a subprocess (real uvicorn, real
signals, its exit status)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from clients.servers import Launched, free_port, launch
from decoding.engine import ModelInfo
from decoding.errors import EngineUnavailable
from decoding.remote_engine import RemoteConfig, RemoteEngine
from decoding.types import GenerationChunk, SamplingOptions
from server.app import build_app
from server.draining import Drain
from server.runner import EXIT_ENGINE_DIED
from tests.integration.stand_in_server import SlowStandIn
from tests.unit.conftest import API_KEY
from tests.unit.test_server_stand_in import assert_error

HEADERS = {"Authorization": "Bearer gateway-key"}


def chat(model: str, max_tokens: int) -> dict:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "stream": True,
    }


# -- the drain's deadlines ---------------------------------------------------------------


def test_close_brings_deadlines_forward_and_says_which_it_cut():
    async def scenario() -> None:
        drain = Drain()
        loop = asyncio.get_running_loop()
        async with drain.deadline(None) as open_ended, drain.deadline(1) as own:
            assert drain.in_flight == 2
            drain.close(5)
            assert open_ended.when() == drain.closing_at == pytest.approx(loop.time() + 5)
            assert own.when() < drain.closing_at  # an earlier deadline stays
        assert drain.in_flight == 0
        async with drain.deadline(60) as later:
            assert later.when() == drain.closing_at  # a request after close, too
        with pytest.raises(TimeoutError):
            async with drain.deadline(0.01) as fired:
                await asyncio.sleep(1)
        assert not drain.cut_short(fired)  # its own deadline
        drain.close(0)
        with pytest.raises(TimeoutError):
            async with drain.deadline(60) as cut:
                await asyncio.sleep(1)
        assert drain.cut_short(cut)

    asyncio.run(scenario())


# -- engine death, in-process ------------------------------------------------------------


def sse_lines(response: httpx.Response, first: threading.Event, lines: list[str]) -> None:
    for line in response.iter_lines():
        if line:
            lines.append(line)
        if '"content":"' in line and '"content":""' not in line:
            first.set()


def assert_complete_sse(lines: list[str]) -> list[dict]:
    """Every event is one `data:` line and the last is `[DONE]`; the JSON events."""
    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines)
    return [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]


def test_engine_dying_mid_stream_ends_its_streams_and_spares_the_others(settings):
    engines = {"chat": SlowStandIn("chat"), "base": SlowStandIn("base", role="base")}
    with TestClient(
        build_app(settings, engines), headers={"Authorization": f"Bearer {API_KEY}"}
    ) as client:
        streams: dict[str, list[str]] = {"chat": [], "base": []}
        started = {model: threading.Event() for model in streams}

        def read(model: str, max_tokens: int) -> None:
            with client.stream(
                "POST", "/v1/chat/completions", json=chat(model, max_tokens)
            ) as response:
                assert response.status_code == 200
                sse_lines(response, started[model], streams[model])

        readers = [
            threading.Thread(target=read, args=("chat", 400)),
            threading.Thread(target=read, args=("base", 60)),
        ]
        for reader in readers:
            reader.start()
        assert all(event.wait(30) for event in started.values())
        engines["chat"].dead = True  # as vLLM marks it when its core process exits
        for reader in readers:
            reader.join(60)
        error = assert_complete_sse(streams["chat"])[-1]["error"]
        assert (error["type"], error["code"]) == ("service_unavailable_error", "engine_unavailable")
        assert "'chat'" in error["message"]
        last = assert_complete_sse(streams["base"])[-1]
        assert last["choices"][0]["finish_reason"] == "length"
        health = assert_error(client.get("/health"), 503, code="engine_unavailable")
        assert "'chat'" in health["message"] and "'base'" not in health["message"]
        assert_error(
            client.post("/v1/chat/completions", json=chat("chat", 5)),
            503,
            code="engine_unavailable",
        )
        assert (
            client.post(
                "/v1/chat/completions", json=chat("base", 5) | {"stream": False}
            ).status_code
            == 200
        )
    assert engines["chat"].counters.running == engines["base"].counters.running == 0


# -- the runner in a subprocess ----------------------------------------------------------


@contextmanager
def stand_in_server(tmp_path: Path, *flags: str) -> Iterator[Launched]:
    port = free_port()
    server = launch(
        [
            "-m",
            "tests.integration.stand_in_server",
            "--port",
            str(port),
            "--max-concurrent-requests",
            "4",
            *flags,
        ],
        port,
        tmp_path / "server.log",
    )
    try:
        deadline = time.monotonic() + 60  # a loaded 2-core machine is slow to import
        while True:
            assert server.process.poll() is None, server.log.read_text()
            assert time.monotonic() < deadline, "the stand-in server did not start"
            try:
                if httpx.get(f"{server.url}/v1/models", headers=HEADERS).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield server
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


def exit_report(server: Launched, seconds: float) -> tuple[int, dict]:
    """The exit status and the engines' last counts (the server's last stdout line)."""
    status = server.process.wait(seconds)
    return status, json.loads(server.log.read_text().strip().splitlines()[-1])


class Streams:
    """Streams read in threads, each with an event set at its first content."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.lines: dict[str, list[str]] = {}
        self.started: dict[str, threading.Event] = {}
        self.threads: list[threading.Thread] = []
        self.failures: dict[str, Exception] = {}  # a stream cut off, or a status not 200

    def open(self, name: str, body: dict) -> None:
        self.lines[name], self.started[name] = [], threading.Event()

        def read() -> None:
            try:
                with httpx.stream(
                    "POST",
                    f"{self.url}/v1/chat/completions",
                    json=body,
                    headers=HEADERS,
                    timeout=60,
                ) as response:
                    response.raise_for_status()
                    sse_lines(response, self.started[name], self.lines[name])
            except httpx.HTTPError as exc:
                self.failures[name] = exc

        self.threads.append(threading.Thread(target=read, daemon=True))
        self.threads[-1].start()
        assert self.started[name].wait(30), f"stream {name} did not start"

    def join(self) -> None:
        for thread in self.threads:
            thread.join(60)
            assert not thread.is_alive()
        assert not self.failures


def test_engine_death_gives_503s_then_the_server_exits_75(tmp_path):
    with stand_in_server(tmp_path, "--dead-engine-exit-after", "2") as server:
        streams = Streams(server.url)
        streams.open("dying", chat("chat", 400))  # 8 s at 20 ms a token
        streams.open("spared", chat("base", 150))  # 3 s
        server.process.send_signal(signal.SIGUSR1)  # chat's engine dies
        killed = time.monotonic()
        while "'chat'" not in (health := httpx.get(f"{server.url}/health")).text:
            assert time.monotonic() - killed < 2, health.text
        assert health.status_code == 503
        refused = httpx.post(
            f"{server.url}/v1/chat/completions", headers=HEADERS, json=chat("chat", 5)
        )
        assert_error(refused, 503, code="engine_unavailable")
        served = httpx.post(
            f"{server.url}/v1/chat/completions",
            headers=HEADERS,
            timeout=30,
            json=chat("base", 5) | {"stream": False},
        )
        assert served.status_code == 200
        streams.join()
        error = assert_complete_sse(streams.lines["dying"])[-1]["error"]
        assert error["code"] == "engine_unavailable"
        last = assert_complete_sse(streams.lines["spared"])[-1]
        assert last["choices"][0]["finish_reason"] == "length"
        status, engines = exit_report(server, 60)
        assert status == EXIT_ENGINE_DIED
        assert time.monotonic() - killed >= 2  # it kept serving the other model meanwhile
        assert all(counts["running"] == 0 for counts in engines.values())


def test_sigterm_under_load_drains_refuses_and_exits_0(tmp_path):
    with stand_in_server(tmp_path, "--shutdown-drain", "3") as server:
        streams = Streams(server.url)
        streams.open("finishes", chat("base", 60))  # 1.2 s: within the drain
        streams.open("cut", chat("chat", 450))  # 9 s: cut at the drain's end
        server.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 2
        while True:  # the listener closes at once; the streams go on
            assert time.monotonic() < deadline, "new connections still accepted"
            try:
                httpx.get(f"{server.url}/v1/models", headers=HEADERS, timeout=1)
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError):
                break  # refused, or (a race with the closing listener) closed or reset unanswered
            time.sleep(0.05)
        assert streams.threads[1].is_alive()  # the cut stream still runs
        streams.join()
        last = assert_complete_sse(streams.lines["finishes"])[-1]
        assert last["choices"][0]["finish_reason"] == "length"
        error = assert_complete_sse(streams.lines["cut"])[-1]["error"]
        assert (error["type"], error["code"]) == (
            "service_unavailable_error",
            "server_shutting_down",
        )
        status, engines = exit_report(server, 30)
        assert status == 0
        assert all(counts["running"] == 0 for counts in engines.values())
        assert engines["chat"]["aborted"] >= 1 and engines["base"]["aborted"] == 0


def test_idle_sigterm_exits_0_at_once_despite_a_keep_alive_connection(tmp_path):
    with stand_in_server(tmp_path) as server, httpx.Client(headers=HEADERS) as client:
        assert client.get(f"{server.url}/v1/models").status_code == 200  # kept alive
        server.process.send_signal(signal.SIGTERM)
        status, _ = exit_report(server, 10)  # the drain (20 s) is not waited out
        assert status == 0


def test_a_second_signal_exits_without_waiting(tmp_path):
    # a drain far longer than the wait below, which has room for a loaded machine
    with stand_in_server(tmp_path, "--shutdown-drain", "120") as server:
        streams = Streams(server.url)
        streams.open("held", chat("chat", 450))
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        server.process.send_signal(signal.SIGINT)
        try:
            status = server.process.wait(30)  # the drain (120 s) is not waited out
        except subprocess.TimeoutExpired:
            pytest.fail("a second signal did not end the drain")
        assert status == 0
        streams.threads[0].join(10)
        assert isinstance(streams.failures["held"], httpx.RemoteProtocolError)  # cut off


def test_a_dead_remote_engine_never_makes_the_server_exit(tmp_path):
    with stand_in_server(tmp_path, "--dead-engine-exit-after", "0") as server:
        dead = httpx.post(
            f"{server.url}/v1/chat/completions",
            headers=HEADERS,
            json=chat("dead", 5) | {"stream": False},
        )
        assert_error(dead, 503, code="engine_unavailable")
        time.sleep(2)  # four looks at the engines
        assert server.process.poll() is None
        assert httpx.get(f"{server.url}/v1/models", headers=HEADERS).status_code == 200
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(10) == 0


# -- a remote engine going away ----------------------------------------------------------


def remote_engine(url: str) -> RemoteEngine:
    config = RemoteConfig(model_id="remote", url=url, remote_model="m", tokenizer_dir="")
    info = ModelInfo("remote", f"{url}#m", "chat", 512, 258, (257,), 256, True, local=False)
    return RemoteEngine(config, None, info)


def test_a_remote_engine_gone_or_dying_mid_stream_is_unavailable():
    """Refused at once when its server is gone; mid-stream, a dropped connection."""
    event = {"choices": [{"text": "a", "logprobs": {"tokens": ["token_id:97"]}}]}
    body = f"data: {json.dumps(event)}\n\n".encode()

    async def one_event_then_drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n" + b"%x\r\n%s\r\n" % (len(body), body)
        )
        await writer.drain()
        writer.close()

    async def scenario() -> None:
        gone = remote_engine(f"http://127.0.0.1:{free_port()}")
        assert not gone.dead and not gone.info.local
        with pytest.raises(EngineUnavailable):
            [c async for c in gone.generate([1, 2, 3], SamplingOptions(max_tokens=8), "r-1")]
        with pytest.raises(EngineUnavailable):
            await gone.check_health()
        await gone.shutdown()
        server = await asyncio.start_server(one_event_then_drop, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        dying = remote_engine(f"http://127.0.0.1:{port}")
        chunks: list[GenerationChunk] = []
        with pytest.raises(EngineUnavailable, match="remote engine of 'remote'"):
            async for chunk in dying.generate([1, 2, 3], SamplingOptions(max_tokens=8), "r-2"):
                chunks.append(chunk)
        assert [c.token_ids for c in chunks] == [[97]]
        assert dying.counters.running == 0 and dying.counters.aborted == 1
        await dying.shutdown()
        server.close()
        await server.wait_closed()

    asyncio.run(scenario())
