"""align-serve over stand-in engines, run by the server's own runner (real uvicorn,
signals, exit status), for gateway and fault tests.

    python -m tests.integration.stand_in_server --port P [--shutdown-drain S]
        [--dead-engine-exit-after S] [--max-concurrent-requests N] [--playground]

Models: `chat` and `base` (slow stand-ins, 20 ms a token; `base` is a base model) and
`dead` (a remote engine that is down: 503s, but its death is not the server's). SIGUSR1
kills `chat`'s engine, as if its core process had died. At exit, one JSON line on stdout
gives each engine's requests still running and aborted.
With `--playground`: only `chat` and `base`, serving all three strategies (RAIN with the
hash embedder), no API key and no admission limit: the playground page over stand-ins,
to look at without vLLM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from decoding.embeddings import HashEmbedder
from decoding.stand_in import StandInEngine
from decoding.strategies import STRATEGIES, RainStrategy
from server.app import build_app
from server.config import Settings
from server.runner import serve


class SlowStandIn(StandInEngine):
    async def generate(self, prompt_token_ids, options, request_id):
        async for chunk in super().generate(prompt_token_ids, options, request_id):
            await asyncio.sleep(0.02)
            yield chunk


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--shutdown-drain", type=float, default=20.0)
    parser.add_argument("--dead-engine-exit-after", type=float, default=5.0)
    parser.add_argument("--max-concurrent-requests", type=int, default=1)
    parser.add_argument("--playground", action="store_true")
    args = parser.parse_args()
    if args.playground:
        STRATEGIES["rain"] = RainStrategy(HashEmbedder())
        engines = {"chat": SlowStandIn("chat", max_model_len=4096),
                   "base": SlowStandIn("base", role="base", max_model_len=4096)}
        settings = Settings(models=[], default_nudging_model="chat", port=args.port,
                            log_level="warning")
        sys.exit(serve(build_app(settings, engines), settings))
    engines = {"chat": SlowStandIn("chat"), "base": SlowStandIn("base", role="base"),
               "dead": StandInEngine("dead", local=False)}
    engines["dead"].dead = True

    def kill_chat(*_: object) -> None:
        engines["chat"].dead = True

    signal.signal(signal.SIGUSR1, kill_chat)
    settings = Settings(models=[], api_keys=["gateway-key"], port=args.port,
                        log_level="warning", shutdown_drain=args.shutdown_drain,
                        dead_engine_exit_after=args.dead_engine_exit_after,
                        max_concurrent_requests=args.max_concurrent_requests)
    status = serve(build_app(settings, engines), settings)
    print(json.dumps({model: {"running": engine.counters.running,
                              "aborted": len(engine.aborted)}
                      for model, engine in engines.items()}), flush=True)
    sys.exit(status)


if __name__ == "__main__":
    main()
