"""`return_tree`: what the search saw at each decision, as plain JSON-ready data.

Per committed decision: the root's children (text, prior, visits, value, whether it was
committed), then deeper nodes breadth-first while the choice's node budget lasts (the
server caps it), so a reader sees why RAIN chose what it chose.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Protocol

from decoding.engine import Engine
from decoding.strategies.rain.tree import Node


class TreeBudget(Protocol):
    tree_budget: int  # nodes still to be listed for this choice


def decision_view(root: Node, committed: Node, engine: Engine, budget: TreeBudget
                  ) -> dict[str, Any]:
    """The search below `root` just before `committed` (one of its children) is taken."""
    decision: dict[str, Any] = {"visits": root.fn, "children": [], "truncated": False}
    queue: deque[tuple[Node, list]] = deque((child, decision["children"])
                                            for child in root.children)
    while queue:
        node, siblings = queue.popleft()
        if budget.tree_budget <= 0:
            decision["truncated"] = True
            break
        budget.tree_budget -= 1
        view = node_view(node, engine)
        if node.parent is root:
            view["committed"] = node is committed
        siblings.append(view)
        queue.extend((child, view["children"]) for child in node.children)
    return decision


def node_view(node: Node, engine: Engine) -> dict[str, Any]:
    return {"text": engine.detokenize(node.token_ids), "token_ids": list(node.token_ids),
            "prior": round(node.prior, 6), "visits": round(node.n, 4),
            "whole_visits": node.fn, "value": round(node.q, 6), "terminal": node.terminal,
            "children": []}
