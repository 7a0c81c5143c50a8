"""The embedder protocol: text in, L2-normalised vectors out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass


class Embedder(ABC):
    """Turns texts into vectors of `dimension` floats with unit L2 norm.

    `identity` names the vector space (embedder, model, dimension); a collection records it and refuses
    to be opened with another.
    """

    name: str
    dimension: int

    @property
    def identity(self) -> str:
        """A string naming this vector space, e.g. ``minilm:all-MiniLM-L6-v2-int8:384``."""
        return f"{self.name}:{self.dimension}"

    @abstractmethod
    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed each text; returns one unit-norm vector per text, in order."""


@dataclass(frozen=True)
class EmbedderSpec:
    """How a plugin registers an embedder: a name, a zero-argument factory and a one-line description."""

    name: str
    factory: Callable[[], Embedder]
    description: str = ""
