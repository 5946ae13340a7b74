"""The authors' released nudging loop, re-implemented as a client, for comparison.

It follows `completion_with_nudging` / `complete_with_base` of fywalter/nudging: every
call re-sends the whole prompt as text to `/v1/completions` (no ledgers, no sessions,
batch 1), asks for 16 tokens with top-1 log-probabilities, and throws away what follows
the first uncertain token. Differences, all to compare like with like: prompts are the
ones our server gives each model (the base's plain transcript, the nudger's chat
template), lengths are counted in each model's own tokens instead of GPT-3.5's, and the
final repeated-suffix clean-up is left out (ours does not apply it either).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import httpx

CHUNK = 16
MAX_ROUNDS = 150


@dataclass
class Completion:
    text: str
    tokens: list[str]
    top1: list[float]  # probability of the most likely token at each position
    finish: str


@dataclass
class ReferenceRun:
    text: str = ""
    nudger_tokens: int = 0
    base_tokens: int = 0
    calls: dict[str, int] = field(default_factory=lambda: {"base": 0, "nudger": 0})
    decoded: dict[str, int] = field(default_factory=lambda: {"base": 0, "nudger": 0})
    end: str = ""

    @property
    def tokens(self) -> int:
        return self.nudger_tokens + self.base_tokens

    @property
    def nudge_ratio(self) -> float:
        return self.nudger_tokens / self.tokens if self.tokens else 0.0


async def complete(client: httpx.AsyncClient, model: str, prompt: str, role: str,
                   run: ReferenceRun) -> Completion:
    reply = await client.post("/v1/completions", json={
        "model": model, "prompt": prompt, "max_tokens": CHUNK, "temperature": 0,
        "logprobs": 1})
    reply.raise_for_status()
    choice = reply.json()["choices"][0]
    run.calls[role] += 1
    run.decoded[role] += len(choice["logprobs"]["tokens"])
    top1 = [math.exp(max(top.values())) if top else 0.0
            for top in choice["logprobs"]["top_logprobs"]]
    return Completion(choice["text"], choice["logprobs"]["tokens"], top1,
                      choice["finish_reason"])


def token_count(tokens: list[str], text: str) -> int:
    """Tokens of a completion that make up its first len(text) characters."""
    end = count = 0
    for token in tokens:
        if end >= len(text):
            break
        end += len(token)
        count += 1
    return count


async def nudge(client: httpx.AsyncClient, *, base: str, nudger: str, base_prompt: str,
                nudger_prompt: str, gamma: float, max_tokens: int) -> ReferenceRun:
    """One answer, round by round as the reference writes it."""
    run = ReferenceRun()
    output = ""
    last_nudge, repeats = "", 0

    def base_view(text: str) -> str:  # the base's transcript ends 'Answer:'
        return text if not text or text[0].isspace() else " " + text

    for _ in range(MAX_ROUNDS):
        if run.tokens >= max_tokens:
            run.end = "max_tokens"
            break
        chunk = await complete(client, nudger, nudger_prompt + output, "nudger", run)
        if chunk.finish == "stop":
            output += chunk.text
            run.nudger_tokens += len(chunk.tokens)
            run.end = "nudger_eos"
            break
        lead = chunk.text[:len(chunk.text) - len(chunk.text.lstrip(" "))]
        words = chunk.text.lstrip(" ").split(" ")
        index = 0 if len(words) > 1 else 1
        accepted: Completion | None = None
        while accepted is None and index < len(words) - 1:
            index += 1
            word = " " + words[index]
            if word == " ":
                continue
            prefix = lead + " ".join(words[:index])
            answer = await complete(client, base, base_prompt + base_view(output + prefix),
                                    "base", run)
            if not answer.tokens or word.startswith(answer.tokens[0]) or (
                    answer.top1[0] >= gamma):
                accepted = answer
        nudge_words = lead + " ".join(words[:index])
        if nudge_words == last_nudge:
            repeats += 1
            if repeats >= 3:
                run.end = "repeated_nudge"
                break
        else:
            last_nudge, repeats = nudge_words, 0
        output += nudge_words
        run.nudger_tokens += token_count(chunk.tokens, nudge_words)
        if accepted is None or not accepted.text:
            continue
        output += await base_stretch(client, base, base_prompt, output, accepted, gamma,
                                     max_tokens - run.tokens, run, base_view)
    else:
        run.end = "max_rounds"
    run.text = output
    return run


async def base_stretch(client: httpx.AsyncClient, base: str, base_prompt: str, output: str,
                       first: Completion, gamma: float, room: int, run: ReferenceRun,
                       base_view) -> str:
    """`complete_with_base`: the accepted token, then the rest of its call and further
    16-token calls, each cut at its first uncertain token, until one is."""
    written, count = first.tokens[0], 1
    # the first call's end is not checked (the reference has no response object yet)
    tokens, top1, finish = first.tokens[1:], first.top1[1:], None
    while True:
        if "".join(tokens) in written:
            break
        cut = next((i for i, p in enumerate(top1) if p < gamma), None)
        kept = tokens if cut is None else tokens[:cut]
        new = "".join(kept)
        if len(new.split(" ")) > 5 and new in output + written:
            break
        written += new
        count += len(kept)
        if cut is not None or finish == "stop" or count >= room:
            break
        answer = await complete(client, base, base_prompt + base_view(output + written),
                                "base", run)
        tokens, top1, finish = answer.tokens, answer.top1, answer.finish
    run.base_tokens += count
    return written
