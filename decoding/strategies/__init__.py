"""The decoding strategies, by the name a request selects them with."""

from decoding.strategies.base import DecodeRequest, DecodeRun, Strategy, TextDelta
from decoding.strategies.nudging import NudgingParams, NudgingStrategy
from decoding.strategies.rain import RainParams, RainStrategy
from decoding.strategies.vanilla import VanillaParams, VanillaStrategy

STRATEGIES: dict[str, Strategy] = {
    strategy.name: strategy for strategy in (VanillaStrategy(), NudgingStrategy(), RainStrategy())
}

__all__ = [
    "STRATEGIES",
    "DecodeRequest",
    "DecodeRun",
    "NudgingParams",
    "NudgingStrategy",
    "RainParams",
    "RainStrategy",
    "Strategy",
    "TextDelta",
    "VanillaParams",
    "VanillaStrategy",
]
