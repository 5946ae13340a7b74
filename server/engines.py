"""Starting and stopping the engines the settings describe (one per served model)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from contextlib import aclosing
from pathlib import Path

from decoding.cpu_cores import spread_cores
from decoding.engine import Engine
from decoding.errors import ModelUnavailable
from decoding.remote_engine import RemoteConfig, RemoteEngine
from decoding.types import SamplingOptions
from decoding.weights import resolve_weights
from server.config import Settings

logger = logging.getLogger(__name__)


def prepare_models(settings: Settings) -> dict[str, str]:
    """Resolve (and convert once) every model's weights; model id → local folder.

    A remote model needs only its tokenizer here: a folder with the tokenizer files will do.
    """
    folders = {}
    for spec in settings.models:
        try:
            folders[spec.id] = str(resolve_weights(spec.source, settings.cache_dir))
        except ModelUnavailable:
            if not (spec.remote_url and Path(spec.source).expanduser().is_dir()):
                raise
            folders[spec.id] = str(Path(spec.source).expanduser())
        logger.info("model %s: files in %s", spec.id, folders[spec.id])
    return folders


async def start_engines(settings: Settings) -> dict[str, Engine]:
    """Start one vLLM engine per model, on the running event loop that will use it."""
    from decoding.vllm_engine import EngineConfig, VllmEngine

    folders = prepare_models(settings)
    local = [spec.id for spec in settings.models if not spec.remote_url]
    spread = settings.cpu_binding == "spread" and spread_cores(len(local), os.cpu_count() or 1)
    cores = dict(zip(local, spread, strict=True)) if spread else {}
    engines: dict[str, Engine] = {}
    try:
        for spec in settings.models:
            start = time.monotonic()
            if spec.remote_url:
                engines[spec.id] = await RemoteEngine.start(RemoteConfig(
                    model_id=spec.id, url=spec.remote_url,
                    remote_model=spec.remote_model or spec.id, tokenizer_dir=folders[spec.id],
                    api_key=spec.remote_api_key, role=spec.role,
                    timeout=settings.request_timeout or 3600))
                logger.info("model %s: remote engine at %s", spec.id, spec.remote_url)
                continue
            engines[spec.id] = VllmEngine.start(EngineConfig(
                model_id=spec.id,
                weights_dir=folders[spec.id],
                role=spec.role,
                max_model_len=spec.max_model_len or settings.max_model_len,
                kv_cache_bytes=int((spec.kv_cache_gib or settings.kv_cache_gib) * (1 << 30)),
                block_size=settings.block_size,
                enforce_eager=settings.enforce_eager,
                cpu_cores=cores.get(spec.id),
            ))
            logger.info("engine %s started in %.0f s", spec.id, time.monotonic() - start)
    except BaseException:
        await stop_engines(engines)
        raise
    return engines


async def warm_up(engines: dict[str, Engine]) -> None:
    """Pay now what a first request would otherwise pay: each engine's per-token texts
    (a 262k vocabulary takes seconds), its first decoding steps and its first
    streaming-input session, before `/health` says ok."""
    for model_id, engine in engines.items():
        start = time.monotonic()
        await asyncio.to_thread(engine.token_texts)
        prompt = engine.tokenize("Hello", add_special_tokens=True)
        options = SamplingOptions(max_tokens=2, temperature=0, logprobs=1)
        async with aclosing(engine.generate(prompt, options, f"warm-up-{model_id}")) as chunks:
            async for _ in chunks:
                pass
        session = engine.open_session(f"warm-up-session-{model_id}")
        if session is not None:
            try:
                for _ in range(2):
                    prompt = (await session.step(prompt, options)).token_ids
            finally:
                await session.close()
        logger.info("engine %s warmed up in %.1f s", model_id, time.monotonic() - start)


async def stop_engines(engines: dict[str, Engine]) -> None:
    """Stop every engine, side by side: a vLLM engine's processes take about 4 s to exit
    (measured), and one after another they outlasted Docker's 10 s stop timeout."""

    async def stop(model_id: str, engine: Engine) -> None:
        start = time.monotonic()
        running = engine.counters.running
        try:
            await engine.shutdown()
        except Exception:
            logger.exception("engine %s did not shut down cleanly", model_id)
            return
        logger.info("engine %s stopped in %.1f s (%d engine requests were still running)",
                    model_id, time.monotonic() - start, running)

    await asyncio.gather(*(stop(model_id, engine) for model_id, engine in engines.items()))
