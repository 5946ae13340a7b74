"""`align-serve`: start the server, or only prepare its models (`--prepare-only`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from server.config import ModelSpec, Settings
from server.logs import configure_logging


def parse_args(argv: Sequence[str] | None = None) -> tuple[Settings, bool]:
    """Flags override `ALIGN_*` environment variables, which override defaults."""
    p = argparse.ArgumentParser(prog="align-serve", description=__doc__)
    p.add_argument("--host", help="bind address (ALIGN_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (ALIGN_PORT, default 8000)")
    p.add_argument("--model", action="append", dest="models", metavar="[ID=]SOURCE",
                   help="serve a model: embedded name, HF folder, .gguf file or hub id; "
                        "repeat for several (ALIGN_MODELS, comma-separated)")
    p.add_argument("--models-file", type=Path, help="YAML/JSON list of model specs")
    p.add_argument("--api-key", action="append", dest="api_keys",
                   help="require this Bearer key; repeatable (ALIGN_API_KEYS)")
    p.add_argument("--allowed-origins", action="append", metavar="ORIGIN[,ORIGIN]",
                   help="CORS: let browser pages from these origins call the API ('*': any); "
                        "repeatable (ALIGN_ALLOWED_ORIGINS; default: none)")
    p.add_argument("--cache-dir", type=Path, help="where converted weights are kept")
    p.add_argument("--kv-cache-gib", type=float, help="KV cache per engine in GiB")
    p.add_argument("--block-size", type=int, help="KV cache block size in tokens")
    p.add_argument("--max-model-len", type=int, help="context length cap per model")
    p.add_argument("--cpu-binding", choices=["spread", "vllm"],
                   help="CPU backend: each engine its own cores (spread, default) or "
                        "vLLM's own binding")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--max-concurrent-requests", type=int,
                   help="requests in flight per model before 429 (default 64)")
    p.add_argument("--request-timeout", type=float,
                   help="seconds a request may run, 0 for no limit (default 600)")
    p.add_argument("--shutdown-drain", type=float,
                   help="on SIGTERM, seconds in-flight requests may still finish (default 20)")
    p.add_argument("--dead-engine-exit-after", type=float,
                   help="seconds to keep serving the other models after a local engine "
                        "dies, before draining and exiting with status 75 (default 5)")
    p.add_argument("--default-nudging-model", help="nudger when a request names none")
    p.add_argument("--rain-max-visits", type=int, help="cap on RAIN's max_visits")
    p.add_argument("--rain-max-parallel-searches", type=int)
    p.add_argument("--rain-max-rollout-tokens", type=int)
    p.add_argument("--rain-max-engine-calls", type=int, help="engine calls per RAIN request")
    p.add_argument("--rain-max-tree-nodes", type=int,
                   help="nodes a RAIN return_tree lists per choice (default 2000)")
    p.add_argument("--prepare-only", action="store_true",
                   help="convert/check the models' weights and exit")
    args = vars(p.parse_args(argv))
    prepare_only = args.pop("prepare_only")
    overrides = {k: v for k, v in args.items() if v is not None}
    if "allowed_origins" in overrides:
        overrides["allowed_origins"] = [o.strip() for flag in overrides["allowed_origins"]
                                        for o in flag.split(",") if o.strip()]
    if "models" in overrides:
        overrides["models"] = [ModelSpec.parse(m) for m in overrides["models"]]
    return Settings(**overrides), prepare_only


def main(argv: Sequence[str] | None = None) -> None:
    settings, prepare_only = parse_args(argv)
    configure_logging(settings.log_level)
    from decoding.errors import ModelUnavailable
    from server.engines import prepare_models

    try:
        folders = prepare_models(settings)  # fail here, clearly, before any engine starts
        if prepare_only:
            for model_id, folder in folders.items():
                print(f"{model_id}: {folder}")
            return
        from server.app import build_app
        from server.runner import serve

        status = serve(build_app(settings), settings)
    except ModelUnavailable as exc:
        sys.exit(f"align-serve: {exc.message}")
    sys.exit(status)
