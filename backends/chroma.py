"""Chroma backends: ``chroma:///absolute/path`` (embedded, persistent) and ``chroma+http://host:port``
(a Chroma server).

Layout of one memory in Chroma: the document is the text, the embedding is memdock's own (Chroma's
default embedding function is never called: it downloads a model and fails offline), and the Chroma
metadata holds scope ids (``scope.user_id`` ...), ``_scope`` (the exact scope, for dedup), ``_hash``,
``_created``/``_updated`` (ISO UTC), ``_expires`` (epoch seconds, 0 = never), ``_metadata`` (the user
metadata as JSON, the source of truth) and ``m.<key>`` copies of string-valued metadata for push-down.

Filters: a conjunction of string equalities / memberships on scope ids and metadata is pushed into the
Chroma ``where`` clause as a NECESSARY condition; the whole filter is then evaluated with the reference
evaluator on those candidates, so results are exactly the reference semantics and nothing is dropped.
Search without a filter uses Chroma's index within the scope; when it answers with fewer hits than the
limit asks for, the scope is ranked exactly instead (never too few hits).
History lives in a companion collection ``<collection>_history``.
"""

from __future__ import annotations

import builtins
import json
import re
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Self

from memdock.backend import Backend, BackendSettings, BackendURL
from memdock.capabilities import Capability
from memdock.embedding import Embedder
from memdock.errors import BackendUnavailable, EmbedderMismatch, InvalidInput, MemdockError, Unsupported
from memdock.extras import require_extra
from memdock.filters import And, Comparison, Filter, evaluate, may_raise
from memdock.hookspecs import hookimpl
from memdock.models import SCOPE_FIELDS, HistoryEvent, MemoryRecord, Page, Scope, SearchHit
from memdock.pagination import page_of
from memdock.scoring import cosine_distance_to_score, rank_by_cosine

CAPABILITIES = frozenset({
    Capability.FILTER_EQUALITY, Capability.FILTER_RANGE, Capability.CONTAINS, Capability.HISTORY,
    Capability.TTL, Capability.PERSISTENCE, Capability.NESTED_METADATA, Capability.CONCURRENT_WRITES,
    Capability.UPDATE, Capability.HISTORY_AFTER_DELETE,
})
_COLLECTION_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]$")
_BATCH = 1000


_clients: dict[tuple[Any, ...], Any] = {}
_write_locks: dict[tuple[Any, ...], threading.RLock] = {}
_clients_lock = threading.Lock()


def _client(settings: ChromaBackend.Settings) -> tuple[Any, tuple[Any, ...]]:
    """One client per path or server, shared by every backend in the process (Chroma leaks per client)."""
    import os

    require_extra("chroma", "the chroma backend", "chromadb")
    import chromadb

    if settings.path and getattr(chromadb, "is_client", False):
        raise Unsupported("embedded chroma:// needs chromadb, but only its HTTP client (chromadb-client) is "
                          "installed: pip uninstall -y chromadb-client && pip install 'memdock[chroma]'")
    if settings.path:
        key: tuple[Any, ...] = ("path", settings.path)
    else:
        key = ("http", settings.host, settings.port, settings.ssl, settings.tenant, settings.database)
    with _clients_lock:
        if key not in _clients:
            if settings.path:
                _clients[key] = chromadb.PersistentClient(path=settings.path)
            else:
                token = os.environ.get("MEMDOCK_CHROMA_TOKEN")
                extra: dict[str, Any] = {}
                if settings.tenant:
                    extra["tenant"] = settings.tenant
                if settings.database:
                    extra["database"] = settings.database
                headers = {"Authorization": f"Bearer {token}"} if token else None
                _clients[key] = chromadb.HttpClient(
                    host=settings.host or "127.0.0.1", port=settings.port, ssl=settings.ssl, headers=headers, **extra
                )
        return _clients[key], key


def _epoch(value: datetime | None) -> float:
    return value.timestamp() if value is not None else 0.0


def _scope_key(scope: Scope) -> str:
    return json.dumps([getattr(scope, name) for name in SCOPE_FIELDS])


def _to_chroma(record: MemoryRecord) -> dict[str, Any]:
    meta: dict[str, Any] = {f"scope.{k}": v for k, v in record.scope.ids().items()}
    meta.update({
        "_scope": _scope_key(record.scope), "_hash": record.hash, "_created": record.created_at.isoformat(),
        "_updated": record.updated_at.isoformat(), "_expires": _epoch(record.expires_at),
        "_expires_at": record.expires_at.isoformat() if record.expires_at else "",
        "_metadata": json.dumps(record.metadata, ensure_ascii=False),
    })
    meta.update({f"m.{k}": v for k, v in record.metadata.items() if isinstance(v, str)})
    return meta


