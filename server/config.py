"""Server settings: one `Settings` object from flags, environment (`ALIGN_*`) and files."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_MODELS = ("smollm2-135m-instruct", "gemma-3-270m")


class ModelSpec(BaseModel):
    """One served model: its public id and where its weights come from."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    source: str = Field(min_length=1, description="embedded name, folder, .gguf or hub id")
    role: Literal["chat", "base"] | None = Field(
        None, description="default: chat if the tokenizer has a chat template"
    )
    max_model_len: int | None = Field(None, gt=0)
    kv_cache_gib: float | None = Field(None, gt=0)
    remote_url: str | None = Field(
        None, description="serve through a remote vLLM OpenAI server; `source` then only "
        "needs the tokenizer files")
    remote_model: str | None = Field(None, description="its model name (default: id)")
    remote_api_key: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        """`NAME` (embedded), `PATH_OR_HUB_ID`, or `ID=SOURCE`."""
        model_id, sep, source = text.partition("=")
        if not sep:
            source = text
            model_id = Path(text).stem if text.endswith(".gguf") else text.rstrip("/")
            model_id = model_id.rsplit("/", 1)[-1] if Path(text).exists() else model_id
        return cls(id=model_id, source=source)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ALIGN_", extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Bearer keys (comma-separated in ALIGN_API_KEYS)"
    )
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="CORS origins a browser may call from ('*': any); "
        "none by default (comma-separated in ALIGN_ALLOWED_ORIGINS)")
    models: Annotated[list[ModelSpec], NoDecode] = Field(
        default_factory=lambda: [ModelSpec(id=m, source=m) for m in DEFAULT_MODELS]
    )
    models_file: Path | None = None
    cache_dir: Path = Path("~/.cache/align-serve").expanduser()
    kv_cache_gib: float = Field(2.0, gt=0, description="KV cache per engine, GiB")
    block_size: int = Field(32, ge=32, multiple_of=32, description="KV block (tokens)")
    max_model_len: int | None = Field(4096, gt=0, description="context cap per model")
    enforce_eager: bool = True
    cpu_binding: Literal["spread", "vllm"] = Field(
        "spread", description="CPU backend: 'spread' gives each local engine its own cores; "
        "'vllm' keeps vLLM's binding (all engines on the same cores)")
    max_body_bytes: int = Field(4 << 20, gt=0)
    max_n: int = Field(16, ge=1, description="largest `n` a request may ask for")
    default_nudging_model: str | None = Field(
        "smollm2-135m-instruct", description="nudger when a request names none"
    )
    max_concurrent_requests: int = Field(
        64, ge=1, description="requests in flight per model; beyond: 429")
    request_timeout: float = Field(600.0, ge=0, description="seconds per request; 0: none")
    shutdown_drain: float = Field(
        20.0, ge=0, description="on SIGTERM, seconds in-flight requests may still run; then "
        "they end with a 503 (an error event in a stream)")
    dead_engine_exit_after: float = Field(
        5.0, ge=0, description="seconds the server keeps serving after a local engine dies "
        "(its requests get 503, other models serve) before it drains and exits with status "
        "75 to be restarted")
    rain_max_visits: int = Field(200, ge=1, description="cap on RAIN's max_visits")
    rain_max_parallel_searches: int = Field(16, ge=1)
    rain_max_rollout_tokens: int = Field(256, ge=1)
    rain_max_engine_calls: int = Field(20_000, ge=1, description="engine calls per request")
    rain_max_tree_nodes: int = Field(
        2000, ge=0, description="nodes a RAIN `return_tree` lists per choice, at most")

    def model_post_init(self, _context: object) -> None:
        if self.models_file is not None:
            self.models = load_models_file(self.models_file)

    @field_validator("api_keys", "allowed_origins", "models", mode="before")
    @classmethod
    def _split_env_list(cls, value: object, info: ValidationInfo) -> object:
        """Environment values are comma lists (or JSON arrays); model items use `parse`."""
        if not isinstance(value, str):
            return value
        if value.lstrip().startswith("["):
            return json.loads(value)
        items = [v.strip() for v in value.split(",") if v.strip()]
        return [ModelSpec.parse(v) for v in items] if info.field_name == "models" else items


def load_models_file(path: Path) -> list[ModelSpec]:
    """A YAML or JSON list of `ModelSpec` mappings (or a mapping with key `models`)."""
    data = yaml.safe_load(path.read_text())
    if isinstance(data, dict):
        data = data.get("models", [])
    return [ModelSpec.model_validate(item) for item in data]


@lru_cache
def get_settings() -> Settings:
    return Settings()
