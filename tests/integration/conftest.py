"""Session fixtures that start real engines: our server, vLLM's own server, a tiny Llama.

Every server is a subprocess on a loopback port (an `AsyncLLM` belongs to the loop that
made it, so a test session talks HTTP to it); both servers start side by side.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from clients.servers import Launched, free_port, ours, vllm_server
from decoding.weights import resolve_weights
from server.config import Settings

API_KEY = "sk-test-key"
SMOL, GEMMA, TINY = "smollm2-135m-instruct", "gemma-3-270m", "tiny-llama"
TINY_CONTEXT = 256
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
        "ours": ours(ours_port, logs / "ours.log", "--models-file", str(models_file),
                     "--api-key", API_KEY, "--kv-cache-gib", "0.5", "--max-model-len", "2048"),
        "vllm": vllm_server(vllm_port, logs / "vllm.log", weights[SMOL], SMOL,
                            max_model_len=2048, block_size=32, kv_cache_bytes=512 << 20),
    }
    try:
        for server in servers.values():
            server.wait_healthy()
        yield servers
    finally:
        for server in servers.values():
            server.stop()


@pytest.fixture(scope="session")
def server_url(request) -> str:
    """Our server; `ALIGN_TEST_SERVER_URL` points the tests that need only it at one
    already running with the default models (a quicker loop while developing)."""
    url = os.environ.get("ALIGN_TEST_SERVER_URL")
    return url or request.getfixturevalue("launched")["ours"].url


@pytest.fixture(scope="session")
def vllm_url(launched) -> str:
    return launched["vllm"].url
