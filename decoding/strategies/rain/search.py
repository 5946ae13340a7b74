"""RAIN's driver: searches from the root, commits the most-visited token set, repeats.

One search is the textbook loop over a `Search` state: `select` a leaf by PUCT (widening
look-alike bad nodes on the way), `expand` it (its candidate chains are concurrent
engine requests, batched by vLLM), `evaluate` it (roll out to the next punctuation, let
the evaluator judge the text, embed the path) and `back_up` the value. An expansion runs
in the background from its leaf's evaluation on; only a later descent into that leaf
waits for it, so each selection sees the tree the reference's sequential loop builds.
`parallel_searches` > 1 selects several distinct leaves at once under virtual loss;
backups then apply in selection order. Every engine request's seed is derived
from where it sits (choice, purpose, the answer's tokens so far, chain index), so a
seeded search repeats. Each round's engine work runs in a task group: whatever ends a
search (a spent budget, an error, a disconnect) aborts every request it started.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import aclosing, contextmanager
from dataclasses import dataclass, field

import numpy as np

from decoding.embeddings import Embedder, SentenceEmbedder
from decoding.engine import Engine
from decoding.errors import InvalidRequest
from decoding.seeds import derive_seed
from decoding.strategies.base import (
    DecodeRequest,
    DecodeRun,
    Progress,
    TextDelta,
    merge_streams,
    metered,
    refuse_response_format,
)
from decoding.strategies.rain.params import RainParams
from decoding.strategies.rain.scoring import Evaluator, conversation_text, principle_for
from decoding.strategies.rain.tree import (
    Node,
    added_prior,
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
from decoding.strategies.rain.tree_view import decision_view
from decoding.text import find_stop, stop_safe_length
from decoding.types import FinishReason, GenerationChunk, SamplingOptions, TokenAccounting

ROLLOUT_STOPS = (",", ".", "?", ":", ";", "\n")
MAX_LOGPROBS = 20  # vLLM's default cap on returned log-probabilities
PROGRESS_SECONDS = 1.0  # a streamed search says it is alive this often
#: Options whose meaning depends on the whole sampled history or on processed logits,
#: which RAIN's many short requests and raw-probability priors cannot reproduce.
UNSUPPORTED = ("logit_bias", "presence_penalty", "frequency_penalty", "repetition_penalty")
NEUTRAL = SamplingOptions()

Chain = tuple[tuple[int, ...], float]  # a candidate token set and its weight


def check_options(options: SamplingOptions) -> None:
    """Refuse what RAIN cannot honour, naming the field (min_tokens, ignore_eos and
    stop_token_ids apply to the committed answer's chains and rollouts)."""
    refuse_response_format(options, "rain")
    for name in UNSUPPORTED:
        if getattr(options, name) != getattr(NEUTRAL, name):
            raise InvalidRequest(f"{name} is not available with the rain strategy: its "
                                 "priors and short engine requests cannot honour it.",
                                 param=name)


class EngineCallBudgetSpent(Exception):
    """The request used its allowance of engine calls."""


@dataclass(slots=True)
class Budget:
    """Engine calls left for the whole request, shared by its choices."""

    limit: int
    used: int = 0

    def take(self) -> None:
        if self.used >= self.limit:
            raise EngineCallBudgetSpent
        self.used += 1


@dataclass(slots=True)
class Search:
    """One choice's state: the tree, the committed answer and what has been sent."""

    root: Node = field(default_factory=lambda: Node((), 1.0, 0))
    committed: list[int] = field(default_factory=list)
    sent: int = 0  # characters of the answer already streamed
    end: str = ""
    decisions: list[dict] = field(default_factory=list)  # `return_tree`'s record
    tree_budget: int = 0
    searches: int = 0
    committed_sets: int = 0
    tree_nodes: int = 1
    node_additions: int = 0
    similarity_updates: int = 0
    engine_calls: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class Visit:
    """A selected path and where its rollout's seed comes from."""

    path: list[Node]
    ordinal: int  # visits of the leaf, this one included


@dataclass(slots=True)
class Chooser:
    """Runs one choice's search: the phases, over a `Search`, with its engines."""

    request: DecodeRequest
    params: RainParams
    index: int
    judge: Engine
    embedder: Embedder
    accounting: TokenAccounting
    budget: Budget
    state: Search = field(default_factory=Search)
    evaluator: Evaluator = field(init=False)
    prompt_text: str = field(init=False)  # detokenised once, judged in every evaluation
    first_visits: int = 0  # the root's whole visits when the current decision began
    expanding: dict[Node, asyncio.Task] = field(default_factory=dict)  # in the background
    embedded: dict[str, np.ndarray] = field(default_factory=dict)  # by text
    dropped: set[asyncio.Task] = field(default_factory=set)  # cancelled, still unwinding

    def __post_init__(self) -> None:
        self.evaluator = Evaluator(self.judge, principle_for(self.params.principle),
                                   self.params.evaluation, self.call)
        self.prompt_text = self.engine.detokenize(self.request.prompt_token_ids)
        self.state.tree_budget = self.params.max_tree_nodes

    @property
    def engine(self) -> Engine:
        return self.request.engine

    @property
    def options(self) -> SamplingOptions:
        return self.request.options

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            seconds = self.state.seconds
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start

    def seed(self, purpose: str, answer: Sequence[int], *more: int) -> int | None:
        return derive_seed(self.options.seed, "rain", self.index, purpose, tuple(answer), *more)

    async def call(self, engine: Engine, ids: list[int], options: SamplingOptions,
                   until: Callable[[str], bool] | None = None) -> GenerationChunk:
        """One engine request, merged into a single chunk; stopped (and aborted) once
        `until` holds for the text so far."""
        self.budget.take()
        self.state.engine_calls += 1
        rid = f"{self.request.request_id}-{self.index}-{self.budget.used}"
        own = ids == self.request.prompt_token_ids
        merged: GenerationChunk | None = None
        async with aclosing(metered(engine, ids, options, rid, self.accounting,
                                    own_prompt=own)) as stream:
            async for chunk in stream:
                if merged is None:
                    merged = chunk
                else:
                    merged.token_ids += chunk.token_ids
                    merged.text += chunk.text
                    if chunk.logprobs is not None:
                        merged.logprobs = (merged.logprobs or []) + chunk.logprobs
                    merged.finish_reason = chunk.finish_reason
                if until is not None and until(merged.text):
                    break
        assert merged is not None
        return merged

    # --- where a node sits -------------------------------------------------------------

    def answer_ids(self, path: list[Node]) -> list[int]:
        """The answer's tokens through the end of `path`."""
        return self.state.committed + [t for node in path[1:] for t in node.token_ids]

    def room(self, answer: Sequence[int]) -> int:
        return self.options.max_tokens - len(answer)

    def child_length(self, node: Node, answer: Sequence[int]) -> int:
        """Tokens in `node`'s children: the depth's set length, within `max_tokens`."""
        return min(set_length(node.depth + 1, self.params.token_set_lengths),
                   self.room(answer))

    @property
    def ends(self) -> frozenset[int]:
        """Tokens that end the answer."""
        eos = () if self.options.ignore_eos else self.engine.info.eos_token_ids
        return frozenset((*eos, *self.options.stop_token_ids))

    def policy_options(self, answer: Sequence[int], *, max_tokens: int, **changes
                       ) -> SamplingOptions:
        """A continuation of the answer, with the client's options RAIN applies to it."""
        kept = {"ignore_eos": self.options.ignore_eos,
                "stop_token_ids": self.options.stop_token_ids,
                "skip_special_tokens": self.options.skip_special_tokens,
                "min_tokens": min(max_tokens, max(0, self.options.min_tokens - len(answer)))}
        return SamplingOptions(max_tokens=max_tokens, **(kept | changes))

    def finished(self, path: list[Node], text: str) -> bool:
        answer = self.answer_ids(path)
        return (path[-1].terminal or self.room(answer) <= 0
                or self.stop_in(text, answer) is not None)

    def stop_in(self, text: str, answer: Sequence[int]) -> int | None:
        """Where a stop string starts in `text` (none within the first `min_tokens`)."""
        skip = len(self.engine.detokenize(answer[: self.options.min_tokens]))
        found = find_stop(text[skip:], self.options.stop)
        return None if found is None else skip + found

    # --- the phases of one search --------------------------------------------------------

    async def select(self) -> Visit:
        node, path = self.state.root, [self.state.root]
        p = self.params
        while await self.settled(node):
            answer = self.answer_ids(path)
            if should_add_child(node, p.max_children, p.addition_variance,
                                self.child_length(node, answer)):
                await self.widen(node, path)
            node = select_child(node, p.c)
            path.append(node)
        for visited in path:
            visited.virtual += 1
        return Visit(path, node.fn + node.virtual)

    async def expand(self, node: Node, path: list[Node]) -> None:
        answer = self.answer_ids(path)
        ids = self.request.prompt_token_ids + answer
        length = self.child_length(node, answer)
        p = self.params
        if length == 1:
            wanted = min(MAX_LOGPROBS, max(p.candidates, p.max_children))
            chunk = await self.call(self.engine, ids, self.policy_options(
                answer, max_tokens=1, temperature=0.0, logprobs=wanted))
            ranked = [((t.token_id,), math.exp(t.logprob)) for t in chunk.logprobs[0].top]
            if len(answer) < self.options.min_tokens:  # the answer may not end yet
                ranked = [r for r in ranked if r[0][0] not in self.ends]
            chosen, node.reserve = ranked[: p.candidates], ranked[p.candidates:]
        else:
            chosen = await self.chains(ids, answer, length)
        if not chosen:
            return
        priors = normalise([w for _, w in chosen])
        if node.parent is None:
            priors = mix_priors(priors, p.root_prior_mix)
        node.children = [self.child(node, tokens, weight, prior)
                         for (tokens, weight), prior in zip(chosen, priors, strict=True)]
        self.state.tree_nodes += len(node.children)

    def child(self, node: Node, tokens: tuple[int, ...], weight: float, prior: float) -> Node:
        return Node(tokens, prior, node.depth + 1, weight=weight, parent=node,
                    terminal=tokens[-1] in self.ends)

    async def sample_chain(self, ids: list[int], answer: Sequence[int], length: int,
                           seed: int | None) -> GenerationChunk:
        k = self.params.chain_top_k
        return await self.call(self.engine, ids, self.policy_options(
            answer, max_tokens=length, temperature=1.0, top_k=k, logprobs=k, seed=seed))

    async def chains(self, ids: list[int], answer: Sequence[int], length: int) -> list[Chain]:
        """One greedy chain and `candidates` − 1 sampled ones (top-k, temperature 1),
        each with its own seed; duplicates dropped."""
        k = self.params.chain_top_k
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self.call(self.engine, ids, self.policy_options(
                answer, max_tokens=length, temperature=0.0, logprobs=k)))]
            tasks += [group.create_task(self.sample_chain(
                ids, answer, length, self.seed("chain", answer, i)))
                for i in range(1, self.params.candidates)]
        seen: dict[tuple[int, ...], float] = {}
        for task in tasks:
            tokens, weight = chain_weight(task.result())
            if tokens and tokens not in seen:
                seen[tokens] = weight
        chains = list(seen.items())
        if len(chains) > 1:
            greedy_tokens, greedy_p = chains[0]
            chains[0] = (greedy_tokens,
                         clamp_greedy_prior(greedy_p, [p for _, p in chains[1:]]))
        return chains

    async def widen(self, node: Node, path: list[Node]) -> None:
        """Dynamic node addition: the next-ranked token, or one fresh sampled chain (the
        greedy chain is a child already)."""
        answer = self.answer_ids(path)
        length = self.child_length(node, answer)
        if length == 1:
            if not node.reserve:
                return
            new = node.reserve.pop(0)
        else:
            ids = self.request.prompt_token_ids + answer
            new = chain_weight(await self.sample_chain(
                ids, answer, length, self.seed("widen", answer, len(node.children))))
            if not new[0] or new[0] in {child.token_ids for child in node.children}:
                return
        mix = self.params.root_prior_mix if node.parent is None else None
        prior = added_prior([child.weight for child in node.children], new[1], mix)
        node.children.append(self.child(node, new[0], new[1], prior))
        self.state.node_additions += 1
        self.state.tree_nodes += 1

    async def rollout(self, visit: Visit, text: str) -> str:
        """Sample on until the text ends with a stop character, as the reference."""
        if not text or text.endswith(ROLLOUT_STOPS):
            return ""
        answer = self.answer_ids(visit.path)
        ids = self.request.prompt_token_ids + answer
        room = min(self.params.rollout_max_tokens, self.room(answer),
                   self.engine.info.max_model_len - len(ids))
        if room <= 0:
            return ""
        # The engine stops at a token whose text ends with a stop character (no wasted
        # steps); `until` catches a stop character that arrives split over two tokens.
        chunk = await self.call(self.engine, ids, self.policy_options(
            answer, max_tokens=room, temperature=1.0,
            seed=self.seed("rollout", answer, visit.ordinal),
            stop_token_ids=(*rollout_stop_ids(self.engine), *self.options.stop_token_ids),
            include_stop_str_in_output=True), until=ends_rollout)
        return chunk.text

    async def evaluate(self, visit: Visit, text: str, done: bool
                       ) -> tuple[float, list[np.ndarray]]:
        """Roll out, then judge the text and embed the path side by side."""
        with self.phase("rollout"):
            tail = "" if done else await self.rollout(visit, text)
        conversation = conversation_text(self.request.messages, self.prompt_text, text + tail)
        async with asyncio.TaskGroup() as group:
            value = group.create_task(self.assess(conversation))
            vectors = group.create_task(self.embed(visit.path, tail))
        return value.result(), vectors.result()

    async def assess(self, conversation: str) -> float:
        with self.phase("evaluate"):
            return await self.evaluator.score(conversation)

    async def embed(self, path: list[Node], tail: str) -> list[np.ndarray]:
        """Each non-root node's text from its first token through the rollout (a text
        seen before in this choice is not embedded again)."""
        with self.phase("embed"):
            texts = [self.engine.detokenize([t for n in path[i:] for t in n.token_ids]) + tail
                     for i in range(1, len(path))]
            new = list(dict.fromkeys(t for t in texts if t not in self.embedded))
            for text, vector in zip(new, await self.embedder.embed(new), strict=True):
                self.embedded[text] = vector
            return [self.embedded[text] for text in texts]

    async def simulate(self, visit: Visit) -> tuple[float, list]:
        """Evaluation, with the leaf's expansion started beside it (see `settled`)."""
        path = visit.path
        text = self.engine.detokenize(self.answer_ids(path))
        done = self.finished(path, text)
        leaf = path[-1]
        if not done and not leaf.children and leaf not in self.expanding:
            self.expanding[leaf] = asyncio.create_task(
                self.timed("expand", self.expand(leaf, list(path))))
        value, vectors = await self.evaluate(visit, text, done)
        return value, [None, *vectors]

    async def timed(self, name: str, work) -> None:
        with self.phase(name):
            await work

    async def settled(self, node: Node) -> bool:
        """Whether `node` has children, once its expansion (if one is running) is done.

        An expansion runs on in the background after its leaf's evaluation is backed up:
        only a later descent into that very node needs its children, and it waits here,
        so every selection sees the tree the reference's sequential loop would."""
        task = self.expanding.get(node)
        if task is not None:
            try:
                await asyncio.shield(task)
            except BaseExceptionGroup as failed:  # a chains() task group's
                raise first_leaf(failed) from None
            finally:
                if task.done():
                    del self.expanding[node]
        return bool(node.children)

    def check_expansions(self) -> None:
        """Raise what a finished background expansion raised (a spent budget, an engine
        error), as the reference's loop would have when it ran it."""
        for node, task in list(self.expanding.items()):
            if task.done():
                del self.expanding[node]
                try:
                    task.result()
                except BaseExceptionGroup as failed:
                    raise first_leaf(failed) from None

    def drop_expansions_outside(self, root: Node) -> None:
        """After a commit, cancel the expansions below the siblings not taken: no search
        will descend there again (their engine requests are aborted)."""
        for node, task in list(self.expanding.items()):
            below = node
            while below is not None and below is not root:
                below = below.parent
            if below is None:
                del self.expanding[node]
                task.cancel()
                self.dropped.add(task)
                task.add_done_callback(self.dropped.discard)

    async def settle_expansions(self) -> None:
        for node in list(self.expanding):
            await self.settled(node)

    async def stop_expansions(self) -> None:
        """Cancel the expansions nothing will need (their engine requests are aborted)."""
        tasks = [*self.expanding.values(), *self.dropped]
        self.expanding.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @staticmethod
    def leave(visit: Visit) -> None:
        """Take back the virtual loss `select` put on the path."""
        for node in visit.path:
            node.virtual -= 1

    def back_up(self, visit: Visit, value: float, embeddings: list) -> None:
        self.leave(visit)
        self.state.similarity_updates += backup(visit.path, value, embeddings,
                                                self.params.similarity_gamma,
                                                self.params.similarity_threshold)

    # --- the outer loop ------------------------------------------------------------------

    async def search_round(self) -> None:
        """Up to `parallel_searches` searches: select in turn, simulate together, back up
        in selection order. A selection that reaches a leaf this round already holds ends
        the round early: the reference would have expanded that leaf first and gone
        deeper, so counting it again would be a visit the sequential search never makes."""
        root, p = self.state.root, self.params
        target = max(p.max_visits, self.first_visits + p.min_searches)
        visits: list[Visit] = []
        with self.phase("select"):
            for _ in range(min(p.parallel_searches, target - root.fn)):
                visit = await self.select()
                if any(v.path[-1] is visit.path[-1] for v in visits):
                    self.leave(visit)
                    break
                visits.append(visit)
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self.simulate(visit)) for visit in visits]
        except BaseExceptionGroup as failed:  # the task group has cancelled the rest
            raise first_leaf(failed) from None
        with self.phase("backup"):
            for visit, task in zip(visits, tasks, strict=True):
                self.back_up(visit, *task.result())
        self.state.searches += len(visits)
        self.check_expansions()

    async def decided(self) -> bool:
        """Enough visits, nothing to expand, or the reference's early stop."""
        root, p = self.state.root, self.params
        if not await self.settled(root):
            return True
        best = commit_choice(root)
        return (root.fn >= max(p.max_visits, self.first_visits + p.min_searches)
                or (best.fn > p.min_visits and best.q > p.value_threshold))

    def commit(self) -> tuple[str, FinishReason | None]:
        """Append the most-visited set; returns the newly sendable text and a finish."""
        state = self.state
        best = commit_choice(state.root)
        if self.params.return_tree:
            state.decisions.append(decision_view(state.root, best, self.engine, state))
        state.committed += best.token_ids
        state.committed_sets += 1
        state.root = reroot(best, self.params.root_prior_mix)
        self.drop_expansions_outside(state.root)
        text = self.engine.detokenize(state.committed)
        finish: FinishReason | None = None
        stop = self.stop_in(text, state.committed)
        if stop is not None:
            text, finish, state.end = text[:stop], "stop", "stop_string"
        elif best.terminal:
            finish, state.end = "stop", "eos"
        elif self.room(state.committed) <= 0:
            finish, state.end = "length", "max_tokens"
        return self.release(text, finish), finish

    def release(self, text: str, finish: FinishReason | None) -> str:
        """New text that nothing later can change: all of it at the end; before that,
        never a split UTF-8 character nor what a later stop string could cut."""
        if finish is None:
            text = text[: stop_safe_length(text.rstrip("\ufffd"), self.options.stop)]
        new = text[self.state.sent:]
        self.state.sent = max(self.state.sent, len(text))
        return new

    async def answer(self) -> AsyncIterator[TextDelta | Progress]:
        try:
            async for item in self.decisions():
                yield item
        finally:
            await self.stop_expansions()

    async def decisions(self) -> AsyncIterator[TextDelta | Progress]:
        state = self.state
        finish: FinishReason | None = None
        last = time.monotonic()
        while finish is None:
            self.first_visits = state.root.fn
            try:
                await self.search_round()  # at least one per decision, as the reference
                while not await self.decided():
                    if time.monotonic() - last >= PROGRESS_SECONDS:
                        last = time.monotonic()
                        yield Progress(self.index, f"searching: {state.searches} searches, "
                                       f"{state.tree_nodes} tree nodes")
                    await self.search_round()
                if self.params.return_tree:  # list the tree the sequential loop holds
                    await self.settle_expansions()
            except EngineCallBudgetSpent:
                state.end = "engine_call_budget"
            if not state.root.children or state.end:
                state.end = state.end or "eos"
                finish = "length" if state.end == "engine_call_budget" else "stop"
                text = self.engine.detokenize(state.committed)
                stop = self.stop_in(text, state.committed)
                yield TextDelta(self.index, self.release(text[:stop], finish), [], None,
                                finish)
                return
            text, finish = self.commit()
            if text or finish:
                last = time.monotonic()
                yield TextDelta(self.index, text, [], None, finish)

    def stats(self) -> dict:
        state = self.state
        return {
            "searches": state.searches,
            "evaluations": self.evaluator.evaluations,
            "evaluation_memo_hits": self.evaluator.memo_hits,
            "committed_sets": state.committed_sets,
            "tree_nodes": state.tree_nodes,
            "node_additions": state.node_additions,
            "similarity_updates": state.similarity_updates,
            "engine_calls": state.engine_calls,
            "end": state.end,
            "seconds": {k: round(v, 4) for k, v in sorted(state.seconds.items())},
        }


