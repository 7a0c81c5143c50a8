"""What the harness drives: a `System` is one way of storing and searching the benchmark's records (memdock
on a backend, a raw engine, mem0ai), with the same six operations, so every scenario runs each system the
same way. memdock's systems live here; the raw engines and mem0 in ``peers/``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from bench_data import Item, TableEmbedder

from memdock.embedding import Embedder
from memdock.memory import Memory
from memdock.models import Scope
from memdock.urls import open_backend


class System(ABC):
    """One system under test. `store` groups systems on the same engine (``chroma``, ``pgvector``,
    ``memory``); `kind` is ``memdock``, ``raw`` or ``mem0``. Searches return ids, best first."""

    store: str
    kind: str
    label: str

    @abstractmethod
    def load(self, items: Sequence[Item]) -> None:
        """Bulk-load the base records (not timed as a scenario)."""

    @abstractmethod
    def add_one(self, item: Item) -> None:
        """Store one new record with one call."""

    @abstractmethod
    def add_batch(self, items: Sequence[Item]) -> None:
        """Store records of one user with one call."""

    @abstractmethod
    def search_vector(self, text: str, vector: Sequence[float], field: str, value: str) -> list[str]:
        """The top-10 ids in scope ``{field: value}`` for a probe whose vector is known (``text`` is its
        table-embedder key, for systems that always embed)."""

    @abstractmethod
    def search_text(self, text: str, field: str, value: str) -> list[str]:
        """The top-10 ids in scope ``{field: value}`` for a text the default embedder embeds in the call."""

    def close(self) -> None:  # noqa: B027 (optional: most systems hold nothing to release)
        """Release what the system holds."""


class MemdockSystem(System):
    """memdock's public API on one backend URL: `Memory.add` / `Memory.search`, with the table embedder for
    adds and vector searches, and the default embedder (MiniLM) for text searches. The backend is opened
    with the default embedder, so its store records MiniLM's identity and ``memdock serve`` can use it."""

    kind = "memdock"

    def __init__(self, store: str, url: str, table: TableEmbedder, minilm: Embedder) -> None:
        self.store = store
        self.label = f"memdock {store}"
        opened = open_backend(url, embedder=minilm)
        self.backend = opened.backend
        self.by_table = Memory(self.backend, table, name=self.label)
        self.by_text = Memory(self.backend, minilm, name=self.label)

    def load(self, items: Sequence[Item]) -> None:
        for start in range(0, len(items), 1000):
            self.backend.add([item.record() for item in items[start:start + 1000]])

    def add_one(self, item: Item) -> None:
        self.by_table.add(item.text, user_id=item.user_id, metadata={"bucket": item.bucket})

    def add_batch(self, items: Sequence[Item]) -> None:
        self.by_table.add([{"role": "user", "content": item.text} for item in items], user_id=items[0].user_id)

    def search_vector(self, text: str, vector: Sequence[float], field: str, value: str) -> list[str]:
        return [hit.record.id for hit in self.by_table.search(text, scope=Scope(**{field: value}), limit=10,
                                                              mode="vector")]

    def search_text(self, text: str, field: str, value: str) -> list[str]:
        return [hit.record.id for hit in self.by_text.search(text, scope=Scope(**{field: value}), limit=10,
                                                             mode="vector")]

    def close(self) -> None:
        self.by_table.close()


class MemdockBackendCall(System):
    """memdock one layer down: `Backend.search` with the vector (no `Memory` validation or copies), to
    split memdock's overhead between the facade and the backend. Shares the store of a `MemdockSystem`."""

    kind = "memdock-backend"

    def __init__(self, of: MemdockSystem) -> None:
        self.of = of
        self.store = of.store
        self.label = f"memdock backend {of.store}"

    def load(self, items: Sequence[Item]) -> None:
        """Nothing: the store is the `MemdockSystem`'s."""

    def add_one(self, item: Item) -> None:
        raise NotImplementedError

    def add_batch(self, items: Sequence[Item]) -> None:
        raise NotImplementedError

    def search_vector(self, text: str, vector: Sequence[float], field: str, value: str) -> list[str]:
        hits = self.of.backend.search(vector, text, Scope(**{field: value}), None, 10)
        return [hit.record.id for hit in hits]

    def search_text(self, text: str, field: str, value: str) -> list[str]:
        raise NotImplementedError
