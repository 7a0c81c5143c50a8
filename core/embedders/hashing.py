"""`HashEmbedder`: a deterministic, dependency-free feature-hashing embedder. For tests only.

It captures lexical overlap, not meaning: never use it as a user's default embedder.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence

from memdock.embedding import Embedder
from memdock.errors import InvalidInput

_TOKEN = re.compile(r"\w+")


def _bucket(feature: str, dimension: int) -> tuple[int, float]:
    """Map a feature to (bucket index, sign) with a stable hash (never Python's salted `hash()`)."""
    digest = hashlib.blake2b(feature.encode("utf-8", errors="surrogatepass"), digest_size=8).digest()
    value = int.from_bytes(digest, "big")
    return (value >> 1) % dimension, (1.0 if value & 1 == 0 else -1.0)


class HashEmbedder(Embedder):
    """Signed feature hashing of lowercase word tokens (weight 1) and their character trigrams (weight 0.5).

    Contract: the same text always yields the same vector (across processes and machines); every vector
    has `dimension` floats and unit L2 norm (a text with no features maps to the unit vector e0); texts
    sharing words score a higher cosine than texts sharing none (up to rare hash collisions).
    """

    name = "hash"

    def __init__(self, dimension: int = 64) -> None:
        """Create an embedder producing vectors of `dimension` (>= 2) floats."""
        if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 2:
            raise InvalidInput("must be an integer >= 2", field="dimension")
        self.dimension = dimension

    def _embed_one(self, text: str) -> list[float]:
        vector = [0.0] * self.dimension
        for token in _TOKEN.findall(text.lower()):
            index, sign = _bucket("w:" + token, self.dimension)
            vector[index] += sign
            padded = f"#{token}#"
            for start in range(len(padded) - 2):
                index, sign = _bucket("t:" + padded[start : start + 3], self.dimension)
                vector[index] += 0.5 * sign
        norm = math.sqrt(sum(v * v for v in vector))
        if norm == 0.0:
            unit = [0.0] * self.dimension
            unit[0] = 1.0
            return unit
        return [v / norm for v in vector]

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed each text; one unit-norm vector per text, in order."""
        return [self._embed_one(text) for text in texts]