def first_leaf(group: BaseExceptionGroup) -> BaseException:
    """One exception of a (nested) group, so callers see e.g. a plain 400: a real
    failure before a spent budget (which would end the answer quietly)."""
    leaves = list(_leaves(group))
    return next((e for e in leaves if not isinstance(e, EngineCallBudgetSpent)), leaves[0])


def _leaves(group: BaseExceptionGroup):
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


def chain_weight(chunk: GenerationChunk) -> Chain:
    """A chain's tokens and the product of its top-k-renormalised probabilities."""
    weight = 1.0
    for entry in chunk.logprobs or []:
        weight *= topk_probability(entry.logprob, [t.logprob for t in entry.top])
    return tuple(chunk.token_ids), weight


@functools.lru_cache(maxsize=16)
def rollout_stop_ids(engine: Engine) -> tuple[int, ...]:
    """The ids of every token whose text ends with a rollout stop character."""
    return tuple(i for i, text in enumerate(engine.token_texts()) if ends_rollout(text))


def ends_rollout(text: str) -> bool:
    return text.endswith(ROLLOUT_STOPS)


class RainStrategy:
    name = "rain"
    needs_messages = False
    supports_logprobs = False
    greedy_default = False

    def check_options(self, options: SamplingOptions) -> None:
        check_options(options)

    def __init__(self, embedder: Embedder | None = None) -> None:
        self.embedder = embedder or SentenceEmbedder()

    async def run(self, request: DecodeRequest, run: DecodeRun
                  ) -> AsyncIterator[TextDelta | Progress]:
        params: RainParams = request.params
        judge = request.engines[params.evaluator_model] if params.evaluator_model \
            else request.engine
        run.accounting.prompt_tokens = len(request.prompt_token_ids)
        budget = Budget(params.max_engine_calls)
        choosers = [Chooser(request, params, index, judge, self.embedder, run.accounting,
                            budget) for index in range(request.n)]
        started, cpu = time.perf_counter(), time.thread_time()
        async for delta in merge_streams([c.answer() for c in choosers]):
            yield delta
        # the event loop's own CPU (all requests' Python: exact when this one ran alone)
        run.stats["event_loop_cpu_seconds"] = round(time.thread_time() - cpu, 4)
        accounting = run.accounting
        accounting.completion_tokens = sum(len(c.state.committed) for c in choosers)
        stats = [c.stats() for c in choosers]
        run.stats.update(stats[0] if len(stats) == 1 else {"choices": stats})
        run.stats["engine_calls_total"] = budget.used
        run.stats["seconds_total"] = round(time.perf_counter() - started, 4)
        run.stats["engine"] = accounting.engine_totals()
        run.stats["prefix_cache_hit_rate"] = round(accounting.prefix_cache_hit_rate, 4)
        run.stats["prefix_cache_hit_ceiling"] = round(accounting.prefix_cache_hit_ceiling, 4)
        # the work behind each answer token: tokens the engine decoded and prefilled
        answer = max(1, accounting.completion_tokens)
        run.stats["engine_tokens_per_answer_token"] = {
            "generated": round(accounting.engine_generated_tokens / answer, 2),
            "prefilled": round((accounting.engine_prompt_tokens
                                - accounting.engine_cached_tokens) / answer, 2)}
        if params.return_tree:
            trees = [c.state.decisions for c in choosers]
            run.extras["tree"] = trees[0] if len(trees) == 1 else trees


