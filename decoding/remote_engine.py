"""`Engine` over a remote vLLM OpenAI server (e.g. a large base model on its own GPUs).

Prompts go as token ids to `/v1/completions` (streamed, with per-token log-probabilities
and `return_tokens_as_token_ids`), so the remote server's prefix cache sees exactly our
ledgers. The tokenizer is loaded locally from a folder holding the model's tokenizer
files. Closing the stream aborts the remote request (vLLM aborts on disconnect).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import httpx

from decoding.engine import ModelInfo, ModelRole
from decoding.errors import EngineUnavailable, InvalidRequest, ModelUnavailable
from decoding.hf_tokenizer import HFTokenizerText
from decoding.seeds import engine_seed
from decoding.types import (
    EngineCounters,
    GenerationChunk,
    JsonOutput,
    SamplingOptions,
    TokenLogprob,
    TopLogprob,
)

#: Seconds to reach the remote server: a host that went away fails a request this soon.
CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class RemoteConfig:
    model_id: str
    url: str                 # the server's base URL, e.g. http://10.0.0.5:8000
    remote_model: str        # the model name the remote server serves
    tokenizer_dir: str       # local folder with the model's tokenizer files
    api_key: str | None = None
    role: ModelRole | None = None
    timeout: float = 600.0


class RemoteEngine(HFTokenizerText):
    """Someone else's process: when it goes away, requests get 503s, and the server
    keeps running (it is `local=False`, so its failure never makes the server exit)."""

    #: Never presumed dead: each request tries the server (a refused connection fails at once).
    dead = False

    def __init__(self, config: RemoteConfig, tokenizer, info: ModelInfo) -> None:
        self.config = config
        self._tokenizer = tokenizer
        self.info = info
        self.counters = EngineCounters()
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self._client = httpx.AsyncClient(
            base_url=config.url, headers=headers,
            timeout=httpx.Timeout(config.timeout, connect=CONNECT_TIMEOUT))

    @classmethod
    async def start(cls, config: RemoteConfig) -> RemoteEngine:
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(config.tokenizer_dir)
        except OSError as exc:
            raise ModelUnavailable(f"no tokenizer in {config.tokenizer_dir}") from exc
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        try:
            async with httpx.AsyncClient(timeout=30) as client:
                models = (await client.get(f"{config.url}/v1/models", headers=headers)).json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ModelUnavailable(f"remote server {config.url} did not answer: {exc}") from exc
        card = next((m for m in models.get("data", []) if m["id"] == config.remote_model), None)
        if card is None:
            raise ModelUnavailable(f"{config.url} does not serve {config.remote_model!r}")
        has_template = getattr(tokenizer, "chat_template", None) is not None
        eos = (tokenizer.eos_token_id,) if tokenizer.eos_token_id is not None else ()
        info = ModelInfo(
            model_id=config.model_id, root=f"{config.url}#{config.remote_model}",
            role=config.role or ("chat" if has_template else "base"),
            max_model_len=int(card.get("max_model_len") or tokenizer.model_max_length),
            vocab_size=len(tokenizer), eos_token_ids=eos,
            bos_token_id=tokenizer.bos_token_id, has_chat_template=has_template, local=False)
        return cls(config, tokenizer, info)

    def _body(self, prompt_token_ids: Sequence[int], options: SamplingOptions) -> dict:
        body = {
            "model": self.config.remote_model, "prompt": list(prompt_token_ids),
            "max_tokens": options.max_tokens, "temperature": options.temperature,
            "top_p": options.top_p, "top_k": options.top_k or -1, "min_p": options.min_p,
            "seed": engine_seed(options.seed), "stop": list(options.stop) or None,
            "stop_token_ids": list(options.stop_token_ids) or None,
            "ignore_eos": options.ignore_eos, "min_tokens": options.min_tokens,
            "presence_penalty": options.presence_penalty,
            "frequency_penalty": options.frequency_penalty,
            "repetition_penalty": options.repetition_penalty,
            "logit_bias": {str(k): v for k, v in options.logit_bias} or None,
            # always ask for the sampled token: it carries the token id
            "logprobs": options.logprobs or 0,
            # vLLM's completions API: these tokens' log-probabilities, whole vocabulary
            "logprob_token_ids": list(options.logprob_token_ids) or None,
            "return_tokens_as_token_ids": True,
            "skip_special_tokens": options.skip_special_tokens,
            "include_stop_str_in_output": options.include_stop_str_in_output,
            "stream": True, "stream_options": {"include_usage": True},
            "structured_outputs": _structured_outputs(options.json_output),
        }
        return {k: v for k, v in body.items() if v is not None}

    async def generate(self, prompt_token_ids: Sequence[int], options: SamplingOptions,
                       request_id: str) -> AsyncIterator[GenerationChunk]:
        finished = False
        self.counters.running += 1
        self.counters.requests += 1
        self.counters.prompt_tokens += len(prompt_token_ids)
        try:
            async with self._client.stream(
                    "POST", "/v1/completions", json=self._body(prompt_token_ids, options),
                    headers={"X-Request-Id": request_id}) as response:
                if response.status_code >= 500:
                    raise EngineUnavailable(f"remote engine of {self.info.model_id!r} "
                                            f"answered {response.status_code}")
                if response.status_code != 200:
                    detail = (await response.aread()).decode(errors="replace")[:500]
                    raise InvalidRequest(f"remote engine refused the request: {detail}")
                async for line in response.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    event = json.loads(line[6:])
                    if event.get("usage") and not event.get("choices"):
                        details = event["usage"].get("prompt_tokens_details") or {}
                        self.counters.cached_tokens += details.get("cached_tokens") or 0
                        continue
                    chunk = self._chunk(event["choices"][0], len(prompt_token_ids), options)
                    self.counters.generated_tokens += len(chunk.token_ids)
                    finished = finished or chunk.finished
                    yield chunk
        except httpx.HTTPError as exc:
            raise EngineUnavailable(f"remote engine of {self.info.model_id!r}: {exc}") from exc
        finally:
            self.counters.running -= 1
            if not finished:
                self.counters.aborted += 1

    def _chunk(self, choice: dict, prompt_tokens: int, options: SamplingOptions
               ) -> GenerationChunk:
        lp = choice.get("logprobs") or {}
        ids = [_token_id(t) for t in lp.get("tokens") or []]
        wanted = options.logprob_token_ids
        entries = None
        if options.logprobs is not None or wanted:
            entries = []
            for token, logprob, top in zip(lp.get("tokens") or [], lp.get("token_logprobs") or [],
                                           lp.get("top_logprobs") or [], strict=False):
                ranked = sorted((top or {}).items(), key=lambda kv: -kv[1])
                if wanted:
                    ranked = [(t, v) for t, v in ranked if _token_id(t) in wanted]
                else:
                    ranked = ranked[: options.logprobs]
                entries.append(TokenLogprob(
                    _token_id(token), self.detokenize([_token_id(token)]), logprob,
                    tuple(TopLogprob(_token_id(t), self.detokenize([_token_id(t)]), v)
                          for t, v in ranked)))
        return GenerationChunk(ids, choice.get("text", ""), entries,
                               choice.get("finish_reason"), choice.get("stop_reason"),
                               prompt_tokens, 0)

    def open_session(self, request_id: str) -> None:
        return None  # an HTTP server keeps no request open between calls

    async def abort(self, request_ids: Sequence[str]) -> None:
        """Remote requests end when their stream is closed, which `generate` does."""

    async def check_health(self) -> None:
        try:
            response = await self._client.get("/health", timeout=5)
        except httpx.HTTPError as exc:
            raise EngineUnavailable(f"remote engine of {self.info.model_id!r}: {exc}") from exc
        if response.status_code != 200:
            raise EngineUnavailable(f"remote engine of {self.info.model_id!r} is unhealthy")

    async def shutdown(self) -> None:
        await self._client.aclose()


def _structured_outputs(json_output: JsonOutput | None) -> dict | None:
    """vLLM's OpenAI server takes `structured_outputs` beside the sampling fields."""
    if json_output is None:
        return None
    if json_output.schema is None:
        return {"json_object": True}
    return {"json": json.loads(json_output.schema)}


def _token_id(token: str) -> int:
    """vLLM writes tokens as "token_id:123" when asked for ids."""
    return int(token.rsplit(":", 1)[1])
