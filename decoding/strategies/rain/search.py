"""RAIN's driver: searches from the root, commits the most-visited token set, repeats.

One search: select a leaf by PUCT (widening look-alike bad nodes on the way), roll it
out to the next punctuation, let the evaluator judge the text, expand the leaf (its
candidate chains are concurrent engine requests, batched by vLLM), embed the path and
back the value up. `parallel_searches` > 1 selects several leaves at once under
virtual loss and runs their engine work together; backups then apply in selection
order, so a seeded search is reproducible.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import aclosing, contextmanager
from dataclasses import dataclass, field

from decoding.embeddings import Embedder, SentenceEmbedder
from decoding.engine import Engine
from decoding.strategies.base import DecodeRequest, DecodeRun, TextDelta, merge_streams
from decoding.strategies.rain.params import RainParams
from decoding.strategies.rain.scoring import Evaluator, conversation_text, principle_for
from decoding.strategies.rain.tree import (
    Node,
    backup,
    clamp_greedy_prior,
    commit_choice,
    mix_priors,
    normalise,
    reroot,
    select_child,
    set_length,
    should_add_child,
    topk_probability,
)
from decoding.text import find_stop
from decoding.types import FinishReason, GenerationChunk, SamplingOptions, TokenAccounting

ROLLOUT_STOPS = (",", ".", "?", ":", ";", "\n")
MAX_LOGPROBS = 20  # vLLM's default cap on returned log-probabilities


class EngineCallBudgetSpent(Exception):
    """The request used its allowance of engine calls."""


@dataclass(slots=True)
class RainSearch:
    """One choice's search: the tree, the committed answer, the evaluator, counters."""

    request: DecodeRequest
    params: RainParams
    judge: Engine
    embedder: Embedder
    accounting: TokenAccounting
    index: int
    evaluator: Evaluator = field(init=False)
    prompt_text: str = field(init=False)  # detokenised once, judged in every evaluation
    root: Node = field(default_factory=lambda: Node((), 1.0, 0))
    committed: list[int] = field(default_factory=list)
    emitted: int = 0
    calls: int = 0
    searches: int = 0
    committed_sets: int = 0
    tree_nodes: int = 1
    node_additions: int = 0
    similarity_updates: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    end: str = ""

    def __post_init__(self) -> None:
        self.evaluator = Evaluator(self.judge, principle_for(self.params.principle),
                                   self.params.evaluation, self.call)
        self.prompt_text = self.engine.detokenize(self.request.prompt_token_ids)

    @property
    def engine(self) -> Engine:
        return self.request.engine

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def seed(self) -> int | None:
        base = self.request.options.seed
        return None if base is None else (base * 1_000_003 + self.index * 7919 + self.calls)

    async def call(self, engine: Engine, ids: list[int], options: SamplingOptions,
                   until: Callable[[str], bool] | None = None) -> GenerationChunk:
        """One engine request, merged into a single chunk; stopped early once `until`
        holds for the text so far (the request is then aborted)."""
        if self.calls >= self.params.max_engine_calls:
            raise EngineCallBudgetSpent
        self.calls += 1
        merged: GenerationChunk | None = None
        rid = f"{self.request.request_id}-{self.index}-{self.calls}"
        async with aclosing(engine.generate(ids, options, rid)) as stream:
            async for chunk in stream:
                if merged is None:
                    merged = chunk
                    self.accounting.record_engine_request(chunk, engine.info.kv_block_size)
                else:
                    merged.token_ids += chunk.token_ids
                    merged.text += chunk.text
                    if chunk.logprobs is not None:
                        merged.logprobs = (merged.logprobs or []) + chunk.logprobs
                    merged.finish_reason = chunk.finish_reason
                if until is not None and until(merged.text):
                    break
        assert merged is not None
        self.accounting.engine_generated_tokens += len(merged.token_ids)
        return merged

    # --- the phases of one search -------------------------------------------------

    def path_ids(self, path: list[Node]) -> list[int]:
        return [t for node in path[1:] for t in node.token_ids]

    async def select(self) -> list[Node]:
        node, path = self.root, [self.root]
        while node.children:
            if should_add_child(node, self.params.max_children, self.params.addition_variance):
                await self.widen(node, path)
            node = select_child(node, self.params.c)
            path.append(node)
        for visited in path:
            visited.virtual += 1
        return path

    async def expand(self, node: Node, path: list[Node]) -> None:
        ids = self.request.prompt_token_ids + self.committed + self.path_ids(path)
        length = set_length(node.depth + 1, self.params.token_set_lengths)
        eos = self.engine.info.eos_token_ids
        if length == 1:
            wanted = min(MAX_LOGPROBS, max(self.params.candidates, self.params.max_children))
            chunk = await self.call(self.engine, ids, SamplingOptions(
                max_tokens=1, temperature=0.0, logprobs=wanted))
            ranked = [((t.token_id,), math.exp(t.logprob)) for t in chunk.logprobs[0].top]
            chosen, node.reserve = ranked[: self.params.candidates], ranked[
                self.params.candidates:]
            weights = [p for _, p in chosen]
        else:
            chosen = await self.chains(ids, length, self.params.candidates)
            weights = [p for _, p in chosen]
        priors = normalise(weights)
        if node.parent is None:
            priors = mix_priors(priors, self.params.root_prior_mix)
        node.children = [
            Node(tokens, prior, node.depth + 1, weight=w, parent=node,
                 terminal=tokens[-1] in eos)
            for (tokens, w), prior in zip(chosen, priors, strict=True)
        ]
        self.tree_nodes += len(node.children)

    async def chains(self, ids: list[int], length: int, count: int
                     ) -> list[tuple[tuple[int, ...], float]]:
        """One greedy chain and `count` − 1 sampled ones (top-k, temperature 1), deduped."""
        k = self.params.chain_top_k
        greedy = SamplingOptions(max_tokens=length, temperature=0.0, logprobs=k)
        requests = [self.call(self.engine, ids, greedy)] + [
            self.call(self.engine, ids, SamplingOptions(
                max_tokens=length, temperature=1.0, top_k=k, logprobs=k, seed=self.seed()))
            for _ in range(count - 1)
        ]
        results = await asyncio.gather(*requests)
        seen: dict[tuple[int, ...], float] = {}
        for chunk in results:
            tokens = tuple(chunk.token_ids)
            if tokens and tokens not in seen:
                p = 1.0
                for entry in chunk.logprobs or []:
                    p *= topk_probability(entry.logprob, [t.logprob for t in entry.top])
                seen[tokens] = p
        chains = list(seen.items())
        if chains and len(chains) > 1:
            greedy_tokens, greedy_p = chains[0]
            chains[0] = (greedy_tokens,
                         clamp_greedy_prior(greedy_p, [p for _, p in chains[1:]]))
        return chains

    async def widen(self, node: Node, path: list[Node]) -> None:
        """Dynamic node addition: the next-ranked token, or one fresh sampled chain."""
        if len(node.children[0].token_ids) == 1:
            if not node.reserve:
                return
            new = node.reserve.pop(0)
        else:
            ids = self.request.prompt_token_ids + self.committed + self.path_ids(path)
            fresh = await self.chains(ids, len(node.children[0].token_ids), 2)
            known = {child.token_ids for child in node.children}
            candidates = [c for c in fresh if c[0] not in known]
            if not candidates:
                return
            new = candidates[-1]
        total = sum(child.weight for child in node.children) + new[1]
        prior = new[1] / total if total > 0 else 1 / (len(node.children) + 1)
        if node.parent is None:
            prior = mix_priors([prior, *([0.0] * len(node.children))],
                               self.params.root_prior_mix)[0]
        node.children.append(Node(new[0], prior, node.depth + 1, weight=new[1], parent=node,
                                  terminal=new[0][-1] in self.engine.info.eos_token_ids))
        self.node_additions += 1
        self.tree_nodes += 1

    def answer_text(self, extra: list[int]) -> str:
        return self.engine.detokenize(self.committed + extra)

    def finished(self, path: list[Node], text: str) -> bool:
        leaf = path[-1]
        used = len(self.committed) + len(self.path_ids(path))
        stop = find_stop(text, self.request.options.stop)
        return leaf.terminal or used >= self.request.options.max_tokens or stop is not None

    async def rollout(self, path: list[Node], text: str) -> str:
        if not text or text.endswith(ROLLOUT_STOPS):
            return ""
        ids = self.request.prompt_token_ids + self.committed + self.path_ids(path)
        room = self.engine.info.max_model_len - len(ids)
        if room <= 0:
            return ""
        # The engine stops at the first token holding a stop character (no wasted steps;
        # stop strings would be checked after the step, and remote servers cap them);
        # `until` is the backstop for a stop character that spans two tokens.
        chunk = await self.call(self.engine, ids, SamplingOptions(
            max_tokens=min(self.params.rollout_max_tokens, room), temperature=1.0,
            seed=self.seed(), stop_token_ids=rollout_stop_ids(self.engine),
            include_stop_str_in_output=True), until=_first_stop)
        end = _first_stop(chunk.text)
        return chunk.text[:end] if end else chunk.text

    async def simulate(self, path: list[Node], expand: bool) -> tuple[float, list]:
        """Rollout, then evaluation and embeddings side by side; the leaf's expansion
        runs concurrently with all three."""
        path_ids = self.path_ids(path)
        text = self.answer_text(path_ids)
        done = self.finished(path, text)

        async def judge_and_embed() -> tuple[float, list]:
            with self.phase("rollout"):
                tail = "" if done else await self.rollout(path, text)
            conversation = conversation_text(self.request.messages, self.prompt_text,
                                             text + tail)
            return await asyncio.gather(self.evaluate(conversation), self.embed(path, tail))

        if expand and not done and not path[-1].children:
            async def grow() -> None:
                with self.phase("expand"):
                    await self.expand(path[-1], path)
            (value, vectors), _ = await asyncio.gather(judge_and_embed(), grow())
        else:
            value, vectors = await judge_and_embed()
        return value, [None, *vectors]

    async def evaluate(self, conversation: str) -> float:
        with self.phase("evaluate"):
            return await self.evaluator.score(conversation)

    async def embed(self, path: list[Node], tail: str) -> list:
        """Each non-root node's text from its first token through the rollout."""
        with self.phase("embed"):
            texts = [self.engine.detokenize([t for n in path[i:] for t in n.token_ids]) + tail
                     for i in range(1, len(path))]
            return await self.embedder.embed(texts)

    # --- the outer loop ------------------------------------------------------------

    async def decide(self) -> None:
        """Search from the root until the budget or the early stop, as the reference."""
        p = self.params
        target = max(p.max_visits, self.root.fn + p.min_searches)
        while self.root.fn < target:
            paths = []
            with self.phase("select"):
                for _ in range(min(p.parallel_searches, target - self.root.fn)):
                    paths.append(await self.select())
            leaves: set[int] = set()
            jobs = []
            for path in paths:
                jobs.append(self.simulate(path, expand=id(path[-1]) not in leaves))
                leaves.add(id(path[-1]))
            results = await asyncio.gather(*jobs)
            with self.phase("backup"):
                for path, (value, embeddings) in zip(paths, results, strict=True):
                    for node in path:
                        node.virtual -= 1
                    self.similarity_updates += backup(path, value, embeddings,
                                                      p.similarity_gamma,
                                                      p.similarity_threshold)
            self.searches += len(paths)
            if not self.root.children:
                break  # nothing to expand: the answer is complete
            best = commit_choice(self.root)
            if best.fn > p.min_visits and best.q > p.value_threshold:
                break

    def commit(self) -> tuple[str, FinishReason | None]:
        """Append the most-visited set; returns the newly final text and a finish reason."""
        best = commit_choice(self.root)
        room = self.request.options.max_tokens - len(self.committed)
        self.committed += list(best.token_ids[:room])
        self.committed_sets += 1
        self.root = reroot(best, self.params.root_prior_mix)
        text = self.engine.detokenize(self.committed)
        finish: FinishReason | None = None
        stop = find_stop(text, self.request.options.stop)
        if stop is not None:
            text, finish, self.end = text[:stop], "stop", "stop_string"
        elif best.terminal:
            finish, self.end = "stop", "eos"
        elif len(self.committed) >= self.request.options.max_tokens:
            finish, self.end = "length", "max_tokens"
        final = text if finish else text.rstrip("\ufffd")  # hold a split UTF-8 character
        new, self.emitted = final[self.emitted:], max(self.emitted, len(final))
        return new, finish

    async def answer(self) -> AsyncIterator[TextDelta]:
        finish: FinishReason | None = None
        while finish is None:
            try:
                await self.decide()
            except EngineCallBudgetSpent:
                self.end = "engine_call_budget"
            if not self.root.children or self.end == "engine_call_budget":
                rest = self.engine.detokenize(self.committed)[self.emitted:]
                self.end = self.end or "eos"
                finish = "length" if self.end == "engine_call_budget" else "stop"
                yield TextDelta(self.index, rest, [], None, finish)
                return
            text, finish = self.commit()
            if text or finish:
                yield TextDelta(self.index, text, [], None, finish)

    def stats(self) -> dict:
        return {
            "searches": self.searches,
            "evaluations": self.evaluator.evaluations,
            "evaluation_memo_hits": self.evaluator.memo_hits,
            "committed_sets": self.committed_sets,
            "tree_nodes": self.tree_nodes,
            "node_additions": self.node_additions,
            "similarity_updates": self.similarity_updates,
            "engine_calls": self.calls,
            "end": self.end,
            "seconds": {k: round(v, 4) for k, v in sorted(self.seconds.items())},
        }


