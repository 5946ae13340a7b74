"""Domain errors of the decoding layer; they know nothing of HTTP.

    DecodingError
    ├── InvalidRequest          the request cannot be served as asked (bad value)
    │   └── ContextLengthExceeded
    ├── ModelNotFound           no served model has that id
    ├── ModelUnavailable        the weights cannot be found locally
    └── EngineUnavailable       the engine is dead or shutting down

`server.errors` maps each to an HTTP status and the OpenAI error envelope.
"""

from __future__ import annotations


class DecodingError(Exception):
    """Base class; `param` names the request field at fault, if any."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class InvalidRequest(DecodingError):
    pass


class ContextLengthExceeded(InvalidRequest):
    pass


class ModelNotFound(DecodingError):
    pass


class ModelUnavailable(DecodingError):
    pass


class EngineUnavailable(DecodingError):
    pass
