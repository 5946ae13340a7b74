"""The request id of the request being served, on every log line written for it."""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar

#: Set by `server.middleware.RequestId` for the request's task (and the tasks it starts).
request_id: ContextVar[str] = ContextVar("request_id", default="-")
FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
_ACCEPTED = re.compile(r"[\x21-\x7e]{1,128}")


def accept_request_id(given: str | None) -> str:
    """The client's `X-Request-Id` if it is 1-128 visible ASCII characters, else a new one
    (it becomes part of every engine request id and of log lines)."""
    return given if given is not None and _ACCEPTED.fullmatch(given) else uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record a handler formats."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


def configure_logging(level: str) -> None:
    """Root handler with the request id; uvicorn's loggers propagate to it."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    logging.basicConfig(level=level.upper(), format=FORMAT, handlers=[handler])