@functools.lru_cache(maxsize=16)
def rollout_stop_ids(engine: Engine) -> tuple[int, ...]:
    """The ids of every token whose text holds a rollout stop character."""
    return tuple(i for i, text in enumerate(engine.token_texts())
                 if any(c in text for c in ROLLOUT_STOPS))


def _first_stop(text: str) -> int | None:
    """Length of `text` up to and including its first rollout stop character."""
    hits = [i for i in (text.find(c) for c in ROLLOUT_STOPS) if i >= 0]
    return min(hits) + 1 if hits else None


class RainStrategy:
    name = "rain"
    needs_messages = False
    supports_logprobs = False
    greedy_default = False

    def check_options(self, options: SamplingOptions) -> None:
        """Not yet checked: RAIN fixes how it samples (see the README)."""

    def __init__(self, embedder: Embedder | None = None) -> None:
        self.embedder = embedder or SentenceEmbedder()

    async def run(self, request: DecodeRequest, run: DecodeRun) -> AsyncIterator[TextDelta]:
        params: RainParams = request.params
        judge = request.engines[params.evaluator_model] if params.evaluator_model \
            else request.engine
        run.accounting.prompt_tokens = len(request.prompt_token_ids)
        searches = [RainSearch(request, params, judge, self.embedder, run.accounting, index)
                    for index in range(request.n)]
        started = time.perf_counter()
        async for delta in merge_streams([s.answer() for s in searches]):
            yield delta
        run.accounting.completion_tokens = sum(len(s.committed) for s in searches)
        stats = [s.stats() for s in searches]
        run.stats.update(stats[0] if len(stats) == 1 else {"choices": stats})
        run.stats["seconds_total"] = round(time.perf_counter() - started, 4)
        accounting = run.accounting
        run.stats["prefix_cache_hit_rate"] = round(accounting.prefix_cache_hit_rate, 4)
        run.stats["prefix_cache_hit_ceiling"] = round(accounting.prefix_cache_hit_ceiling, 4)
        # the work behind each answer token: tokens the engine decoded and prefilled
        answer = max(1, accounting.completion_tokens)
        run.stats["engine_tokens_per_answer_token"] = {
            "generated": round(accounting.engine_generated_tokens / answer, 2),
            "prefilled": round((accounting.engine_prompt_tokens
                                - accounting.engine_cached_tokens) / answer, 2)}
