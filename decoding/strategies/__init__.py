"""The decoding strategies, by the name a request selects them with."""

from decoding.strategies.base import DecodeRequest, DecodeRun, Strategy, TextDelta
from decoding.strategies.vanilla import VanillaParams, VanillaStrategy

STRATEGIES: dict[str, Strategy] = {VanillaStrategy.name: VanillaStrategy()}

__all__ = [
    "STRATEGIES",
    "DecodeRequest",
    "DecodeRun",
    "Strategy",
    "TextDelta",
    "VanillaParams",
    "VanillaStrategy",
]
