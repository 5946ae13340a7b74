"""The one place that turns failures into HTTP statuses and OpenAI's error envelope.

    Exception
    ├── APIError               raised by the server itself (status, type, code known)
    ├── decoding.DecodingError mapped by `status_for` below
    ├── RequestValidationError FastAPI/pydantic: 400 with the field path in `param`
    └── HTTPException          starlette: 404/405 for unknown routes, in the envelope
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
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


def error_json(error: APIError) -> JSONResponse:
    return JSONResponse(ErrorResponse(error=error.detail).model_dump(), status_code=error.status,
                        headers=error.headers)


def param_path(loc: Sequence[Any]) -> str | None:
    """('body', 'messages', 0, 'role') → 'messages[0].role'."""
    path = ""
    for part in loc[1:] if loc and loc[0] in ("body", "query", "header") else loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path or None


def validation_error(errors: Sequence[dict[str, Any]], prefix: str = "") -> APIError:
    """The first pydantic error as a 400, naming the field and, for typos, the word."""
    err = errors[0]
    if err["type"] == "json_invalid":
        return APIError(400, "We could not parse the JSON body of your request: "
                        f"{err.get('ctx', {}).get('error', 'invalid JSON')}.")
    if err["type"] == "missing" and tuple(err["loc"]) == ("body",):
        return APIError(400, "The request needs a JSON body.")
    loc = list(err["loc"])
    param = param_path(loc)
    if prefix:
        param = f"{prefix}.{param}" if param else prefix
    if err["type"] == "extra_forbidden":
        return APIError(400, f"Unrecognized request argument supplied: {param}", param=param,
                        code="unknown_parameter")
    return APIError(400, f"Invalid value for {param}: {err['msg']}", param=param,
                    code="invalid_value")


def install_error_handlers(app: FastAPI) -> None:
    async def on_error(_: Request, exc: Exception) -> JSONResponse:
        return error_json(api_error(exc))

    async def on_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_json(validation_error(exc.errors()))

    async def on_http(_: Request, exc: HTTPException) -> JSONResponse:
        message = {404: "Not found.", 405: "Method not allowed."}.get(exc.status_code)
        return error_json(APIError(exc.status_code, message or str(exc.detail),
                                   type="invalid_request_error"))

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(APIError, on_error)
    app.add_exception_handler(DecodingError, on_error)
    app.add_exception_handler(Exception, on_error)