def _from_chroma(memory_id: str, text: str, meta: dict[str, Any], vector: Any = None) -> MemoryRecord:
    scope = Scope(**{k: meta[f"scope.{k}"] for k in SCOPE_FIELDS if f"scope.{k}" in meta})
    return MemoryRecord(
        id=memory_id, text=text, scope=scope, metadata=json.loads(meta["_metadata"]), hash=meta["_hash"],
        created_at=datetime.fromisoformat(meta["_created"]), updated_at=datetime.fromisoformat(meta["_updated"]),
        expires_at=datetime.fromisoformat(meta["_expires_at"]) if meta.get("_expires_at") else None,
        vector=[float(x) for x in vector] if vector is not None else None,
    )


def _pushable(expr: Filter | None) -> list[dict[str, Any]]:
    """Chroma clauses that every record matching `expr` satisfies (string eq/in in a top-level AND),
    taken only up to the first item that may raise, so every record on which the reference evaluator
    would raise `InvalidFilter` is still a candidate."""
    if expr is None:
        return []
    items = expr.items if isinstance(expr, And) else (expr,)
    clauses: list[dict[str, Any]] = []
    for item in items:
        if may_raise(item):
            break
        if not isinstance(item, Comparison) or item.op not in ("eq", "in"):
            continue
        values = [item.value] if item.op == "eq" else list(item.value)
        if not values or not all(isinstance(v, str) for v in values):
            continue
        key = f"scope.{item.field}" if item.field in SCOPE_FIELDS else f"m.{item.field}"
        clauses.append({key: values[0]} if item.op == "eq" else {key: {"$in": values}})
    return clauses


def _and(clauses: builtins.list[dict[str, Any]]) -> dict[str, Any] | None:
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


