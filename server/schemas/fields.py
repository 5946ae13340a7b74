"""Field types shared by the wire models."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

#: vLLM's bound for `seed` (a signed 64-bit integer).
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _unicode_text(value: str) -> str:
    """JSON may carry a lone surrogate (`"\\ud800"`); no tokenizer can encode it."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PydanticCustomError(
            "lone_surrogate", "must be valid Unicode text (it contains a lone surrogate)"
        ) from None
    return value


#: Text that reaches a tokenizer: valid Unicode only.
Text = Annotated[str, AfterValidator(_unicode_text)]
StopText = Annotated[str, Field(min_length=1), AfterValidator(_unicode_text)]
