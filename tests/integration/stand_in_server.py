"""align-serve over stand-in engines, served for real by uvicorn (for gateway tests).

    python -m tests.integration.stand_in_server --port P [--playground]

Models: `chat` (a slow stand-in: 20 ms a token) and `dead` (an engine that is dead).
At most one request in flight per model, so a second concurrent one gets 429.
With `--playground`: `chat` and `base` (both slow, so streams are visible), which serve
all three strategies (RAIN with the hash embedder), no API key and no admission limit:
the playground page over stand-ins, to look at without vLLM.
"""

from __future__ import annotations

import argparse
import asyncio

import uvicorn

from decoding.embeddings import HashEmbedder
from decoding.stand_in import StandInEngine
from decoding.strategies import STRATEGIES, RainStrategy
from server.app import build_app
from server.config import Settings


class SlowStandIn(StandInEngine):
    async def generate(self, prompt_token_ids, options, request_id):
        async for chunk in super().generate(prompt_token_ids, options, request_id):
            await asyncio.sleep(0.02)
            yield chunk


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--playground", action="store_true")
    args = parser.parse_args()
    if args.playground:
        STRATEGIES["rain"] = RainStrategy(HashEmbedder())
        engines = {"chat": SlowStandIn("chat", max_model_len=4096),
                   "base": SlowStandIn("base", role="base", max_model_len=4096)}
        settings = Settings(models=[], default_nudging_model="chat")
        uvicorn.run(build_app(settings, engines), host="127.0.0.1", port=args.port,
                    log_level="warning")
        return
    dead = StandInEngine("dead")
    dead.dead = True
    engines = {"chat": SlowStandIn("chat"), "dead": dead}
    settings = Settings(models=[], api_keys=["gateway-key"], max_concurrent_requests=1)
    uvicorn.run(build_app(settings, engines), host="127.0.0.1", port=args.port,
                log_level="warning")


if __name__ == "__main__":
    main()
