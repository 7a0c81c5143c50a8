"""mem0ai's own `Memory` (the open-source library, ``infer=False``) on the same kind of store as memdock:
embedded Chroma in its own folder, or a table in the same PostgreSQL server. Offline, by construction:

- telemetry and mem0's remote notice config are off (``MEM0_TELEMETRY=False``, set before mem0 is
  imported) and its home is a temporary folder (``MEM0_DIR``);
- mem0's embedder config accepts only its built-in providers, so the `Memory` is built with the
  ``openai`` provider and a placeholder key (constructing the client makes no request), and its
  ``embedding_model`` is then replaced by `SameEmbedder`, which calls the very embedder object memdock
  uses (mem0's `EmbeddingBase` interface: ``embed(text, memory_action)``, ``embed_batch``);
- its ``llm`` is replaced by `NoLLM`, which raises if anything asks it for a completion: with
  ``infer=False`` mem0 never should, and the benchmark would fail loudly if it did.

The base records are loaded through mem0's vector-store layer (``memory.vector_store.insert`` in batches
of 1,000, payloads shaped as mem0's own ``add`` writes them), since its `Memory.add` stores one memory per
call; the add scenarios go through `Memory.add`. Searches pass ``threshold=0`` (mem0's default 0.1 would
drop hits of random vectors that memdock and the raw engines return) and ``top_k=10``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from bench_data import DIMENSION, LIMIT, Item
from bench_systems import System

from memdock.embedding import Embedder

PLACEHOLDER_KEY = "sk-offline-benchmark-placeholder"


def quiet_mem0(home: str) -> None:
    """Environment that keeps mem0 offline and out of the user's home; call before importing mem0."""
    os.environ["MEM0_TELEMETRY"] = "False"
    os.environ["MEM0_DIR"] = home
    os.environ.setdefault("OPENAI_API_KEY", PLACEHOLDER_KEY)


def mem0_version() -> str | None:
    """The installed mem0ai version, or None."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mem0ai")
    except PackageNotFoundError:
        return None


class NoLLM:
    """Stands where mem0's LLM would: any call is a benchmark error (infer=False must not reach it)."""

    def generate_response(self, *args: Any, **kwargs: Any) -> str:
        raise AssertionError("mem0 asked its LLM for a completion during an infer=False benchmark")


def same_embedder(embedder: Embedder) -> Any:
    """A mem0 `EmbeddingBase` that delegates to memdock's `embedder` (built lazily: mem0 is optional)."""
    from mem0.configs.embeddings.base import BaseEmbedderConfig
    from mem0.embeddings.base import EmbeddingBase

    class SameEmbedder(EmbeddingBase):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(BaseEmbedderConfig(embedding_dims=embedder.dimension))

        def embed(self, text: str, memory_action: str | None = None) -> list[float]:
            return embedder.embed([text])[0]

        def embed_batch(self, texts: list[str], memory_action: str = "add") -> list[list[float]]:
            return embedder.embed(list(texts))

    return SameEmbedder()


class Mem0System(System):
    """mem0ai's `Memory` on ``chroma`` (a path) or ``pgvector`` (a connection string)."""

    kind = "mem0"

    def __init__(self, store: str, where: str, history_db: str, collection: str, table: Embedder,
                 minilm: Embedder) -> None:
        from mem0 import Memory
        from mem0.configs.base import MemoryConfig

        self.store = store
        self.label = f"mem0 {store}"
        if store == "chroma":
            vector_store = {"provider": "chroma", "config": {"collection_name": collection, "path": where}}
        else:
            vector_store = {"provider": "pgvector", "config": {
                "collection_name": collection, "connection_string": where, "embedding_model_dims": DIMENSION}}
        config = MemoryConfig(
            vector_store=vector_store,
            embedder={"provider": "openai", "config": {"api_key": PLACEHOLDER_KEY, "embedding_dims": DIMENSION}},
            llm={"provider": "openai", "config": {"api_key": PLACEHOLDER_KEY}},
            history_db_path=history_db,
        )
        self.memory = Memory(config)
        self.memory.llm = NoLLM()
        self.by_table = same_embedder(table)
        self.by_text = same_embedder(minilm)
        self.memory.embedding_model = self.by_table

    def load(self, items: Sequence[Item]) -> None:
        now = datetime.now(UTC).isoformat()
        for start in range(0, len(items), 1000):
            batch = items[start:start + 1000]
            payloads = [{"data": i.text, "hash": i.hash(), "created_at": now, "updated_at": now,
                         "text_lemmatized": i.text, "user_id": i.user_id, "agent_id": i.agent_id, "role": "user",
                         "bucket": i.bucket} for i in batch]
            self.memory.vector_store.insert(vectors=[i.vector.tolist() for i in batch], ids=[i.id for i in batch],
                                            payloads=payloads)

    def add_one(self, item: Item) -> None:
        self.memory.add(item.text, user_id=item.user_id, metadata={"bucket": item.bucket}, infer=False)

    def add_batch(self, items: Sequence[Item]) -> None:
        self.memory.add([{"role": "user", "content": i.text} for i in items], user_id=items[0].user_id,
                        infer=False)

    def _search(self, text: str, field: str, value: str) -> list[str]:
        found = self.memory.search(text, filters={field: value}, top_k=LIMIT, threshold=0.0)
        return [str(hit["id"]) for hit in found["results"]]

    def search_vector(self, text: str, vector: Sequence[float], field: str, value: str) -> list[str]:
        self.memory.embedding_model = self.by_table
        return self._search(text, field, value)

    def search_text(self, text: str, field: str, value: str) -> list[str]:
        self.memory.embedding_model = self.by_text
        try:
            return self._search(text, field, value)
        finally:
            self.memory.embedding_model = self.by_table

    def close(self) -> None:
        for closer in (getattr(self.memory, "close", None), getattr(self.memory.db, "close", None)):
            if callable(closer):
                with contextlib.suppress(Exception):  # a peer's shutdown is not what is measured
                    closer()
