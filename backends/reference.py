"""The reference backend, ``memory://``: in-process, thread-safe, exact numpy search, every capability.

Its keyword and hybrid searches are the specification of `memdock.search_modes`: a `BM25Index` of every
record, kept with the records, scored over exactly the search's candidates; hybrid fuses every candidate's
exact cosine and keyword score.

It is the executable specification: other backends must behave as this one does. Data lives only as
long as the process; several ``Memory.open("memory://NAME")`` calls with the same NAME share one store
(``memory://`` alone is a fresh private store each time).
"""

from __future__ import annotations

import builtins
import copy
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import unquote, urlsplit

from memdock.backend import Backend, BackendSettings, BackendURL
from memdock.capabilities import Capability
from memdock.embedding import Embedder
from memdock.errors import EmbedderMismatch, InvalidInput, WriteConflict
from memdock.filters import Filter, evaluate
from memdock.hookspecs import hookimpl
from memdock.keyword import BM25Index
from memdock.models import SCOPE_FIELDS, HistoryEvent, MemoryRecord, Page, Scope, SearchHit
from memdock.pagination import page_of
from memdock.scoring import best_rows, cosine_to_score, rank_by_cosine, row_norms
from memdock.search_modes import hybrid_ranking, keyword_ranking

CAPABILITIES = frozenset(Capability) - {Capability.SERVER_SIDE_EMBEDDING, Capability.PERSISTENCE}


def _scope_key(scope: Scope) -> tuple[str | None, ...]:
    return tuple(getattr(scope, name) for name in SCOPE_FIELDS)