class ChromaBackend(Backend):
    """memdock records in one Chroma collection (see the module docstring for the layout)."""

    name = "chroma"
    description = "Chroma, embedded on disk (chroma:///path) or a server (chroma+http://)."
    schemes = ("chroma", "chroma+http")
    namespace_param = "collection"
    local_path_param = "path"
    capabilities = CAPABILITIES

    class Settings(BackendSettings):
        """Where the Chroma data is: an absolute `path` (embedded) or `host`/`port` (server)."""

        path: str | None = None
        host: str | None = None
        port: int = 8000
        ssl: bool = False
        collection: str = "memdock"
        tenant: str | None = None
        database: str | None = None

        @classmethod
        def from_url(cls, url: BackendURL) -> Self:
            """``chroma:///abs/path?collection=...`` or ``chroma+http://host:port?collection=...``."""
            data: dict[str, Any] = dict(url.params)
            if url.scheme == "chroma":
                if url.host or not url.path.startswith("/"):
                    raise InvalidInput("chroma:// needs an absolute path, e.g. chroma:///var/lib/memdock", field="path")
                data["path"] = url.path
            else:
                if not url.host:
                    raise InvalidInput("chroma+http:// needs a host", field="host")
                data["host"] = url.host
                if url.port is not None:
                    data["port"] = url.port
            settings = cls.validated(data)
            if not _COLLECTION_NAME.match(settings.collection) or ".." in settings.collection:
                raise InvalidInput("3-512 characters [a-zA-Z0-9._-], starting and ending alphanumeric",
                                   field="collection")
            return settings

        def location(self) -> str:
            """A printable location (no secrets)."""
            return f"chroma://{self.path}" if self.path else f"chroma+http://{self.host}:{self.port}"

    def __init__(self, settings: ChromaBackend.Settings, embedder: Embedder | None) -> None:
        if embedder is None:
            raise InvalidInput("the Chroma backend needs an embedder", field="embedder")
        self._settings = settings
        self._where = settings.location()
        client, key = self._guard(_client, settings)
        with _clients_lock:
            self._lock = _write_locks.setdefault((*key, settings.collection), threading.RLock())
        with self._lock:
            self._collection = self._guard(self._open_collection, client, settings.collection, embedder)
            self._history = self._guard(self._open_collection, client, f"{settings.collection}_history", None)

    def _guard(self, operation: Any, *args: Any) -> Any:
        try:
            return operation(*args)
        except MemdockError:
            raise
        except Exception as exc:
            raise BackendUnavailable(f"chroma at {self._where}: {type(exc).__name__}: {exc}") from exc

    @staticmethod
    def _open_collection(client: Any, name: str, embedder: Embedder | None) -> Any:
        identity = embedder.identity if embedder else "history"
        try:
            collection = client.get_collection(name)
        except Exception:
            metadata = {"hnsw:space": "cosine", "memdock_embedder": identity}
            try:
                return client.create_collection(name, metadata=metadata)
            except Exception:  # created meanwhile by another writer
                collection = client.get_collection(name)
        known = (collection.metadata or {}).get("memdock_embedder")
        if known is not None and known != identity:
            raise EmbedderMismatch(f"collection {name!r} was written with embedder {known!r}, not {identity!r}",
                                   field="embedder")
        return collection

    def _base(self, scope: Scope | None) -> builtins.list[dict[str, Any]]:
        live = {"$or": [{"_expires": 0.0}, {"_expires": {"$gt": self.now().timestamp()}}]}
        ids = [{f"scope.{k}": v} for k, v in scope.ids().items()] if scope else []
        return [*ids, live]

    def _fetch(self, where: dict[str, Any] | None, *, vectors: bool = False, ids: Any = None) -> list[MemoryRecord]:
        include = ["metadatas", "documents", *(["embeddings"] if vectors else [])]
        got = self._guard(lambda: self._collection.get(ids=ids, where=where, include=include))
        embeddings = got.get("embeddings") if vectors else None
        return [
            _from_chroma(i, got["documents"][n], got["metadatas"][n],
                         embeddings[n] if embeddings is not None else None)
            for n, i in enumerate(got["ids"])
        ]

    def _candidates(self, scope: Scope, where: Filter | None, *, vectors: bool = False) -> list[MemoryRecord]:
        records = self._fetch(_and(self._base(scope) + _pushable(where)), vectors=vectors)
        return [r for r in records if scope.contains(r.scope) and (where is None or evaluate(where, r))]

    def add(self, records: Sequence[MemoryRecord]) -> None:
        """Batched add; if a later chunk fails, earlier chunks are deleted again (all or nothing)."""
        done: builtins.list[str] = []
        with self._lock:
            try:
                for start in range(0, len(records), _BATCH):
                    chunk = records[start : start + _BATCH]
                    self._upsert(chunk, add=True)
                    done.extend(r.id for r in chunk)
            except BackendUnavailable:
                if done:
                    try:
                        self._collection.delete(ids=done)
                    except Exception as exc:
                        raise BackendUnavailable(f"chroma at {self._where}: rollback failed: {exc}") from exc
                raise

    def _upsert(self, records: Sequence[MemoryRecord], *, add: bool) -> None:
        if any(r.vector is None for r in records):
            raise InvalidInput("records need vectors", field="vector")
        method = self._collection.add if add else self._collection.upsert
        self._guard(lambda: method(ids=[r.id for r in records], embeddings=[r.vector for r in records],
                                   documents=[r.text for r in records], metadatas=[_to_chroma(r) for r in records]))

    def get(self, memory_id: str) -> MemoryRecord | None:
        """The record, or None when missing or expired."""
        found = self._fetch(None, vectors=True, ids=[memory_id])
        if not found or found[0].is_expired(self.now()):
            return None
        return found[0]

    def find_by_hash(self, scope: Scope, text_hash: str) -> MemoryRecord | None:
        """A live record with exactly this scope and hash."""
        where = _and([{"_scope": _scope_key(scope)}, {"_hash": text_hash}, *self._base(None)])
        found = self._fetch(where)
        return found[0] if found else None

    def update(self, record: MemoryRecord) -> None:
        """Replace the record (upsert)."""
        with self._lock:
            self._upsert([record], add=False)

    def delete(self, memory_ids: Sequence[str]) -> None:
        """Delete by id; unknown ids are ignored."""
        if memory_ids:
            with self._lock:
                self._guard(lambda: self._collection.delete(ids=list(memory_ids)))

    def search(
        self, vector: Sequence[float] | None, text: str, scope: Scope, where: Filter | None, limit: int
    ) -> list[SearchHit]:
        """Without a filter, Chroma's cosine index within the scope (or, when the index returns fewer than
        `limit` hits, exact cosine over the scope: never too few hits); with a filter, exact cosine over the
        candidates the filter leaves (evaluated with the reference evaluator)."""
        if vector is None:
            raise InvalidInput("the Chroma backend needs a query vector", field="vector")
        if where is None:
            return self._index_search(vector, scope, limit)
        return rank_by_cosine(vector, self._candidates(scope, where, vectors=True), limit)

    def _index_search(self, vector: Sequence[float], scope: Scope, limit: int) -> list[SearchHit]:
        total = self._guard(self._collection.count)
        if total == 0:
            return []
        got = self._guard(lambda: self._collection.query(
            query_embeddings=[list(vector)], n_results=min(limit, total), where=_and(self._base(scope)),
            include=["metadatas", "documents", "distances"],
        ))
        hits = [
            SearchHit(record=_from_chroma(i, got["documents"][0][n], got["metadatas"][0][n]),
                      score=cosine_distance_to_score(float(got["distances"][0][n])))
            for n, i in enumerate(got["ids"][0])
        ]
        if len(hits) < limit:
            # The scope holds fewer records than the limit, or Chroma's scope-filtered index search stopped
            # short of the scope (seen with chromadb 1.5.9 in a long-running server after many adds and
            # deletes; not reproducible on demand): either way, rank the whole scope exactly.
            return rank_by_cosine(vector, self._candidates(scope, None, vectors=True), limit)
        return sorted(hits, key=lambda h: (-h.score, h.record.id))

    def list(self, scope: Scope, where: Filter | None, limit: int, cursor: str | None) -> Page:
        """A keyset page ordered by (created_at, id)."""
        return page_of(self._candidates(scope, where), limit, cursor)

    def get_many(self, memory_ids: Sequence[str]) -> builtins.list[MemoryRecord]:
        """The live records with these ids (with their vectors), in one request."""
        if not memory_ids:
            return []
        now = self.now()
        return [r for r in self._fetch(None, vectors=True, ids=list(memory_ids)) if not r.is_expired(now)]

    def history_many(self, memory_ids: Sequence[str]) -> dict[str, builtins.list[HistoryEvent]]:
        """Events of each memory, oldest first, in one request."""
        out: dict[str, builtins.list[HistoryEvent]] = {memory_id: [] for memory_id in memory_ids}
        if not memory_ids:
            return out
        got = self._guard(lambda: self._history.get(where={"memory_id": {"$in": list(memory_ids)}},
                                                    include=["documents"]))
        for event in sorted((HistoryEvent.model_validate_json(d) for d in got["documents"]),
                            key=lambda e: e.created_at):
            out[event.memory_id].append(event)
        return out

    def count_every(self) -> int:
        """Number of records in the collection (expired ones included until they are deleted)."""
        return int(self._guard(self._collection.count))

    def list_every(self, limit: int, cursor: str | None, *, vectors: bool = False) -> Page:
        """A page of every live record in Chroma's own storage order (offset paging: records added meanwhile
        come last, none is repeated; a record deleted meanwhile may shift the next page by one). The cursor
        is the offset of the next page, as text."""
        try:
            offset = int(cursor) if cursor is not None else 0
            if offset < 0:
                raise ValueError(cursor)
        except ValueError:
            raise InvalidInput("malformed cursor", field="cursor") from None
        include = ["metadatas", "documents", *(["embeddings"] if vectors else [])]
        got = self._guard(lambda: self._collection.get(limit=limit, offset=offset, include=include))
        embeddings = got.get("embeddings") if vectors else None
        now = self.now()
        records = [
            _from_chroma(i, got["documents"][n], got["metadatas"][n],
                         embeddings[n] if embeddings is not None else None)
            for n, i in enumerate(got["ids"])
        ]
        next_cursor = str(offset + len(records)) if len(records) == limit else None
        return Page(items=[r for r in records if not r.is_expired(now)], next_cursor=next_cursor)

    def count(self, scope: Scope, where: Filter | None) -> int:
        """Number of live records in scope matching the filter."""
        return len(self._candidates(scope, where))

    def reset(self) -> None:
        """Delete every record and history event of this collection, in batches."""
        with self._lock:
            for collection in (self._collection, self._history):
                while True:
                    ids = self._guard(lambda c=collection: c.get(limit=_BATCH, include=[])["ids"])
                    if not ids:
                        break
                    self._guard(lambda c=collection, i=ids: c.delete(ids=i))

    def record_history(self, events: Sequence[HistoryEvent]) -> None:
        """Append events to the companion collection."""
        if not events:
            return
        with self._lock:
            self._guard(lambda: self._history.add(
                ids=[e.id for e in events], embeddings=[[1.0] for _ in events],
                documents=[e.model_dump_json() for e in events],
                metadatas=[{"memory_id": e.memory_id, "at": e.created_at.isoformat()} for e in events],
            ))

    def history(self, memory_id: str) -> builtins.list[HistoryEvent]:
        """Events of one memory, oldest first."""
        got = self._guard(lambda: self._history.get(where={"memory_id": memory_id}, include=["documents"]))
        events = [HistoryEvent.model_validate_json(doc) for doc in got["documents"]]
        return sorted(events, key=lambda e: e.created_at)


@hookimpl
def register_backends(register: Callable[[type[Backend]], None]) -> None:
    """Register ``chroma://`` and ``chroma+http://``."""
    register(ChromaBackend)
