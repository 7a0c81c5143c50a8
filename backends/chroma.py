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
History lives in a companion collection ``<collection>_history``, except the ADD event of a record
not changed since it was added: the record carries it (``_add_event``: the event's id and time; the rest
of the event is the record itself), so record and event are written in ONE Chroma ``add`` (all or nothing
even if the process dies) and a one-by-one add costs one write, not two. `update` and `delete` move the
carried event into the history collection before they change the record; `history` reads both places.

Expiry is checked in Python on every record read (``expires_at <= now`` is never returned); Chroma's
``where`` carries the expiry clause only where it pays: an index search asks Chroma without it (the clause
made a query 1.8x slower) and asks again with it only when the answer held an expired record, so
collections without expiring records pay nothing, whichever process wrote them.

Writes and their guarantees:

- A batch of new records goes in with its history events in one ``add`` per 1,000 records (ADD events
  ride in the records; other events, e.g. those `Memory.import_` carries over, in one ``add`` per 1,000 to
  the history collection) (`ChromaBackend.add_with_history`). Chroma has no transactions across calls,
  so on failure memdock deletes what it wrote of the batch (records and events) before re-raising. A crash
  of the process between calls can still leave the first chunks of a batch over 1,000 records, or records
  without imported events.
- Dedup (a text stored once per exact scope): Chroma has no unique constraint. On embedded Chroma
  (``chroma://``) every process writing the path takes an exclusive ``flock`` on
  ``<path>/memdock-<collection>.lock`` around the duplicate re-check and the insert, so processes sharing
  the path on one machine never store a text twice in a scope, not even for a moment: a writer that finds
  the text stored meanwhile writes nothing and raises `WriteConflict`, which `Memory` answers by checking
  again (event NONE). A generation counter in the lock file lets a writer skip the re-check when no other
  writer wrote since its own check (the lock needs a local file system with working ``flock``, not NFS).
  On a Chroma server (``chroma+http://``) writers in one process are serialised; across processes (or
  machines) a writer checks again after writing and withdraws its whole batch (`WriteConflict`) when
  Chroma holds an earlier copy of one of its texts, so racing writers end with one copy -- but for a
  moment both copies are visible, a writer killed between its write and its withdrawal leaves a
  duplicate, and this rests on Chroma returning records in storage order (chromadb 1.5). Writers of
  other programs, or of memdock versions before this one, are not covered.
"""

from __future__ import annotations

import builtins
import json
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Self

from memdock.backend import Backend, BackendSettings, BackendURL
from memdock.capabilities import Capability
from memdock.embedding import Embedder
from memdock.errors import (
    BackendUnavailable,
    EmbedderMismatch,
    InvalidInput,
    MemdockError,
    Unsupported,
    WriteConflict,
)
from memdock.extras import require_extra
from memdock.filters import And, Comparison, Filter, evaluate, may_raise
from memdock.hookspecs import hookimpl
from memdock.models import SCOPE_FIELDS, EventKind, HistoryEvent, MemoryRecord, Page, Scope, SearchHit
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
_gates: dict[tuple[Any, ...], _WriteGate] = {}
_clients_lock = threading.Lock()


class _WriteGate:
    """Tells writers of one collection whether anyone wrote since they checked for duplicates: a
    generation counter every writer bumps after writing records. This one counts the writers of this
    process only and excludes nothing itself (the collection's in-process lock does that): for a Chroma
    server, whose other clients memdock cannot lock out."""

    def __init__(self) -> None:
        self._count = 0

    def generation(self) -> int:
        """The current generation."""
        return self._count

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Nothing to hold beyond the in-process lock."""
        yield

    def bump(self) -> None:
        """Records were written."""
        self._count += 1


class _PathGate(_WriteGate):
    """The cross-process gate of one embedded collection: an exclusive ``flock`` on a lock file in the
    Chroma directory, whose first 8 bytes hold the generation every writer of any process bumps, under
    the lock, after writing records. One per (path, collection) per process, used under that collection's
    in-process lock (a second ``flock`` on the same file from one process would convert the lock, not wait
    for it). The file is created by the first write (opening a store to read writes nothing). Without
    ``fcntl`` (Windows) it counts but excludes nothing."""

    def __init__(self, lock_file: Path) -> None:
        super().__init__()
        self._file = lock_file
        self._fd: int | None = None

    def _open(self, *, create: bool) -> int | None:
        if self._fd is None:
            try:
                self._fd = os.open(self._file, os.O_RDWR | (os.O_CREAT if create else 0), 0o600)
            except FileNotFoundError:
                if create:
                    raise
        return self._fd

    def generation(self) -> int:
        """The generation in the file, 0 before the first write (read without locking: a writer that has
        not bumped it yet is one whose records a check may have missed, and the bump it makes before
        unlocking tells the checker)."""
        fd = self._open(create=False)
        return 0 if fd is None else int.from_bytes(os.pread(fd, 8, 0).ljust(8, b"\0"), "big")

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the lock across processes (blocks until it is free); `BackendUnavailable` if it cannot."""
        if sys.platform == "win32":
            yield
            return
        import fcntl

        try:
            fd = self._open(create=True)
            assert fd is not None
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            raise BackendUnavailable(f"cannot lock {self._file}: {exc}") from exc
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def bump(self) -> None:
        """Records were written (call while holding `exclusive`)."""
        fd = self._open(create=True)
        assert fd is not None
        os.pwrite(fd, (self.generation() + 1).to_bytes(8, "big"), 0)


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


def _to_chroma(record: MemoryRecord, add_event: HistoryEvent | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {f"scope.{k}": v for k, v in record.scope.ids().items()}
    meta.update({
        "_add_event": f"{add_event.id}|{add_event.created_at.isoformat()}" if add_event is not None else "",
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


def _inlinable(record: MemoryRecord, events: builtins.list[HistoryEvent]) -> bool:
    """True when `events` are just the ADD event of `record` as it is stored now (what `Memory.add` makes),
    so that the record can carry it (see `_carried_event`)."""
    if len(events) != 1:
        return False
    event = events[0]
    return (event.event is EventKind.ADD and event.memory_id == record.id and event.scope == record.scope
            and event.new_text == record.text and event.old_text is None and event.old_metadata is None
            and event.new_metadata is not None
            and json.dumps(event.new_metadata) == json.dumps(record.metadata)
            and "|" not in event.id)


def _carried_event(memory_id: str, text: str, meta: dict[str, Any]) -> HistoryEvent | None:
    """The ADD event a record carries in ``_add_event`` (``<event id>|<ISO time>``; empty once the record
    was updated): the rest of the event is the record itself, unchanged since it was added."""
    carried = meta.get("_add_event")
    if not carried:
        return None
    event_id, _, at = str(carried).partition("|")
    record = _from_chroma(memory_id, text, meta)
    return HistoryEvent(id=event_id, memory_id=memory_id, event=EventKind.ADD, new_text=record.text,
                        new_metadata=record.metadata, scope=record.scope, created_at=datetime.fromisoformat(at))


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
            if (*key, settings.collection) not in _gates:
                lock_file = Path(settings.path) / f"memdock-{settings.collection}.lock" if settings.path else None
                _gates[(*key, settings.collection)] = _PathGate(lock_file) if lock_file is not None else _WriteGate()
            self._gate = _gates[(*key, settings.collection)]
        self._checked = threading.local()  # per thread: the generation its last duplicate check saw
        self._expiring = False  # a hint only: this process saw (or wrote) expiring records here
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

    @staticmethod
    def _scope_clauses(scope: Scope) -> builtins.list[dict[str, Any]]:
        return [{f"scope.{k}": v} for k, v in scope.ids().items()]

    @staticmethod
    def _live_clause(now: datetime) -> dict[str, Any]:
        return {"$or": [{"_expires": 0.0}, {"_expires": {"$gt": now.timestamp()}}]}

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """The in-process write lock and, on embedded Chroma, the cross-process one."""
        with self._lock, self._gate.exclusive():
            yield

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
        now = self.now()
        records = self._fetch(_and(self._scope_clauses(scope) + _pushable(where)), vectors=vectors)
        return [r for r in records
                if not r.is_expired(now) and scope.contains(r.scope) and (where is None or evaluate(where, r))]

    def add(self, records: Sequence[MemoryRecord]) -> None:
        """Batched add (no duplicate check); if a later chunk fails, the chunks already written are deleted
        again before re-raising (all or nothing, as far as the process lives)."""
        self._write_new(records, [])

    def add_with_history(
        self, records: Sequence[MemoryRecord], events: Sequence[HistoryEvent]
    ) -> Sequence[MemoryRecord] | None:
        """The records and their events: one ``add`` per 1,000 records, the ADD events riding in them (see
        the module docstring), other events in one ``add`` per 1,000 to the history collection.

        Dedup re-check: under the write locks (on embedded Chroma the cross-process ``flock`` too), when
        another writer stored one of the texts in exactly its scope since this thread's last
        `find_duplicates`, nothing is written and `WriteConflict` is raised (`Memory` checks again and
        answers NONE with the other writer's record). The re-check is skipped when no writer wrote since that
        `find_duplicates` (the lock file's generation is unchanged).

        On a Chroma server, which memdock cannot lock, the records are checked once more AFTER the write:
        where Chroma (which returns records in the order they were stored) holds an earlier live copy of the
        same text in the same scope, the whole batch just written is deleted again with its events and
        `WriteConflict` raised. Every writer agrees on which copy is first, so racing writers keep exactly
        one; in between, readers may see both, and a writer that dies before deleting its copy leaves it.

        Recovery rule (Chroma has no transactions): when a write fails, every record and event this call
        wrote is deleted again before the error is re-raised, so a failure the process survives leaves
        nothing of the batch. A crash between the writes can leave part of a batch over 1,000 records, or
        records without the events an import carried."""
        with self._writing():
            if getattr(self._checked, "generation", None) != self._generation() and any(self._holders(records)):
                raise self._conflict()
            self._checked.generation = None
            written = self._write_new(records, events, locked=True)
            if records and not isinstance(self._gate, _PathGate) and self._raced(records, written):
                raise self._conflict()
            return None

    def _conflict(self) -> WriteConflict:
        return WriteConflict(f"chroma at {self._where}: another writer stored the same text in this scope at the "
                             "same time; nothing of this batch was stored")

    def _raced(self, fresh: Sequence[MemoryRecord], written: dict[str, builtins.list[str]]) -> bool:
        """After writing `fresh` to a server: True (and the batch deleted again) when another writer holds
        an earlier copy of one of its records. When the check fails, the batch is undone and the error
        re-raised."""
        try:
            firsts = self._find_duplicates([(r.scope, r.hash) for r in fresh])
        except BaseException:
            self._undo(written)
            raise
        if any(first is not None and first.id != r.id for r, first in zip(fresh, firsts, strict=True)):
            self._undo(written)
            return True
        return False

    def _generation(self) -> int:
        return int(self._guard(self._gate.generation))

    def _holders(self, records: Sequence[MemoryRecord]) -> builtins.list[MemoryRecord | None]:
        """For each record, a live record stored with its exact scope and hash, or None."""
        return self._find_duplicates([(r.scope, r.hash) for r in records])

    def _write_new(self, records: Sequence[MemoryRecord], events: Sequence[HistoryEvent], *,
                   locked: bool = False) -> dict[str, builtins.list[str]]:
        """Add records, then events, in chunks; on failure delete what was written, then re-raise. Returns
        the ids written (``records``, ``events``)."""
        if any(r.vector is None for r in records):
            raise InvalidInput("records need vectors", field="vector")
        if not locked:
            with self._writing():
                return self._write_new(records, events, locked=True)
        by_record: dict[str, builtins.list[HistoryEvent]] = {r.id: [] for r in records}
        for event in events:
            by_record.get(event.memory_id, []).append(event)
        carried = {r.id: by_record[r.id][0] for r in records if _inlinable(r, by_record[r.id])}
        events = [e for e in events if carried.get(e.memory_id) is not e]
        written: dict[str, builtins.list[str]] = {"records": [], "events": []}
        try:
            for start in range(0, len(records), _BATCH):
                chunk = records[start : start + _BATCH]
                self._upsert(chunk, add=True, carried=carried)
                written["records"].extend(r.id for r in chunk)
            for start in range(0, len(events), _BATCH):
                part = events[start : start + _BATCH]
                self._add_events(part)
                written["events"].extend(e.id for e in part)
        except BaseException:
            self._undo(written)
            raise
        finally:
            if written["records"]:
                self._guard(self._gate.bump)
        if any(r.expires_at is not None for r in records):
            self._expiring = True
        return written

    def _undo(self, written: dict[str, builtins.list[str]]) -> None:
        """Delete records and events a failed write stored (the recovery rule)."""
        try:
            for collection, ids in ((self._collection, written["records"]), (self._history, written["events"])):
                if ids:
                    collection.delete(ids=ids)
        except Exception as exc:
            raise BackendUnavailable(f"chroma at {self._where}: rollback failed: {type(exc).__name__}: {exc}") from exc

    def _upsert(self, records: Sequence[MemoryRecord], *, add: bool,
                carried: dict[str, HistoryEvent] | None = None) -> None:
        if any(r.vector is None for r in records):
            raise InvalidInput("records need vectors", field="vector")
        method = self._collection.add if add else self._collection.upsert
        metadatas = [_to_chroma(r, (carried or {}).get(r.id)) for r in records]
        self._guard(lambda: method(ids=[r.id for r in records], embeddings=[r.vector for r in records],
                                   documents=[r.text for r in records], metadatas=metadatas))

    def get(self, memory_id: str) -> MemoryRecord | None:
        """The record, or None when missing or expired."""
        found = self._fetch(None, vectors=True, ids=[memory_id])
        if not found or found[0].is_expired(self.now()):
            return None
        return found[0]

    def find_by_hash(self, scope: Scope, text_hash: str) -> MemoryRecord | None:
        """A live record with exactly this scope and hash (the first Chroma returns)."""
        return self._find_duplicates([(scope, text_hash)])[0]

    def find_duplicates(self, wanted: Sequence[tuple[Scope, str, str]]) -> builtins.list[MemoryRecord | None]:
        """`find_by_hash` of every triple, with one Chroma ``get`` per scope (per 1,000 distinct hashes) of
        the batch. Notes the lock file's generation first, so that `add_with_history` knows whether another
        writer may have stored one of these texts since."""
        self._checked.generation = self._generation()
        return self._find_duplicates([(scope, digest) for scope, _text, digest in wanted])

    def _find_duplicates(self, wanted: Sequence[tuple[Scope, str]]) -> builtins.list[MemoryRecord | None]:
        by_scope: dict[str, dict[str, None]] = {}
        for scope, digest in wanted:
            by_scope.setdefault(_scope_key(scope), {})[digest] = None
        now = self.now()
        found: dict[tuple[str, str], MemoryRecord] = {}
        for key, digests in by_scope.items():
            unique = builtins.list(digests)
            for start in range(0, len(unique), _BATCH):
                part = unique[start : start + _BATCH]
                hashes: dict[str, Any] = {"_hash": part[0]} if len(part) == 1 else {"_hash": {"$in": part}}
                for record in self._fetch({"$and": [{"_scope": key}, hashes]}):
                    if not record.is_expired(now):
                        found.setdefault((key, record.hash), record)
        return [found.get((_scope_key(scope), digest)) for scope, digest in wanted]

    def update(self, record: MemoryRecord) -> None:
        """Replace the record (upsert); counts as a write for other writers' duplicate checks. The ADD
        event the record carried goes to the history collection first (the updated record no longer
        holds the text and metadata it describes)."""
        with self._writing():
            try:
                self._release_carried([record.id])
                self._upsert([record], add=False)
            finally:
                self._guard(self._gate.bump)
        if record.expires_at is not None:
            self._expiring = True

    def delete(self, memory_ids: Sequence[str]) -> None:
        """Delete by id; unknown ids are ignored. The ADD events the records carried go to the history
        collection first (history outlives the record)."""
        if memory_ids:
            with self._lock:
                self._release_carried(memory_ids)
                self._guard(lambda: self._collection.delete(ids=list(memory_ids)))

    def _release_carried(self, memory_ids: Sequence[str]) -> None:
        """Write the ADD events these records carry to the history collection (a crash after this leaves
        the event in both places; reads keep one)."""
        got = self._guard(lambda: self._collection.get(ids=list(memory_ids), include=["metadatas", "documents"]))
        events = [event for n, memory_id in enumerate(got["ids"])
                  if (event := _carried_event(memory_id, got["documents"][n], got["metadatas"][n])) is not None]
        for start in range(0, len(events), _BATCH):
            part = events[start : start + _BATCH]
            self._guard(lambda p=part: self._history.upsert(
                ids=[e.id for e in p], embeddings=[[1.0] for _ in p], documents=[e.model_dump_json() for e in p],
                metadatas=[{"memory_id": e.memory_id, "at": e.created_at.isoformat()} for e in p],
            ))

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
        now = self.now()
        hits = self._query(vector, scope, limit, now if self._expiring else None)
        if not self._expiring and any(h.record.is_expired(now) for h in hits):
            # An expired record was among the nearest: they may hide live ones, so ask again without them.
            self._expiring = True
            hits = self._query(vector, scope, limit, now)
        hits = [h for h in hits if not h.record.is_expired(now)]
        if len(hits) < limit:
            # The scope holds fewer records than the limit, or Chroma's scope-filtered index search stopped
            # short of the scope (seen with chromadb 1.5.9 in a long-running server after many adds and
            # deletes; not reproducible on demand): either way, rank the whole scope exactly.
            return rank_by_cosine(vector, self._candidates(scope, None, vectors=True), limit)
        return sorted(hits, key=lambda h: (-h.score, h.record.id))

    def _query(self, vector: Sequence[float], scope: Scope, limit: int, live_at: datetime | None) -> list[SearchHit]:
        """Chroma's index search in `scope` (only records live at `live_at`, when given)."""
        clauses = self._scope_clauses(scope) + ([self._live_clause(live_at)] if live_at is not None else [])
        got = self._guard(lambda: self._collection.query(
            query_embeddings=[list(vector)], n_results=limit, where=_and(clauses),
            include=["metadatas", "documents", "distances"],
        ))
        return [
            SearchHit(record=_from_chroma(i, got["documents"][0][n], got["metadatas"][0][n]),
                      score=cosine_distance_to_score(float(got["distances"][0][n])))
            for n, i in enumerate(got["ids"][0])
        ]

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
        """Events of each memory, oldest first: the ADD events the records carry and the history
        collection's events, in two requests."""
        out: dict[str, builtins.list[HistoryEvent]] = {memory_id: [] for memory_id in memory_ids}
        if not memory_ids:
            return out
        ids = builtins.list(dict.fromkeys(memory_ids))
        records = self._guard(lambda: self._collection.get(ids=ids, include=["metadatas", "documents"]))
        where: dict[str, Any] = {"memory_id": ids[0]} if len(ids) == 1 else {"memory_id": {"$in": ids}}
        got = self._guard(lambda: self._history.get(where=where, include=["documents"]))
        events: dict[str, HistoryEvent] = {}
        for n, memory_id in enumerate(records["ids"]):
            carried = _carried_event(memory_id, records["documents"][n], records["metadatas"][n])
            if carried is not None:
                events[carried.id] = carried
        for document in got["documents"]:
            event = HistoryEvent.model_validate_json(document)
            events[event.id] = event
        for event in sorted(events.values(), key=lambda e: e.created_at):
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
        """Append events to the companion collection (all or nothing, like `add_with_history`)."""
        if events:
            with self._lock:
                self._write_new([], events, locked=True)

    def _add_events(self, events: Sequence[HistoryEvent]) -> None:
        self._guard(lambda: self._history.add(
            ids=[e.id for e in events], embeddings=[[1.0] for _ in events],
            documents=[e.model_dump_json() for e in events],
            metadatas=[{"memory_id": e.memory_id, "at": e.created_at.isoformat()} for e in events],
        ))

    def history(self, memory_id: str) -> builtins.list[HistoryEvent]:
        """Events of one memory, oldest first (see `history_many`)."""
        return self.history_many([memory_id])[memory_id]


@hookimpl
def register_backends(register: Callable[[type[Backend]], None]) -> None:
    """Register ``chroma://`` and ``chroma+http://``."""
    register(ChromaBackend)
