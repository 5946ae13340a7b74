"""Nudging (arXiv 2410.09300): a small aligned model inserts words where a base model is unsure."""

from decoding.strategies.nudging.driver import NudgingStrategy
from decoding.strategies.nudging.params import NudgingParams

__all__ = ["NudgingParams", "NudgingStrategy"]
