"""Start align-serve or vLLM's own OpenAI server as a subprocess on a loopback port.

Shared by the benchmark and the integration tests.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

STARTUP_SECONDS = 600


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Launched:
    url: str
    process: subprocess.Popen
    log: Path

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def wait_healthy(self, seconds: float = STARTUP_SECONDS) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.url} exited; log:\n{self.log.read_text()[-4000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise TimeoutError(f"{self.url} not healthy in {seconds} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()


def launch(args: list[str], port: int, log: Path) -> Launched:
    """Run `python ARGS` with output to `log`; the caller waits for health."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, *args], stdout=out, stderr=subprocess.STDOUT,
                                   env=env, start_new_session=True)
    return Launched(f"http://127.0.0.1:{port}", process, log)


def ours(port: int, log: Path, *flags: str) -> Launched:
    return launch(["-m", "server", "--port", str(port), *flags], port, log)


def vllm_server(port: int, log: Path, weights: Path, served_name: str, *,
                max_model_len: int, block_size: int, kv_cache_bytes: int) -> Launched:
    """vLLM's own server with the settings our engines use (prefix caching, eager, bf16)."""
    return launch(["-m", "vllm.entrypoints.openai.api_server", "--model", str(weights),
                   "--served-model-name", served_name, "--port", str(port),
                   "--host", "127.0.0.1", "--max-model-len", str(max_model_len),
                   "--block-size", str(block_size), "--enable-prefix-caching",
                   "--enforce-eager", "--dtype", "bfloat16",
                   "--kv-cache-memory-bytes", str(kv_cache_bytes), "--seed", "0",
                   "--enable-prompt-tokens-details"], port, log)
