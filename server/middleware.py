"""ASGI middleware: the error boundary and the body size limit."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.errors import APIError, api_error, error_json
from server.logs import accept_request_id, request_id


class ErrorBoundary:
    """Any exception left unhandled becomes an OpenAI-shaped error response.

    Starlette's own catch-all answers 500 and then re-raises, and uvicorn closes the
    connection of a request whose app raised: a keep-alive client (an SDK's pool, a
    gateway's upstream) then sees its next request reset. Here nothing is re-raised;
    once a response has started, the exception can only end it (uvicorn then closes
    the connection, which is right for a truncated body).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            error = api_error(exc)  # logs what is not the client's fault
            if not started:
                await error_json(error)(scope, receive, send)


class RequestId:
    """`X-Request-Id`: the client's (or a new one), echoed on the response and set as the
    request's id for logging and engine request ids (as vLLM's server does)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(b"x-request-id")
        rid = accept_request_id(given.decode("latin-1") if given is not None else None)
        token = request_id.set(rid)

        async def echoed(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ())
                           if k.lower() != b"x-request-id"]
                message = message | {"headers": [*headers, (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, echoed)
        finally:
            request_id.reset(token)


class BodySizeLimit:
    """413 for bodies over the limit, by Content-Length or by counting a chunked body."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = APIError(413, f"Request body exceeds {self.max_bytes} bytes.",
                             code="request_too_large")
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await error_json(too_large)(scope, receive, send)
        seen = 0

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise too_large
            return message

        await self.app(scope, counted, send)
