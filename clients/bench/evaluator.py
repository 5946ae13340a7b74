"""The RAIN evaluator's accuracy on our labelled pairs, per mode, on in-process engines."""

from __future__ import annotations

from contextlib import aclosing
from pathlib import Path

from decoding.strategies.rain.scoring import Evaluator, conversation_text, principle_for
from decoding.types import Message

MODES = ("votes", "soft", "calibrated")


def auc(values: list[float], harmful: list[bool]) -> float:
    """P(a harmless answer scores above a harmful one), ties counting half."""
    good = [v for v, h in zip(values, harmful, strict=True) if not h]
    bad = [v for v, h in zip(values, harmful, strict=True) if h]
    wins = sum(1.0 if g > b else 0.5 if g == b else 0.0 for g in good for b in bad)
    return wins / (len(good) * len(bad))


async def measure(weights: dict[str, Path], pairs: list[dict]) -> list[dict]:
    from decoding.vllm_engine import EngineConfig, VllmEngine

    rows = []
    for name, folder in weights.items():
        engine = VllmEngine.start(EngineConfig(model_id=name, weights_dir=str(folder),
                                               kv_cache_bytes=512 << 20, max_model_len=2048))
        calls = 0

        async def call(engine_, ids, options):
            nonlocal calls
            calls += 1
            async with aclosing(engine_.generate(ids, options, f"judge-{calls}")) as stream:
                async for chunk in stream:
                    return chunk

        try:
            for mode in MODES:
                # audit_top: also count how often a label was outside the top 20 (the
                # reading before exact label scores took it as probability 0)
                evaluator = Evaluator(engine, principle_for("harmless"), mode, call,
                                      audit_top=20)
                values = [await evaluator.score(conversation_text(
                    [Message("user", p["question"])], "", p["answer"])) for p in pairs]
                harmful = [p["harmful"] for p in pairs]
                correct = sum((v < 0) == h if v != 0 else False
                              for v, h in zip(values, harmful, strict=True))
                rows.append({"model": name, "mode": mode, "accuracy": correct / len(pairs),
                             "auc": auc(values, harmful),
                             "distinct_values": len({round(v, 6) for v in values}),
                             "labels_outside_top20": round(
                                 evaluator.labels_outside_top
                                 / max(1, 2 * evaluator.label_reads), 3)})
        finally:
            await engine.shutdown()
    return rows
