"""Shared helpers for the tests: a deterministic, dependency-free test embedder.

Uses `memdock.embedders.hashing.HashEmbedder` when it is installed; otherwise a small local equivalent
(token hashing into a fixed number of buckets, L2-normalised), so identical texts embed identically
and texts sharing words are closer than texts sharing none.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence

from memdock.embedding import Embedder


class LocalHashEmbedder(Embedder):
    """Bag-of-words feature hashing: deterministic, unit norm, no model files."""

    def __init__(self, dimension: int = 64, name: str = "test-hash") -> None:
        self.name = name
        self.dimension = dimension

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors = []
        for text in texts:
            vector = [0.0] * self.dimension
            for token in re.findall(r"\w+", text.lower()) or [text]:
                digest = hashlib.sha256(token.encode("utf-8", errors="surrogatepass")).digest()
                index = int.from_bytes(digest[:4], "big") % self.dimension
                vector[index] += 1.0 if digest[4] % 2 == 0 else -1.0
            norm = math.sqrt(sum(v * v for v in vector)) or 1.0
            if norm == 1.0 and not any(vector):
                vector[0] = 1.0
            vectors.append([v / norm for v in vector])
        return vectors


def make_test_embedder(dimension: int = 64) -> Embedder:
    """The project's HashEmbedder when available, else the local one (same contract)."""
    try:
        from memdock.embedders.hashing import HashEmbedder  # type: ignore[import-not-found]
    except ImportError:
        return LocalHashEmbedder(dimension)
    try:
        return HashEmbedder(dimension=dimension)  # type: ignore[no-any-return]
    except TypeError:
        return HashEmbedder()  # type: ignore[no-any-return]


def other_test_embedder() -> Embedder:
    """An embedder whose identity differs from `make_test_embedder()`'s."""
    return LocalHashEmbedder(dimension=32, name="other-hash")
