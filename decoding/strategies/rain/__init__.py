"""RAIN (arXiv 2309.07124): rewindable tree search guided by the model's own judgement."""

from decoding.strategies.rain.params import RainParams
from decoding.strategies.rain.search import RainStrategy

__all__ = ["RainParams", "RainStrategy"]
