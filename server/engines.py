"""Starting and stopping the engines the settings describe (one per served model)."""

from __future__ import annotations

import logging
import time

from decoding.engine import Engine
from decoding.weights import resolve_weights
from server.config import Settings

logger = logging.getLogger(__name__)


def prepare_models(settings: Settings) -> dict[str, str]:
    """Resolve (and convert once) every model's weights; model id → local folder."""
    folders = {}
    for spec in settings.models:
        folders[spec.id] = str(resolve_weights(spec.source, settings.cache_dir))
        logger.info("model %s: weights in %s", spec.id, folders[spec.id])
    return folders


async def start_engines(settings: Settings) -> dict[str, Engine]:
    """Start one vLLM engine per model, on the running event loop that will use it."""
    from decoding.vllm_engine import EngineConfig, VllmEngine

    folders = prepare_models(settings)
    engines: dict[str, Engine] = {}
    try:
        for spec in settings.models:
            start = time.monotonic()
            engines[spec.id] = VllmEngine.start(EngineConfig(
                model_id=spec.id,
                weights_dir=folders[spec.id],
                role=spec.role,
                max_model_len=spec.max_model_len or settings.max_model_len,
                kv_cache_bytes=int((spec.kv_cache_gib or settings.kv_cache_gib) * (1 << 30)),
                block_size=settings.block_size,
                enforce_eager=settings.enforce_eager,
            ))
            logger.info("engine %s started in %.0f s", spec.id, time.monotonic() - start)
    except BaseException:
        await stop_engines(engines)
        raise
    return engines


async def stop_engines(engines: dict[str, Engine]) -> None:
    for model_id, engine in engines.items():
        try:
            await engine.shutdown()
        except Exception:
            logger.exception("engine %s did not shut down cleanly", model_id)
