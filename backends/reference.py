"""The reference backend, ``memory://``: in-process, thread-safe, exact numpy search, every capability.

It is the executable specification: other backends must behave as this one does. Data lives only as
long as the process; several ``Memory.open("memory://NAME")`` calls with the same NAME share one store
(``memory://`` alone is a fresh private store each time).
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable, Sequence
from typing import Any, Self
from urllib.parse import unquote, urlsplit

from memdock.backend import Backend, BackendSettings, BackendURL
from memdock.capabilities import Capability
from memdock.embedding import Embedder
from memdock.errors import EmbedderMismatch, InvalidInput
from memdock.filters import Filter, evaluate
from memdock.hookspecs import hookimpl
from memdock.models import HistoryEvent, MemoryRecord, Page, Scope, SearchHit
from memdock.pagination import page_of
from memdock.scoring import rank_by_cosine

CAPABILITIES = frozenset(Capability) - {Capability.SERVER_SIDE_EMBEDDING, Capability.PERSISTENCE}


class _Store:
    """The shared state of one reference store."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.records: dict[str, MemoryRecord] = {}
        self.history: list[HistoryEvent] = []
        self.embedder_identity: str | None = None


_named_stores: dict[str, _Store] = {}
_named_lock = threading.Lock()


def _store_for(name: str | None) -> _Store:
    if name is None:
        return _Store()
    with _named_lock:
        return _named_stores.setdefault(name, _Store())


class ReferenceBackend(Backend):
    """Everything in a dict guarded by a lock; filters use the reference evaluator directly."""

    name = "reference"
    description = "In-process reference store with exact search (the executable specification)."
    schemes = ("memory",)
    capabilities = CAPABILITIES
    namespace_param = "name"

    class Settings(BackendSettings):
        """``memory://[NAME]`` or ``memory://?name=NAME``: NAME (optional) selects a process-wide shared
        store; without it every open is a fresh private store."""

        name: str | None = None

        @classmethod
        def from_url(cls, url: BackendURL) -> Self:
            """Read NAME from the URL's host part or its ``name`` parameter (not both); no path."""
            data: dict[str, Any] = dict(url.params)
            host = unquote(urlsplit(url.raw).netloc)  # `url.host` is lower-cased; store names keep their case
            if host:
                if "name" in data and data["name"] != host:
                    raise InvalidInput("the store is named twice (host and ?name=)", field="name")
                data["name"] = host
            if url.path not in ("", "/"):
                raise InvalidInput("memory:// takes no path", field="path")
            return cls.validated(data)

    def __init__(self, settings: ReferenceBackend.Settings, embedder: Embedder | None) -> None:
        self._store = _store_for(settings.name)
        if embedder is not None:
            with self._store.lock:
                known = self._store.embedder_identity
                if known is not None and known != embedder.identity:
                    raise EmbedderMismatch(
                        f"store was written with embedder {known!r}, not {embedder.identity!r}", field="embedder"
                    )
                self._store.embedder_identity = embedder.identity

    def _visible(self, scope: Scope, where: Filter | None) -> list[MemoryRecord]:
        now = self.now()
        with self._store.lock:
            candidates = [r for r in self._store.records.values() if scope.contains(r.scope) and not r.is_expired(now)]
        return [r for r in candidates if where is None or evaluate(where, r)]

    def add(self, records: Sequence[MemoryRecord]) -> None:
        """Store copies of the records atomically (under one lock)."""
        with self._store.lock:
            for record in records:
                self._store.records[record.id] = record.model_copy(deep=True)

    def get(self, memory_id: str) -> MemoryRecord | None:
        """A copy of the record, or None when missing or expired."""
        with self._store.lock:
            record = self._store.records.get(memory_id)
        if record is None or record.is_expired(self.now()):
            return None
        return record.model_copy(deep=True)

    def find_by_hash(self, scope: Scope, text_hash: str) -> MemoryRecord | None:
        """The first live record with exactly this scope and hash."""
        now = self.now()
        with self._store.lock:
            for record in self._store.records.values():
                if record.scope == scope and record.hash == text_hash and not record.is_expired(now):
                    return record.model_copy(deep=True)
        return None

    def update(self, record: MemoryRecord) -> None:
        """Replace the stored copy."""
        with self._store.lock:
            self._store.records[record.id] = record.model_copy(deep=True)

    def delete(self, memory_ids: Sequence[str]) -> None:
        """Remove the records; unknown ids are ignored."""
        with self._store.lock:
            for memory_id in memory_ids:
                self._store.records.pop(memory_id, None)

    def search(
        self, vector: Sequence[float] | None, text: str, scope: Scope, where: Filter | None, limit: int
    ) -> list[SearchHit]:
        """Exact cosine search over the matching records, most similar first (ties by id)."""
        if vector is None:
            raise InvalidInput("the reference backend needs a query vector", field="vector")
        hits = rank_by_cosine(vector, self._visible(scope, where), limit)
        return [SearchHit(record=hit.record.model_copy(deep=True), score=hit.score) for hit in hits]

    def list(self, scope: Scope, where: Filter | None, limit: int, cursor: str | None) -> Page:
        """A keyset page ordered by (created_at, id)."""
        page = page_of(self._visible(scope, where), limit, cursor)
        return Page(items=[r.model_copy(deep=True) for r in page.items], next_cursor=page.next_cursor)

    def count(self, scope: Scope, where: Filter | None) -> int:
        """Number of live records in scope matching the filter."""
        return len(self._visible(scope, where))

    def count_every(self) -> int:
        """Number of live records of every scope."""
        return len(self._visible(Scope(), None))

    def list_every(self, limit: int, cursor: str | None, *, vectors: bool = False) -> Page:
        """A keyset page of every live record, ordered by (created_at, id), vectors included on request."""
        page = page_of(self._visible(Scope(), None), limit, cursor)
        update = {} if vectors else {"vector": None}
        return Page(items=[r.model_copy(update=update, deep=True) for r in page.items], next_cursor=page.next_cursor)

    def reset(self) -> None:
        """Forget every record and event of this store."""
        with self._store.lock:
            self._store.records.clear()
            self._store.history.clear()

    def record_history(self, events: Sequence[HistoryEvent]) -> None:
        """Append events."""
        with self._store.lock:
            self._store.history.extend(event.model_copy(deep=True) for event in events)

    def history(self, memory_id: str) -> builtins.list[HistoryEvent]:
        """Events of one memory in the order they were recorded."""
        with self._store.lock:
            return [e.model_copy(deep=True) for e in self._store.history if e.memory_id == memory_id]


@hookimpl
def register_backends(register: Callable[[type[Backend]], None]) -> None:
    """Register ``memory://``."""
    register(ReferenceBackend)
