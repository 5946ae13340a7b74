import json

import pytest

from decoding.cpu_cores import spread_cores
from decoding.errors import ModelUnavailable
from decoding.weights import MANIFEST, manifest_ok, resolve_weights, write_manifest
from server.cli import parse_args
from server.config import DEFAULT_MODELS, ModelSpec, Settings


@pytest.mark.parametrize(("text", "model_id", "source"), [
    ("gemma-3-270m", "gemma-3-270m", "gemma-3-270m"),
    ("mine=/models/llama", "mine", "/models/llama"),
    ("Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-0.5B-Instruct"),
])
def test_model_spec_parse(text, model_id, source):
    spec = ModelSpec.parse(text)
    assert (spec.id, spec.source) == (model_id, source)


def test_defaults_and_environment(monkeypatch):
    assert [m.id for m in Settings().models] == list(DEFAULT_MODELS)
    monkeypatch.setenv("ALIGN_API_KEYS", "k1, k2")
    monkeypatch.setenv("ALIGN_MODELS", "a=/x,b=/y")
    monkeypatch.setenv("ALIGN_PORT", "9001")
    settings = Settings()
    assert settings.api_keys == ["k1", "k2"]
    assert [(m.id, m.source) for m in settings.models] == [("a", "/x"), ("b", "/y")]
    assert settings.port == 9001


def test_flags_override_environment(monkeypatch):
    monkeypatch.setenv("ALIGN_PORT", "9001")
    settings, prepare_only = parse_args(["--port", "9002", "--model", "m=/w", "--api-key", "s"])
    assert (settings.port, settings.api_keys, prepare_only) == (9002, ["s"], False)
    assert [m.id for m in settings.models] == ["m"]


def test_models_file(tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text("models:\n  - {id: base, source: gemma-3-270m, role: base}\n")
    settings = Settings(models_file=path)
    assert settings.models == [ModelSpec(id="base", source="gemma-3-270m", role="base")]


def test_manifest_detects_missing_and_changed_files(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    assert not manifest_ok(tmp_path)
    write_manifest(tmp_path)
    assert set(json.loads((tmp_path / MANIFEST).read_text())) == {"config.json",
                                                                   "model.safetensors"}
    changed = tmp_path / "copy"
    changed.mkdir()
    for name in ("config.json", "model.safetensors", MANIFEST):
        (changed / name).write_bytes((tmp_path / name).read_bytes())
    assert manifest_ok(changed)
    (tmp_path / "model.safetensors").write_bytes(b"half-writ")
    assert not manifest_ok(tmp_path)


def test_local_folder_source(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert resolve_weights(str(tmp_path), tmp_path / "cache") == tmp_path.resolve()


def test_folder_without_config_rejected(tmp_path):
    with pytest.raises(ModelUnavailable, match=r"config\.json"):
        resolve_weights(str(tmp_path), tmp_path / "cache")


def test_hub_id_not_cached_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailable, match="never downloads"):
        resolve_weights("nobody/no-such-model", tmp_path / "cache")


def test_unknown_source(tmp_path):
    with pytest.raises(ModelUnavailable, match="neither an embedded model"):
        resolve_weights("no-such-thing", tmp_path / "cache")
    with pytest.raises(ModelUnavailable, match="does not exist"):
        resolve_weights(str(tmp_path / "missing.gguf"), tmp_path / "cache")


@pytest.mark.parametrize(("engines", "cores", "expected"), [
    (1, 2, None),            # one engine: vLLM's own binding (a core for the front end)
    (2, 1, None),
    (2, 2, ["0", "1"]),      # each engine its own core
    (3, 2, ["0", "1", "0"]),
    (2, 3, ["0", "1"]),      # core 2 left to the front end
    (2, 8, ["0-3", "4-6"]),
    (3, 16, ["0-4", "5-9", "10-14"]),
])
def test_local_engines_get_disjoint_cores(engines, cores, expected):
    assert spread_cores(engines, cores) == expected
