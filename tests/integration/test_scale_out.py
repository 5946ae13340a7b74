"""Two front-end replicas behind the repository's nginx; one is stopped mid-load.

nginx hands a request to the other replica when the first refuses the connection, fails
or answers 502/503, but only while no byte of the answer has reached the client. So a
non-streamed request is never lost (its answer is sent whole at the end), while a stream
that has begun stays with its replica: if that replica is killed, the stream is cut
(nginx cannot add an SSE event to a body it is relaying; it closes the connection without
the chunked encoding's last chunk, which clients report as an incomplete body).

The fast tests use stand-in replicas; the slow one, two real replicas sharing vLLM's own
OpenAI server as their remote base model, each with a local nudger.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import Counter
from dataclasses import dataclass

import httpx
import pytest

from clients.bench.soak import engine_gauges
from clients.servers import Launched, free_port, ours
from tests.integration.conftest import API_KEY, SMOL, TINY, TINY_CONTEXT
from tests.integration.nginx import UPSTREAM_HEADER, start_nginx, start_stand_in, stop_nginx

STAND_IN_KEY = "gateway-key"  # tests/integration/stand_in_server.py's
#: seconds the stopper waits for the moment it wants before stopping the replica anyway
WAIT_LIMIT = 30


@dataclass(frozen=True)
class Answer:
    """`status`: "200" (for a stream: it ended with [DONE]), another status, "cut",
    "error event" or "transport error: NAME"; `upstreams`: nginx's $upstream_addr, "A",
    or "A, B" when A failed and nginx retried on B."""

    streamed: bool
    status: str
    upstreams: str
    started: float
    ended: float


async def ask(
    client: httpx.AsyncClient, body: dict, streamed: bool, under_way: Counter[tuple[bool, str]]
) -> Answer:
    """One request; while its answer comes, `under_way[(streamed, replica)]` counts it."""
    started, status, upstreams = time.monotonic(), "not sent", ""
    try:
        async with client.stream(
            "POST", "/v1/chat/completions", json=body | {"stream": streamed}
        ) as response:
            upstreams = response.headers.get(UPSTREAM_HEADER, "")
            under_way[(streamed, upstreams)] += 1
            status = str(response.status_code)
            if response.status_code != 200 or not streamed:
                answer = await response.aread()
                if response.status_code == 200 and not json.loads(answer)["choices"]:
                    status = "200 without choices"
            else:
                status = "cut"
                async for line in response.aiter_lines():
                    if line.startswith("data: {") and "error" in json.loads(line[6:]):
                        status = "error event"
                    elif line == "data: [DONE]" and status == "cut":
                        status = "200"
    except httpx.HTTPError as exc:  # a cut stream ends here too, as an incomplete body
        status = status if status == "cut" else f"transport error: {type(exc).__name__}"
    finally:
        under_way[(streamed, upstreams)] -= 1
    return Answer(streamed, status, upstreams, started, time.monotonic())


async def answering_both(client: httpx.AsyncClient, replica: Launched, streams: int) -> bool:
    """Whether the replica is answering a non-streamed request besides its `streams`: a
    client sees which replica answers only when the answer starts, but the replica's
    count of requests in flight tells."""
    metrics = (await client.get(f"{replica.url}/metrics")).text
    in_flight = sum(engine_gauges(metrics)["in_flight"].values())
    return streams > 0 and in_flight > streams


async def load_and_stop(
    url: str,
    key: str,
    body: dict,
    replica: Launched,
    how: signal.Signals,
    *,
    clients: int,
    streaming_clients: int,
    before: float,
    after: float,
) -> tuple[list[Answer], float]:
    """`clients` loops (the first `streaming_clients` streamed); after `before` seconds,
    once the replica is answering a stream and a non-streamed request (or `WAIT_LIMIT`
    seconds later), it is stopped, and the loops go on for `after` seconds more. Returns
    the answers and when it was stopped; fails if that moment never came."""
    answers: list[Answer] = []
    under_way: Counter[tuple[bool, str]] = Counter()
    address = f"127.0.0.1:{replica.port}"
    stopped_at = float("inf")
    caught_both = False
    async with httpx.AsyncClient(
        base_url=url,
        headers={"Authorization": f"Bearer {key}"},
        timeout=300,
        limits=httpx.Limits(max_connections=64),
    ) as client:

        async def loop(streamed: bool) -> None:
            while time.monotonic() < stopped_at + after:
                answers.append(await ask(client, body, streamed, under_way))

        async def stopper() -> None:
            nonlocal stopped_at, caught_both
            await asyncio.sleep(before)
            give_up = time.monotonic() + WAIT_LIMIT
            while time.monotonic() < give_up:
                caught_both = await answering_both(client, replica, under_way[(True, address)])
                if caught_both:
                    break
                await asyncio.sleep(0.02)
            stopped_at = time.monotonic()
            stop_replica(replica, how)

        await asyncio.gather(stopper(), *(loop(i < streaming_clients) for i in range(clients)))
    assert caught_both, f"in {WAIT_LIMIT} s the replica never answered both kinds at once"
    return answers, stopped_at


def check(
    answers: list[Answer], stopped_at: float, stopped: str, *, cut_allowed: bool
) -> Counter[tuple[bool, str]]:
    """No non-streamed request lost, and at least one request went to the stopped replica
    after it stopped and was retried on the other; a stream may be cut only if it had
    begun on the stopped replica before it stopped. Returns the count of (streamed, status)."""
    seen = Counter((a.streamed, a.status) for a in answers)
    non_streamed = [a for a in answers if not a.streamed]
    assert non_streamed and all(a.status == "200" for a in non_streamed), seen
    for a in answers:
        if a.streamed and a.status != "200":
            assert cut_allowed and a.status == "cut", a
            assert a.upstreams.split(", ")[-1] == stopped and a.started < stopped_at, a
    retried = Counter(a.streamed for a in answers if a.upstreams.startswith(f"{stopped}, "))
    assert retried, Counter(a.upstreams for a in answers)
    if cut_allowed:  # killed: what it was answering (not streamed) went to the other
        assert retried[False], Counter(a.upstreams for a in answers)
    return seen


def stop_replica(replica: Launched, how: signal.Signals) -> None:
    """SIGKILL takes the whole process group (the machine is gone: engines too); SIGTERM
    goes to the server alone, as Docker and Kubernetes send it."""
    if how == signal.SIGKILL:
        os.killpg(replica.process.pid, signal.SIGKILL)
    else:
        replica.process.send_signal(how)


@pytest.mark.slow  # no engines, but 7 s each of replicas and nginx: not for the fast suite
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["kill", "term"])
def test_stopping_a_stand_in_replica_loses_no_non_streamed_request(tmp_path, how):
    """Stand-ins at 20 ms a token: a request takes 1.2 s, so the stopped replica is
    always in the middle of a few; under SIGTERM uvicorn lets them finish."""
    replicas = [start_stand_in(tmp_path, "--max-concurrent-requests", "64") for _ in range(2)]
    try:
        url, nginx = start_nginx([r.port for r in replicas], tmp_path / "nginx")
        body = {
            "model": "chat",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 60,
            "ignore_eos": True,
        }
        try:
            answers, stopped_at = asyncio.run(
                load_and_stop(
                    url,
                    STAND_IN_KEY,
                    body,
                    replicas[0],
                    how,
                    clients=8,
                    streaming_clients=3,
                    before=1.5,
                    after=3,
                )
            )
        finally:
            stop_nginx(nginx)
        stopped = f"127.0.0.1:{replicas[0].port}"
        seen = check(answers, stopped_at, stopped, cut_allowed=how == signal.SIGKILL)
        print(
            f"answers by (streamed, status): {dict(seen)}; nginx's upstreams: "
            f"{dict(Counter(a.upstreams.replace(stopped, 'stopped') for a in answers))}"
        )
        if how == signal.SIGKILL:
            assert seen[(True, "cut")] >= 1  # streams under way there had begun
        else:  # it finished what it had begun, then exited
            assert any(a.upstreams == stopped and a.ended > stopped_at for a in answers)
        replicas[0].process.wait(30)
    finally:
        for replica in replicas:
            replica.stop()


@pytest.fixture
def replicas(tmp_path, weights, tiny_llama, vllm_url):
    """Two of our servers, each serving vLLM's server (SmolLM2) as a remote base model and
    the tiny random Llama (SmolLM2's tokenizer) as its local nudger."""
    models_file = tmp_path / "models.yaml"
    models_file.write_text(
        f"- {{id: remote-base, source: '{weights[SMOL]}', role: base, "
        f"remote_url: '{vllm_url}', remote_model: {SMOL}}}\n"
        f"- {{id: {TINY}, source: '{tiny_llama}', max_model_len: {TINY_CONTEXT}}}\n"
    )
    launched = [
        ours(
            free_port(),
            tmp_path / f"replica-{i}.log",
            "--models-file",
            str(models_file),
            "--api-key",
            API_KEY,
            "--kv-cache-gib",
            "0.25",
            "--default-nudging-model",
            TINY,
        )
        for i in range(2)
    ]
    try:
        for replica in launched:
            replica.wait_healthy()
        yield launched
    finally:
        for replica in launched:  # the killed one went with its process group
            replica.stop()


@pytest.mark.slow
def test_killing_a_replica_loses_no_non_streamed_request(replicas, tmp_path):
    url, nginx = start_nginx([r.port for r in replicas], tmp_path / "nginx")
    body = {
        "model": "remote-base",
        "max_tokens": 32,
        "messages": [{"role": "user", "content": "How do I bake bread at home?"}],
        "alignment": {"strategy": "nudging", "nudging_model": TINY, "gamma": 0.4},
    }
    try:
        answers, stopped_at = asyncio.run(
            load_and_stop(
                url,
                API_KEY,
                body,
                replicas[0],
                signal.SIGKILL,
                clients=8,
                streaming_clients=3,
                before=5,
                after=10,
            )
        )
    finally:
        stop_nginx(nginx)
    stopped = f"127.0.0.1:{replicas[0].port}"
    seen = check(answers, stopped_at, stopped, cut_allowed=True)
    print(
        f"answers by (streamed, status): {dict(seen)}; nginx's upstreams: "
        f"{dict(Counter(a.upstreams.replace(stopped, 'stopped') for a in answers))}"
    )
    assert httpx.get(f"{replicas[1].url}/health").status_code == 200
