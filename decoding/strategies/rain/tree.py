"""RAIN's search tree and its arithmetic, as pure functions over `Node`s.

A node is a token set appended to its parent's text. `n` counts visits (fractional:
similar siblings share value), `fn` whole visits, `q` the mean value in [-1, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(eq=False, slots=True)
class Node:
    token_ids: tuple[int, ...]
    prior: float
    depth: int
    weight: float = 0.0         # unnormalised prior, for widening the parent later
    parent: Node | None = None
    children: list[Node] = field(default_factory=list)
    n: float = 0.0
    fn: int = 0
    q: float = 0.0
    embedding: np.ndarray | None = None
    terminal: bool = False
    virtual: int = 0            # in-flight parallel searches through this node
    reserve: list[tuple[tuple[int, ...], float]] = field(default_factory=list)  # next tokens

    def path_from_root(self) -> list[Node]:
        path, node = [], self
        while node is not None:
            path.append(node)
            node = node.parent
        return path[::-1]


def set_length(depth: int, schedule: Sequence[int]) -> int:
    """Tokens in a set at `depth` (1 = the first set after the original root)."""
    return schedule[min(depth, len(schedule)) - 1]


def mix_priors(priors: Sequence[float], mix: float) -> list[float]:
    """Root priors: (1 − mix)·p + mix·uniform, renormalised."""
    mixed = [(1 - mix) * p + mix / len(priors) for p in priors]
    total = sum(mixed)
    return [p / total for p in mixed]


def added_prior(sibling_weights: Sequence[float], weight: float, mix: float | None) -> float:
    """The prior of a child added by dynamic node addition: its weight normalised over
    its siblings' and its own, mixed with the uniform prior at the root (`mix` None
    elsewhere). As the reference, the siblings keep the priors they have."""
    total = sum(sibling_weights) + weight
    count = len(sibling_weights) + 1
    prior = weight / total if total > 0 else 1 / count
    return prior if mix is None else (1 - mix) * prior + mix / count


def normalise(priors: Sequence[float]) -> list[float]:
    total = sum(priors)
    return [p / total for p in priors] if total > 0 else [1 / len(priors)] * len(priors)


def clamp_greedy_prior(greedy: float, sampled: Sequence[float]) -> float:
    """The reference bounds the greedy chain's prior by its sampled siblings'."""
    if not sampled:
        return greedy
    return max(min(greedy, sum(sampled)), max(sampled) + min(sampled))


def topk_probability(chosen_logprob: float, top_logprobs: Sequence[float]) -> float:
    """A token's probability renormalised over the top-k it was drawn from (its raw
    probability when the engine returned no usable top-k: seen once, on the real engine
    under parallel seeded searches, as a division by zero)."""
    total = sum(math.exp(lp) for lp in top_logprobs)
    return math.exp(chosen_logprob) / total if total > 0 else math.exp(chosen_logprob)


def effective(node: Node) -> tuple[float, float]:
    """(n, q) counting in-flight searches as losses (virtual loss, value −1 each)."""
    n = node.n + node.virtual
    if n == 0:
        return 0.0, 0.0
    return n, (node.q * node.n - node.virtual) / n


def puct(child: Node, parent_n: float, c: float) -> float:
    """qh + c·p·√N(parent)/(1 + n), with qh = (q + 1)/2 once visited, else 0."""
    n, q = effective(child)
    qh = (q + 1) / 2 if n > 0 else 0.0
    return qh + c * child.prior * math.sqrt(parent_n) / (1 + n)


def select_child(node: Node, c: float) -> Node:
    parent_n = effective(node)[0]
    return max(node.children, key=lambda child: puct(child, parent_n, c))


def should_add_child(node: Node, max_children: int, variance_factor: float,
                     length: int) -> bool:
    """Children look alike (small embedding spread) and all look bad: widen the node.
    `length` is the children's set length by depth (a chain that met EOS is shorter)."""
    kids = node.children
    if not kids or len(kids) >= max_children or any(k.embedding is None for k in kids):
        return False
    spread = float(np.linalg.norm(np.var(np.stack([k.embedding for k in kids]), axis=0)))
    return spread < variance_factor * length and max(k.q for k in kids) < 0


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def backup(path: Sequence[Node], value: float, embeddings: Sequence[np.ndarray | None],
           similarity_gamma: float, threshold: float) -> int:
    """Leaf-to-root update; similar siblings get a share of the value. Returns how many.

    `embeddings[i]` is the embedding of `path[i]`'s text through the rollout (None for
    the root, which has no siblings).
    """
    updates = 0
    for node, emb in zip(reversed(path), reversed(embeddings), strict=True):
        node.n += 1
        node.fn += 1
        if emb is not None and node.parent is not None:
            if node.embedding is None:
                node.embedding = np.array(emb, dtype=np.float32)
            else:
                node.embedding += (emb - node.embedding) / node.fn
            for sibling in node.parent.children:
                if sibling is node or sibling.embedding is None:
                    continue
                s = cosine(node.embedding, sibling.embedding)
                if s < threshold:
                    continue
                w = similarity_gamma * s
                sibling.q = (sibling.q * sibling.n + w * value) / (sibling.n + w)
                sibling.n += w
                updates += 1
        node.q += (value - node.q) / node.n
    return updates


def commit_choice(root: Node) -> Node:
    """The most-visited child; ties go to the higher value. Deterministic."""
    most = max(child.n for child in root.children)
    return max((c for c in root.children if c.n == most), key=lambda c: c.q)


def reroot(child: Node, mix: float) -> Node:
    """The committed child becomes the root, keeping its subtree; its children's priors
    are mixed with the uniform prior as at any root."""
    child.parent = None
    if child.children:
        for kid, p in zip(child.children, mix_priors([k.prior for k in child.children], mix),
                          strict=True):
            kid.prior = p
    return child