class _Store:
    """The shared state of one reference store, with the indexes that keep its reads proportional to what
    they return: record ids by scope id value and by (exact scope, hash), events by memory id, a
    matrix of the vectors (one row per record, rows of deleted records blanked) and a BM25 index of the
    texts (`terms`). `generation` changes with every write (and when matrix rows move), so readers can
    keep what they derived from it until then. Every method expects `lock` to be held by the caller."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.records: dict[str, MemoryRecord] = {}
        self.events: dict[str, list[HistoryEvent]] = {}
        self.embedder_identity: str | None = None
        self._by_scope_id: dict[tuple[str, str], dict[str, None]] = {}  # dicts as insertion-ordered sets
        self._by_hash: dict[tuple[tuple[str | None, ...], str], dict[str, None]] = {}
        self._matrix: Any = None  # numpy float64 array, rows >= len(_row_ids)
        self._row_of: dict[str, int] = {}
        self._row_ids: list[str | None] = []
        self._pending: dict[str, list[float]] = {}
        self.generation = 0
        self.expiring = 0
        """How many stored records carry an expiry; while none does, a search need not check any."""
        self.terms = BM25Index()

    def put(self, record: MemoryRecord) -> None:
        """Store (or replace) a private copy of `record` and index it."""
        self.drop(record.id)
        kept = _private_copy(record)
        self.records[kept.id] = kept
        self.expiring += kept.expires_at is not None
        self.generation += 1
        for name, value in kept.scope.ids().items():
            self._by_scope_id.setdefault((name, value), {})[kept.id] = None
        self._by_hash.setdefault((_scope_key(kept.scope), kept.hash), {})[kept.id] = None
        self.terms.add(kept.id, kept.text)
        if kept.vector is not None:
            self._pending[kept.id] = kept.vector  # written to the matrix by the next search

    def drop(self, memory_id: str) -> None:
        """Forget the record (not its events) and its index entries; nothing when it is unknown."""
        old = self.records.pop(memory_id, None)
        if old is None:
            return
        self.expiring -= old.expires_at is not None
        self.generation += 1
        for name, value in old.scope.ids().items():
            self._discard(self._by_scope_id, (name, value), memory_id)
        self._discard(self._by_hash, (_scope_key(old.scope), old.hash), memory_id)
        self.terms.remove(memory_id)
        self._pending.pop(memory_id, None)
        row = self._row_of.pop(memory_id, None)
        if row is not None:
            self._row_ids[row] = None

    def clear(self) -> None:
        """Forget every record and event."""
        self.records.clear()
        self.events.clear()
        self._by_scope_id.clear()
        self._by_hash.clear()
        self.terms.clear()
        self._matrix, self._row_of, self._row_ids, self._pending = None, {}, [], {}
        self.generation += 1
        self.expiring = 0

    def ids_in(self, scope: Scope) -> Iterable[str]:
        """Ids of the records `scope` contains (expired ones included)."""
        wanted = scope.ids()
        if not wanted:
            return self.records.keys()
        sets = sorted((self._by_scope_id.get(item, {}) for item in wanted.items()), key=len)
        return set(sets[0]).intersection(*sets[1:]) if len(sets) > 1 else sets[0].keys()

    def with_hash(self, scope: Scope, text_hash: str) -> builtins.list[MemoryRecord]:
        """Records of exactly `scope` whose hash is `text_hash` (expired ones included), in storing order."""
        return [self.records[i] for i in self._by_hash.get((_scope_key(scope), text_hash), ())]

    def vectors_of(self, ids: Sequence[str]) -> Any:
        """The matrix rows of `ids` (records that carry vectors of the matrix's dimension), or None when
        some record has none there (then the caller ranks the records themselves)."""
        rows = self.rows_of(ids)
        return None if rows is None else self._matrix[rows]

    def rows_of(self, ids: Sequence[str]) -> Any:
        """The matrix row numbers of `ids` (an index array for `matrix_rows`; valid until `generation`
        changes), or None when some record has none (see `vectors_of`)."""
        import numpy as np

        self.flush()
        rows = [self._row_of.get(i) for i in ids]
        if self._matrix is None or any(r is None for r in rows):
            return None
        return np.asarray(rows, dtype=np.intp)

    def matrix_rows(self, rows: Any) -> Any:
        """The vectors at the row numbers `rows` of `rows_of`, one matrix row each."""
        return self._matrix[rows]

    def flush(self) -> None:
        """Write the pending vectors to the matrix."""
        for memory_id, vector in self._pending.items():
            self._put_row(memory_id, vector)
        self._pending.clear()

    def _put_row(self, memory_id: str, vector: Sequence[float]) -> None:
        import numpy as np  # here, not at module top: importing memdock and listing plugins stay cheap

        if self._matrix is not None and self._matrix.shape[1] != len(vector):
            return  # another dimension (no embedder pins this store): ranked from the record itself
        if self._matrix is None:
            self._matrix = np.zeros((64, len(vector)), dtype=np.float64)
        elif len(self._row_ids) == self._matrix.shape[0]:  # full: drop blanked rows, grow when still half full
            live = [(i, row) for row, i in enumerate(self._row_ids) if i is not None]
            size = self._matrix.shape[0] * (2 if 2 * len(live) >= self._matrix.shape[0] else 1)
            grown = np.zeros((size, self._matrix.shape[1]), dtype=np.float64)
            grown[: len(live)] = self._matrix[[row for _, row in live]]
            self._matrix = grown
            self.generation += 1  # the rows moved
            self._row_of = {i: n for n, (i, _) in enumerate(live)}
            self._row_ids = [i for i, _ in live]
        self._matrix[len(self._row_ids)] = vector
        self._row_of[memory_id] = len(self._row_ids)
        self._row_ids.append(memory_id)

    @staticmethod
    def _discard(index: dict[Any, dict[str, None]], key: Any, memory_id: str) -> None:
        members = index.get(key)
        if members is not None:
            members.pop(memory_id, None)
            if not members:
                del index[key]


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
        self._rows_cache: tuple[int, dict[tuple[str | None, ...], _ScopeRows | None]] = (-1, {})
        if embedder is not None:
            with self._store.lock:
                known = self._store.embedder_identity
                if known is not None and known != embedder.identity:
                    raise EmbedderMismatch(
                        f"store was written with embedder {known!r}, not {embedder.identity!r}", field="embedder"
                    )
                self._store.embedder_identity = embedder.identity

    def _visible(self, scope: Scope, where: Filter | None) -> list[MemoryRecord]:
        """The live records `scope` contains that match `where` (the stored objects: callers copy)."""
        now = self.now()
        with self._store.lock:
            records = self._store.records
            candidates = [records[i] for i in self._store.ids_in(scope) if not records[i].is_expired(now)]
        return [r for r in candidates if where is None or evaluate(where, r)]

    def _scope_rows(self, scope: Scope) -> _ScopeRows | None:
        """The ids of `_visible(scope, None)` that carry vectors, their vectors (a matrix) and its row norms,
        or None when one has no matrix row; for a store holding no expiring record, whose visibility does
        not change with time. Kept per scope until the store's next write, so repeated searches in a scope
        skip the walk over its records, the copy of its rows and their norms. The scopes kept hold at most
        twice the store's rows between them (the kept scopes are dropped first when a new one would pass
        that). Called under the store's lock."""
        store = self._store
        store.flush()
        generation, kept = self._rows_cache
        if generation != store.generation:
            kept = {}
            self._rows_cache = (store.generation, kept)
        key = _scope_key(scope)
        if key not in kept:
            ids = [r.id for r in self._visible(scope, None) if r.vector is not None]
            rows = store.rows_of(ids)
            if rows is not None and len(ids) + sum(len(k.ids) for k in kept.values() if k) > 2 * len(store.records):
                kept.clear()
            matrix = None if rows is None else store.matrix_rows(rows)
            kept[key] = None if matrix is None else _ScopeRows(ids, matrix, row_norms(matrix))
        return kept[key]

    def _kept_rows(self, scope: Scope, where: Filter | None, vector: Sequence[float]) -> _ScopeRows | None:
        """`_scope_rows(scope)` when a search for `vector` may rank them: no filter, no expiring record in
        the store, stored vectors of the query's dimension; else None (the search walks the candidates).
        Called under the store's lock."""
        if where is not None or self._store.expiring:
            return None
        found = self._scope_rows(scope)
        return found if found is not None and found.matrix.shape[1] == len(vector) else None

    def add(self, records: Sequence[MemoryRecord]) -> None:
        """Store copies of the records atomically (under one lock). An id the store holds is free when its
        record expired (that record is replaced); a live one makes the batch a `WriteConflict` (nothing is
        stored): new records never overwrite a stored one."""
        now = self.now()
        with self._store.lock:
            for record in records:
                held = self._store.records.get(record.id)
                if held is not None and not held.is_expired(now):
                    raise WriteConflict(f"a memory with id {record.id!r} is stored; nothing of this batch was stored")
            for record in records:
                self._store.put(record)

    def add_with_history(
        self, records: Sequence[MemoryRecord], events: Sequence[HistoryEvent]
    ) -> Sequence[MemoryRecord] | None:
        """The default's add and record_history under one lock: no reader sees records without events."""
        with self._store.lock:
            return super().add_with_history(records, events)

    def get(self, memory_id: str) -> MemoryRecord | None:
        """A copy of the record, or None when missing or expired."""
        with self._store.lock:
            record = self._store.records.get(memory_id)
        if record is None or record.is_expired(self.now()):
            return None
        return _private_copy(record)

    def find_by_hash(self, scope: Scope, text_hash: str) -> MemoryRecord | None:
        """The first live record (in storing order) with exactly this scope and hash."""
        now = self.now()
        with self._store.lock:
            live = [r for r in self._store.with_hash(scope, text_hash) if not r.is_expired(now)]
        return _private_copy(live[0]) if live else None

    def find_duplicates(self, wanted: Sequence[tuple[Scope, str, str]]) -> builtins.list[MemoryRecord | None]:
        """`find_by_hash` of each triple, under one lock."""
        with self._store.lock:
            return [self.find_by_hash(scope, digest) for scope, _, digest in wanted]

    def update(self, record: MemoryRecord) -> None:
        """Replace the stored copy."""
        with self._store.lock:
            self._store.put(record)

    def delete(self, memory_ids: Sequence[str]) -> None:
        """Remove the records; unknown ids are ignored."""
        with self._store.lock:
            for memory_id in memory_ids:
                self._store.drop(memory_id)

    def search(
        self, vector: Sequence[float] | None, text: str, scope: Scope, where: Filter | None, limit: int
    ) -> list[SearchHit]:
        """Exact cosine search over the matching records, most similar first (ties by id): the cosines of
        `memdock.scoring.rank_by_cosine`, computed on the store's vector matrix (`best_rows`)."""
        if vector is None:
            raise InvalidInput("the reference backend needs a query vector", field="vector")
        with self._store.lock:
            found = self._kept_rows(scope, where, vector)
            if found is not None:
                records = self._store.records
                return [SearchHit(record=_private_copy(records[found.ids[i]], vectors=False), score=cosine_to_score(c))
                        for i, c in best_rows(vector, found.matrix, found.ids, limit, norms=found.norms)]
            candidates = [r for r in self._visible(scope, where) if r.vector is not None]
            matrix = self._store.vectors_of([r.id for r in candidates]) if candidates else None
            if matrix is None or matrix.shape[1] != len(vector):
                hits = rank_by_cosine(vector, candidates, limit)
                return [SearchHit(record=_private_copy(hit.record, vectors=False), score=hit.score) for hit in hits]
            best = best_rows(vector, matrix, [r.id for r in candidates], limit)
            return [SearchHit(record=_private_copy(candidates[i], vectors=False), score=cosine_to_score(c))
                    for i, c in best]

    def keyword_search(self, text: str, scope: Scope, where: Filter | None, limit: int) -> builtins.list[SearchHit]:
        """BM25 over exactly the matching records (`memdock.search_modes.keyword_ranking`)."""
        with self._store.lock:
            candidates = {r.id: r for r in self._visible(scope, where)}
            ranked = keyword_ranking(self._store.terms, text, list(candidates), limit)
            return [SearchHit(record=_private_copy(candidates[i], vectors=False), score=score) for i, score in ranked]

    def hybrid_search(
        self, vector: Sequence[float] | None, text: str, scope: Scope, where: Filter | None, limit: int
    ) -> builtins.list[SearchHit]:
        """Every matching record's cosine and keyword score fused (`memdock.search_modes.hybrid_ranking`);
        without a filter in a store with no expiring record, over the scope's kept rows (`_scope_rows`)."""
        if vector is None:
            raise InvalidInput("the reference backend needs a query vector", field="vector")
        import numpy as np  # here, not at module top: importing memdock and listing plugins stay cheap

        with self._store.lock:
            found = self._kept_rows(scope, where, vector)
            if found is not None:
                ranked = hybrid_ranking(self._store.terms, text, vector, found.ids, found.matrix, limit,
                                        norms=found.norms)
                records = self._store.records
                return [SearchHit(record=_private_copy(records[i], vectors=False), score=score) for i, score in ranked]
            candidates = {r.id: r for r in self._visible(scope, where) if r.vector is not None}
            ids = list(candidates)
            if not ids:
                return []
            matrix = self._store.vectors_of(ids)
            if matrix is None or matrix.shape[1] != len(vector):
                matrix = np.asarray([candidates[i].vector for i in ids], dtype=np.float64)
            ranked = hybrid_ranking(self._store.terms, text, vector, ids, matrix, limit)
            return [SearchHit(record=_private_copy(candidates[i], vectors=False), score=score) for i, score in ranked]

    def list(self, scope: Scope, where: Filter | None, limit: int, cursor: str | None) -> Page:
        """A keyset page ordered by (created_at, id)."""
        with self._store.lock:
            page = page_of(self._visible(scope, where), limit, cursor)
            return Page(items=[_private_copy(r) for r in page.items], next_cursor=page.next_cursor)

    def get_many(self, memory_ids: Sequence[str]) -> builtins.list[MemoryRecord]:
        """Copies of the live records with these ids."""
        now = self.now()
        with self._store.lock:
            found = [self._store.records.get(i) for i in dict.fromkeys(memory_ids)]
            return [_private_copy(r) for r in found if r is not None and not r.is_expired(now)]

    def count(self, scope: Scope, where: Filter | None) -> int:
        """Number of live records in scope matching the filter."""
        return len(self._visible(scope, where))

    def count_every(self) -> int:
        """Number of live records of every scope."""
        return len(self._visible(Scope(), None))

    def list_every(self, limit: int, cursor: str | None, *, vectors: bool = False) -> Page:
        """A keyset page of every live record, ordered by (created_at, id), vectors included on request."""
        with self._store.lock:
            page = page_of(self._visible(Scope(), None), limit, cursor)
            return Page(items=[_private_copy(r, vectors=vectors) for r in page.items],
                        next_cursor=page.next_cursor)

    def reset(self) -> None:
        """Forget every record and event of this store."""
        with self._store.lock:
            self._store.clear()

    def record_history(self, events: Sequence[HistoryEvent]) -> None:
        """Append events."""
        with self._store.lock:
            for event in events:
                self._store.events.setdefault(event.memory_id, []).append(event.model_copy(deep=True))

    def history(self, memory_id: str) -> builtins.list[HistoryEvent]:
        """Events of one memory in the order they were recorded."""
        with self._store.lock:
            return [e.model_copy(deep=True) for e in self._store.events.get(memory_id, ())]

    def history_many(self, memory_ids: Sequence[str]) -> dict[str, builtins.list[HistoryEvent]]:
        """`history` of each id, under one lock."""
        with self._store.lock:
            return {memory_id: self.history(memory_id) for memory_id in memory_ids}


