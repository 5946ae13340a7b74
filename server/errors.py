"""The one place that turns failures into HTTP statuses and OpenAI's error envelope.

    Exception
    ├── APIError               raised by the server itself (status, type, code known)
    ├── decoding.DecodingError mapped by `status_for` below
    ├── RequestValidationError FastAPI/pydantic: 400 with the field path in `param`
    └── HTTPException          starlette: 404/405 for unknown routes, in the envelope

Anything else that reaches the edge becomes a logged 500 in the same envelope (see
`server.middleware.ErrorBoundary`); vLLM's own validation errors arrive here as
`InvalidRequest` (400), mapped by the engine adapter.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from decoding.errors import (
    ContextLengthExceeded,
    DecodingError,
    EngineUnavailable,
    InvalidRequest,
    ModelNotFound,
    ModelUnavailable,
)

logger = logging.getLogger(__name__)


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class APIError(Exception):
    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.detail = ErrorDetail(message=message, type=type, param=param, code=code)
        self.headers = headers


_DECODING_STATUS: list[tuple[type[DecodingError], int, str, str | None]] = [
    (ContextLengthExceeded, 400, "invalid_request_error", "context_length_exceeded"),
    (InvalidRequest, 400, "invalid_request_error", None),
    (ModelNotFound, 404, "invalid_request_error", "model_not_found"),
    (ModelUnavailable, 503, "service_unavailable_error", "model_unavailable"),
    (EngineUnavailable, 503, "service_unavailable_error", "engine_unavailable"),
]


def api_error(exc: BaseException) -> APIError:
    """Any exception as an `APIError`; unknown ones become a logged 500."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, DecodingError):
        for cls, status, type_, code in _DECODING_STATUS:
            if isinstance(exc, cls):
                return APIError(status, exc.message, type=type_, param=exc.param, code=code)
    logger.exception("unexpected error", exc_info=exc)
    return APIError(500, "The server had an error while processing your request.",
                    type="server_error")


def error_body(error: APIError) -> str:
    """The envelope as ASCII JSON: a message may quote a lone surrogate from the request."""
    return json.dumps(ErrorResponse(error=error.detail).model_dump())


def error_json(error: APIError) -> Response:
    return Response(error_body(error), status_code=error.status, headers=error.headers,
                    media_type="application/json")


#: OpenAI/vLLM request fields we refuse by name rather than as unknown.
NOT_SUPPORTED = {
    "tools": "tool calling is not implemented.",
    "tool_choice": "tool calling is not implemented.",
    "functions": "function calling is not implemented.",
    "function_call": "function calling is not implemented.",
    "best_of": "use n (vLLM removed best_of too).",
}


_FIELD = re.compile(r"[a-z_][a-z0-9_]*")
_TYPE_NAMES = {"str", "int", "float", "bool", "list", "dict", "none"}


def field_loc(error: dict[str, Any]) -> list[Any]:
    """The error's location without the union member tags pydantic puts in it
    (`'str'`, `'list[int]'`, `'function-after[...]'`); an unknown key stays as written."""
    loc = list(error["loc"])
    keep = loc[-1:] if error["type"] == "extra_forbidden" else []
    loc = loc[: len(loc) - len(keep)]
    return [p for p in loc if isinstance(p, int)
            or (_FIELD.fullmatch(p) and p not in _TYPE_NAMES)] + keep


def param_path(loc: Sequence[Any]) -> str | None:
    """('body', 'messages', 0, 'role') → 'messages[0].role'."""
    path = ""
    for part in loc[1:] if loc and loc[0] in ("body", "query", "header") else loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path or None


def _first_error(errors: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The first error; for a union field, the member that got furthest (for `stop: [""]`
    the list's empty item, not "input should be a string")."""
    first = errors[0]
    field = field_loc(first)
    same = [e for e in errors if field_loc(e)[: len(field)] == field]
    return max(same, key=lambda e: len(field_loc(e)))


def validation_error(errors: Sequence[dict[str, Any]], prefix: str = "") -> APIError:
    """The first pydantic error as a 400, naming the field and, for typos, the word."""
    err = _first_error(errors)
    if err["type"] == "json_invalid":
        return APIError(400, "We could not parse the JSON body of your request: "
                        f"{err.get('ctx', {}).get('error', 'invalid JSON')}.")
    if err["type"] == "missing" and tuple(err["loc"]) == ("body",):
        return APIError(400, "The request needs a JSON body.")
    loc = field_loc(err)
    param = param_path(loc)
    if prefix:
        param = f"{prefix}.{param}" if param else prefix
    if err["type"] == "extra_forbidden" and loc[-1] in NOT_SUPPORTED:
        return APIError(400, f"{param} is not supported by this server; {NOT_SUPPORTED[loc[-1]]}",
                        param=param, code="unsupported_parameter")
    if err["type"] == "extra_forbidden":
        return APIError(400, f"Unrecognized request argument supplied: {param}", param=param,
                        code="unknown_parameter")
    where = f"value for {param}" if param else "request body"
    return APIError(400, f"Invalid {where}: {err['msg']}", param=param, code="invalid_value")


def install_error_handlers(app: FastAPI) -> None:
    async def on_error(_: Request, exc: Exception) -> Response:
        return error_json(api_error(exc))

    async def on_validation(_: Request, exc: RequestValidationError) -> Response:
        return error_json(validation_error(exc.errors()))

    async def on_http(_: Request, exc: HTTPException) -> Response:
        message = {404: "Not found.", 405: "Method not allowed."}.get(exc.status_code)
        return error_json(APIError(exc.status_code, message or str(exc.detail),
                                   type="invalid_request_error"))

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(APIError, on_error)
    app.add_exception_handler(DecodingError, on_error)
