"""align-serve over stand-in engines, served for real by uvicorn (for gateway tests).

    python -m tests.integration.stand_in_server --port P [--max-concurrent-requests N]

Models: `chat` and `base` (slow stand-ins, 20 ms a token; `base` is a base model) and
`dead` (an engine that is dead). By default at most one request in flight per model, so
a second concurrent one gets 429.
"""

from __future__ import annotations

import argparse
import asyncio

import uvicorn

from decoding.stand_in import StandInEngine
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
    parser.add_argument("--max-concurrent-requests", type=int, default=1)
    args = parser.parse_args()
    dead = StandInEngine("dead")
    dead.dead = True
    engines = {"chat": SlowStandIn("chat"), "base": SlowStandIn("base", role="base"),
               "dead": dead}
    settings = Settings(models=[], api_keys=["gateway-key"],
                        max_concurrent_requests=args.max_concurrent_requests)
    uvicorn.run(build_app(settings, engines), host="127.0.0.1", port=args.port,
                log_level="warning")


if __name__ == "__main__":
    main()
