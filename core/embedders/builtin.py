"""The built-in embedders plugin (entry point ``embedders`` in the ``memdock`` group).

Registers ``minilm`` (offline default), ``hash`` (tests only) and ``openai``. Each factory imports its
module on call, so listing embedders never loads onnxruntime or httpx.
"""

from __future__ import annotations

from collections.abc import Callable

from memdock.embedding import Embedder, EmbedderSpec
from memdock.hookspecs import hookimpl


def _minilm() -> Embedder:
    from memdock.embedders.minilm import MiniLMEmbedder

    return MiniLMEmbedder()


def _hash() -> Embedder:
    from memdock.embedders.hashing import HashEmbedder

    return HashEmbedder()


def _openai() -> Embedder:
    from memdock.embedders.openai import OpenAIEmbedder

    return OpenAIEmbedder()


@hookimpl
def register_embedders(register: Callable[[EmbedderSpec], None]) -> None:
    """Register the three built-in embedders."""
    register(EmbedderSpec("minilm", _minilm, "all-MiniLM-L6-v2 int8 ONNX, 384 dims, offline (default)"))
    register(EmbedderSpec("hash", _hash, "deterministic feature hashing, 64 dims; for tests only"))
    register(EmbedderSpec("openai", _openai, "OpenAI-compatible /v1/embeddings endpoint (MEMDOCK_OPENAI_*)"))
