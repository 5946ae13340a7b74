"""Session fixtures that start real engines: our server, vLLM's own server, a tiny Llama.

Every server is a subprocess on a loopback port (an `AsyncLLM` belongs to the loop that
made it, so a test session talks HTTP to it); both servers start side by side.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from decoding.weights import resolve_weights
from server.config import Settings

API_KEY = "sk-test-key"
SMOL, GEMMA, TINY = "smollm2-135m-instruct", "gemma-3-270m", "tiny-llama"
TINY_CONTEXT = 256
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

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.url} exited; log:\n{self.log.read_text()[-4000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise TimeoutError(f"{self.url} not healthy in {STARTUP_SECONDS} s")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()


def launch(args: list[str], port: int, log: Path) -> Launched:
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, *args], stdout=out, stderr=subprocess.STDOUT,
                                   env=env, start_new_session=True)
    return Launched(f"http://127.0.0.1:{port}", process, log)


@pytest.fixture(scope="session")
def weights() -> dict[str, Path]:
    cache = Settings().cache_dir
    return {name: resolve_weights(name, cache) for name in (SMOL, GEMMA)}


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory, weights) -> Path:
    """A random 2-layer Llama (head size 64) with SmolLM2's tokenizer and chat template."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=49152, hidden_size=128, intermediate_size=256,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                         max_position_embeddings=TINY_CONTEXT, tie_word_embeddings=True,
                         bos_token_id=1, eos_token_id=2)
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(weights[SMOL] / name, folder / name)
    return folder


@pytest.fixture(scope="session")
def launched(tmp_path_factory, weights, tiny_llama) -> Iterator[dict[str, Launched]]:
    logs = tmp_path_factory.mktemp("logs")
    models_file = logs / "models.yaml"
    models_file.write_text(
        f"- {{id: {SMOL}, source: {SMOL}}}\n- {{id: {GEMMA}, source: {GEMMA}}}\n"
        f"- {{id: {TINY}, source: '{tiny_llama}', max_model_len: {TINY_CONTEXT}}}\n"
    )
    ours_port, vllm_port = free_port(), free_port()
    servers = {
        "ours": launch(["-m", "server", "--port", str(ours_port), "--models-file",
                        str(models_file), "--api-key", API_KEY, "--kv-cache-gib", "0.5",
                        "--max-model-len", "2048"], ours_port, logs / "ours.log"),
        "vllm": launch(["-m", "vllm.entrypoints.openai.api_server", "--model",
                        str(weights[SMOL]), "--served-model-name", SMOL, "--port",
                        str(vllm_port), "--host", "127.0.0.1", "--max-model-len", "2048",
                        "--block-size", "32", "--enable-prefix-caching", "--enforce-eager",
                        "--dtype", "bfloat16", "--kv-cache-memory-bytes", str(512 << 20),
                        "--seed", "0"], vllm_port, logs / "vllm.log"),
    }
    try:
        for server in servers.values():
            server.wait_healthy()
        yield servers
    finally:
        for server in servers.values():
            server.stop()


@pytest.fixture(scope="session")
def server_url(launched) -> str:
    return launched["ours"].url


@pytest.fixture(scope="session")
def vllm_url(launched) -> str:
    return launched["vllm"].url
