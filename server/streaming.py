"""The only place that writes Server-Sent Events text."""

from __future__ import annotations

from collections.abc import AsyncIterator

from pydantic import BaseModel

from server.errors import api_error, error_body

DONE = "data: [DONE]\n\n"


def sse(payload: BaseModel, *, exclude: set[str] | None = None) -> str:
    return f"data: {payload.model_dump_json(exclude=exclude)}\n\n"


def comment(note: str) -> str:
    """An SSE comment line: keeps proxies and users informed, ignored by clients."""
    return f": {' '.join(note.splitlines())}\n\n"


async def sse_stream(events: AsyncIterator[str]) -> AsyncIterator[str]:
    """Frame a stream: a failure becomes one error event; `[DONE]` always ends it."""
    try:
        async for event in events:
            yield event
    except Exception as exc:
        yield f"data: {error_body(api_error(exc))}\n\n"
    yield DONE
