"""The server process: uvicorn, its signals, its drain, and when to exit non-zero.

SIGTERM or SIGINT     stop accepting connections; requests in flight have
                      `--shutdown-drain` seconds to finish, then end with a 503 (an
                      error event and `[DONE]` in a stream), which aborts their engine
                      requests; the engines stop; exit status 0. A second signal
                      exits at once.
a local engine dies   its requests fail with 503 and `/health` names it; the other
                      models keep serving for `--dead-engine-exit-after` seconds, then
                      the server drains as above and exits with status 75
                      (EX_TEMPFAIL), so Docker or Kubernetes restarts it, as vLLM's
                      own server stops when its engine dies. A remote engine is
                      someone else's process: its failures are 503s, never an exit.
engines fail to start exit status 3 (uvicorn's startup failure).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from decoding.engine import Engine
from server.config import Settings
from server.draining import Drain

logger = logging.getLogger(__name__)

EXIT_ENGINE_DIED = 75  # EX_TEMPFAIL: a restart is the remedy
#: Seconds between looks at the engines (vLLM marks a dead engine at once; this only
#: bounds how late the exit countdown starts).
WATCH_INTERVAL = 0.5
#: Seconds past the drain for requests cut short to write their last event and for their
#: engine requests to be aborted, before uvicorn cancels what is left.
END_MARGIN = 5.0


def serve(app: FastAPI, settings: Settings) -> int:
    """Serve until told to stop, or until a local engine dies; the exit status."""
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,  # root's format
        timeout_graceful_shutdown=settings.shutdown_drain + END_MARGIN,
    )
    server = _Server(config, app, settings)
    server.run()
    return server.exit_status


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI, settings: Settings) -> None:
        super().__init__(config)
        self.app = app
        self.drain: Drain = app.state.drain
        self.settings = settings
        self.exit_status = 0
        self._watcher: asyncio.Task | None = None

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Our handlers on the loop, instead of uvicorn's, which re-raise the signal after
        the shutdown: the process would then die of SIGTERM instead of exiting 0."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.should_exit:
            logger.warning("%s again: exiting without waiting for requests", sig.name)
            self.force_exit = True
            return
        logger.info(
            "%s: draining (up to %.0f s) and exiting", sig.name, self.settings.shutdown_drain
        )
        self.should_exit = True

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.started:
            self._watcher = asyncio.create_task(
                self._exit_when_an_engine_dies(self.app.state.engines)
            )

    async def shutdown(self, sockets=None) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        self.drain.close(self.settings.shutdown_drain)
        if self.drain.in_flight:
            logger.info(
                "%d request(s) in flight get %.0f s to finish",
                self.drain.in_flight,
                self.settings.shutdown_drain,
            )
        await super().shutdown(sockets)

    async def _exit_when_an_engine_dies(self, engines: Mapping[str, Engine]) -> None:
        local = {model: engine for model, engine in engines.items() if engine.info.local}
        while not (dead := [model for model, engine in local.items() if engine.dead]):
            await asyncio.sleep(WATCH_INTERVAL)
        delay = self.settings.dead_engine_exit_after
        logger.error(
            "the engine of %s died: its requests fail with 503; the other models "
            "serve for %.0f s more, then the server drains and exits (status %d) "
            "to be restarted",
            ", ".join(map(repr, dead)),
            delay,
            EXIT_ENGINE_DIED,
        )
        await asyncio.sleep(delay)
        self.exit_status = EXIT_ENGINE_DIED
        self.should_exit = True
