"""RAIN's parameters (validated at the HTTP edge); defaults are the reference's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

EvaluationMode = Literal["votes", "soft", "calibrated"]


@dataclass(frozen=True, slots=True)
class RainParams:
    c: float = 2.0                      # exploration weight of the PUCT rule
    similarity_gamma: float = 0.2       # weight of a similar sibling's value
    similarity_threshold: float = 0.95  # cosine similarity that counts as "similar"
    max_visits: int = 50                # maxT: visits of the root per decision
    min_visits: int = 6                 # minT: early stop needs fn > this ...
    value_threshold: float = 0.8        # Vt: ... and q > this
    min_searches: int = 15              # new searches per decision, at least
    candidates: int = 10                # children per expansion
    chain_top_k: int = 15               # sampled chains draw from the top-k tokens
    max_children: int = 20              # dynamic node addition only below this
    addition_variance: float = 0.03     # ... and when the children's spread < this × length
    root_prior_mix: float = 0.25        # share of the uniform prior at the root
    token_set_lengths: tuple[int, ...] = (1, 2, 4, 10)
    rollout_max_tokens: int = 64
    principle: str = "harmless"
    evaluation: EvaluationMode = "votes"
    evaluator_model: str | None = None  # default: the request's own model
    parallel_searches: int = 1
    max_engine_calls: int = 20_000     # per request, shared by its choices
    return_tree: bool = False
    max_tree_nodes: int = 2000          # server cap on the nodes `return_tree` lists
