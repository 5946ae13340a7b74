"""The deadlines of the requests in flight, which a shutdown brings forward.

Every decoding runs under one `asyncio.timeout` (its `--request-timeout`). When the
server is asked to stop, `close(grace)` moves every such deadline, and those of requests
that start later, to `grace` seconds from now: requests that finish by then are
answered normally, the others end the way a deadline ends them (engine requests
aborted, a 503 or, in a stream, an error event and `[DONE]`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class Drain:
    def __init__(self) -> None:
        self.closing_at: float | None = None  # event-loop time of the shutdown's deadline
        self._running: set[asyncio.Timeout] = set()

    @asynccontextmanager
    async def deadline(self, seconds: float | None) -> AsyncIterator[asyncio.Timeout]:
        """`asyncio.timeout(seconds)`, never later than the shutdown's deadline."""
        async with asyncio.timeout(seconds) as timeout:
            self._bring_forward(timeout)
            self._running.add(timeout)
            try:
                yield timeout
            finally:
                self._running.discard(timeout)

    def close(self, grace: float) -> None:
        """Give every request, running or yet to come, at most `grace` more seconds."""
        self.closing_at = asyncio.get_running_loop().time() + grace
        for timeout in self._running:
            self._bring_forward(timeout)

    def cut_short(self, timeout: asyncio.Timeout) -> bool:
        """Whether `timeout` ran out at the shutdown's deadline, not at its own."""
        return self.closing_at is not None and timeout.when() == self.closing_at

    @property
    def in_flight(self) -> int:
        return len(self._running)

    def _bring_forward(self, timeout: asyncio.Timeout) -> None:
        when = timeout.when()
        if self.closing_at is not None and (when is None or when > self.closing_at):
            timeout.reschedule(self.closing_at)