@dataclass(frozen=True)
class _ScopeRows:
    """A scope's ranked records as `ReferenceBackend._scope_rows` keeps them: their ids, their vectors (row
    i is the vector of ``ids[i]``; a copy of the store's rows) and the norms of those rows."""

    ids: list[str]
    matrix: Any
    norms: Any


def _private_copy(record: MemoryRecord, *, vectors: bool = True) -> MemoryRecord:
    """A copy that shares nothing mutable with `record` (metadata copied all the way down, the vector's list
    copied: its floats are immutable; without the vector unless `vectors`), much cheaper than a deep copy
    of the whole record."""
    vector = list(record.vector) if vectors and record.vector is not None else None
    return record.model_copy(update={"metadata": _copied(record.metadata), "vector": vector})


def _copied(value: Any) -> Any:
    """`copy.deepcopy` of a JSON value, several times faster: dicts and lists rebuilt, strings, numbers,
    booleans and None shared (immutable), anything else deep-copied."""
    if isinstance(value, dict):
        return {key: _copied(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copied(item) for item in value]
    if value is None or isinstance(value, str | int | float):
        return value
    return copy.deepcopy(value)


@hookimpl
def register_backends(register: Callable[[type[Backend]], None]) -> None:
    """Register ``memory://``."""
    register(ReferenceBackend)
