"""What a served model can do for a strategy, found by trying it once at start-up."""

from __future__ import annotations

from decoding.engine import Engine
from decoding.strategies.rain.scoring import CONTENT_FREE, Evaluator, principle_for
from decoding.types import GenerationChunk


async def _never_called(*_: object) -> GenerationChunk:
    raise AssertionError("rendering a prompt makes no engine call")


def judge_problem(engine: Engine) -> str | None:
    """Why `engine` cannot be RAIN's evaluator (render its judge prompt and read the two
    option letters), or None when it can. A model without a chat template renders the
    plain transcript, so only a template that refuses the prompt's turns fails here."""
    evaluator = Evaluator(engine, principle_for("harmless"), "votes", _never_called)
    try:
        evaluator.prompt_ids(CONTENT_FREE, True)
        evaluator.labels()
    except Exception as exc:  # a chat template may raise anything (jinja, ValueError)
        return f"it cannot render RAIN's evaluator prompt ({type(exc).__name__}: {exc})"
    return None
