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

- A batch of new records goes in with its history events in as few Chroma ``add`` calls as Chroma takes
  (`ChromaBackend.add_with_history`): at most ``get_max_batch_size()`` items each (5,461 with chromadb 1.5.9,
  embedded and server alike: SQLite's variable limit over 6) and about 32 MiB (a Chroma server refuses a body
  over 40 MiB), or the ``write_batch`` setting when it is lower. ADD events ride in the records; other
  events (those `Memory.import_` carries over) go to the history collection in ``add`` calls of their own.
  A batch of ONE ``add`` is all or nothing even if the process dies (Chroma stores an ``add`` with one
  SQLite statement). A batch of more than one is journaled: before its first ``add`` memdock writes the ids
  of every ``add`` of the batch to the companion collection ``<collection>_journal`` (an entry per ``add``,
  id ``<batch>:<n>``), and deletes the entries after the last one (on a server, after the dedup check
  after the write). When a write fails, memdock deletes what the batch wrote, then its entries, before
  re-raising. After a crash the dead writer's entries remain; the batch is rolled back (the records and
  events they name deleted, then the entries) by the next open of the collection, in any process, or
  before the next journaled batch, once its writer is known to be gone:

  - embedded (``chroma://``): every writer holds the ``flock`` below for the whole batch, and the journal is
    read and rolled back under it, so an entry found there is a dead writer's (an open that finds entries
    waits for another process's batch to end; without ``fcntl``, on Windows, the lease decides, as on a
    server);
  - on a server (``chroma+http://``): by lease. Each entry holds the time ``journal_lease`` seconds (default
    300) after it was written; the writer renews it before a write once half of it has passed; a batch whose
    lease ran out is a dead writer's. A writer that finds before a write, or at the end, that its lease ran
    out (or that another writer took its entries) deletes what it wrote and raises `BackendUnavailable`.
    So one ``add`` must take less than half the lease, and the clocks of the machines writing a collection
    must agree to well within it.

  Readers may see a batch while it is written, and a dead writer's part of one until it is rolled back.
  The promise is crash atomicity: after a crash and the next open (on a server: once the lease ran out),
  a batch is wholly present or wholly absent, never in part.
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
  duplicate (of a batch of one ``add``; a journaled batch is rolled back), and this rests on Chroma
  returning records in storage order (chromadb 1.5). Writers of other programs, or of memdock versions
  before this one, are not covered (by the journal either).
"""

from __future__ import annotations

import builtins
import json
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Self

from pydantic import Field

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
from memdock.keyword import BM25Index
from memdock.models import SCOPE_FIELDS, EventKind, HistoryEvent, MemoryRecord, Page, Scope, SearchHit
from memdock.pagination import page_of
from memdock.scoring import cosine_distance_to_score, rank_by_cosine
from memdock.search_modes import hybrid_hits, hybrid_ranking, keyword_hits, keyword_ranking

CAPABILITIES = frozenset({
    Capability.FILTER_EQUALITY, Capability.FILTER_RANGE, Capability.CONTAINS, Capability.HISTORY,
    Capability.TTL, Capability.PERSISTENCE, Capability.NESTED_METADATA, Capability.CONCURRENT_WRITES,
    Capability.UPDATE, Capability.HISTORY_AFTER_DELETE, Capability.KEYWORD_SEARCH,
})
_COLLECTION_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]$")
_BATCH = 1000  # ids or hashes per read request (a ``$in`` list, a page of `reset`)
_REQUEST_BYTES = 32 * 1024 * 1024  # most estimated bytes one write carries (a Chroma server refuses over 40 MiB)
_VECTOR_BYTES = 20  # estimated bytes of one vector component on the wire (a JSON float: the worst case)


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


def _scope_of(meta: dict[str, Any]) -> Scope:
    return Scope(**{k: meta[f"scope.{k}"] for k in SCOPE_FIELDS if f"scope.{k}" in meta})


def _expired(meta: dict[str, Any] | None, now: datetime) -> bool:
    """Whether the record with this Chroma metadata had expired at `now` (`MemoryRecord.is_expired`)."""
    expires_at = (meta or {}).get("_expires_at")
    return isinstance(expires_at, str) and bool(expires_at) and datetime.fromisoformat(expires_at) <= now


def _live_in(meta: dict[str, Any], wanted: builtins.list[tuple[str, str]], now: datetime) -> bool:
    """What `_candidates` keeps, read from a record's Chroma metadata alone: in the scope whose
    `_scope_keys` are `wanted` (`Scope.contains`, without building the record's scope), not expired."""
    return all(meta.get(key) == value for key, value in wanted) and not _expired(meta, now)


def _scope_keys(scope: Scope) -> builtins.list[tuple[str, str]]:
    """(metadata key, id) of every id `scope` sets: a record is in `scope` when its metadata holds them all."""
    return [(f"scope.{name}", value) for name, value in scope.ids().items()]


def _from_chroma(memory_id: str, text: str, meta: dict[str, Any], vector: Any = None) -> MemoryRecord:
    scope = _scope_of(meta)
    return MemoryRecord(
        id=memory_id, text=text, scope=scope, metadata=json.loads(meta["_metadata"]), hash=meta["_hash"],
        created_at=datetime.fromisoformat(meta["_created"]), updated_at=datetime.fromisoformat(meta["_updated"]),
        expires_at=datetime.fromisoformat(meta["_expires_at"]) if meta.get("_expires_at") else None,
        vector=_floats(vector) if vector is not None else None,
    )


def _floats(vector: Any) -> builtins.list[float]:
    """A vector as Chroma returns it (a numpy array, or a list) as Python floats; ``tolist`` converts a
    numpy array in one call, many times faster than element by element."""
    return vector.tolist() if hasattr(vector, "tolist") else [float(x) for x in vector]


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


@dataclass
class _Written:
    """What one batch has written so far: the ids of each write (records, events) and, for a batch of more
    than one write (`batch` set), its journal entries and when the last was written (`time.monotonic`)."""

    batch: str | None
    records: builtins.list[builtins.list[str]] = field(default_factory=builtins.list)
    events: builtins.list[builtins.list[str]] = field(default_factory=builtins.list)
    entries: builtins.list[str] = field(default_factory=builtins.list)
    leased_at: float = 0.0


def _runs(sizes: Sequence[int], most: int, budget: int = _REQUEST_BYTES) -> builtins.list[range]:
    """Consecutive runs of the items whose estimated sizes are `sizes`: at most `most` items and `budget`
    bytes each (an item bigger than `budget` is a run of its own); none for no items."""
    runs: builtins.list[range] = []
    start, total = 0, 0
    for n, size in enumerate(sizes):
        if n > start and (n - start >= most or total + size > budget):
            runs.append(range(start, n))
            start, total = n, 0
        total += size
    if start < len(sizes):
        runs.append(range(start, len(sizes)))
    return runs


def _record_bytes(record: MemoryRecord, meta: dict[str, Any]) -> int:
    """An upper estimate of the bytes a record takes in an ``add`` request (ASCII-escaped JSON of its text
    and metadata, the vector as JSON floats)."""
    return len(json.dumps([record.id, record.text, meta])) + _VECTOR_BYTES * len(record.vector or ()) + 64


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
        write_batch: int | None = Field(
            default=None, ge=1, description="most records (or events) per Chroma write; default and upper bound: "
            "Chroma's own limit (`get_max_batch_size()`), within 32 MiB per write")
        journal_lease: float = Field(
            default=300.0, gt=0, allow_inf_nan=False, description="seconds after its last write (where memdock "
            "cannot lock: a Chroma server) until the journal entry of an unfinished batch counts as a dead writer's")

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
        self._client = client
        most = int(self._guard(client.get_max_batch_size))  # -1 from a server that does not say
        most = most if most >= 1 else _BATCH
        self._chunk = min(settings.write_batch or most, most)  # records (or events) per write
        # Under the write locks, can a journal entry be a live writer's? Not where the flock excludes every
        # writer of the path (then every entry found is a dead writer's); elsewhere its lease decides.
        self._locks_out_writers = isinstance(self._gate, _PathGate) and sys.platform != "win32"
        with self._lock:
            self._collection = self._guard(self._open_collection, client, settings.collection, embedder)
            self._history = self._guard(self._open_collection, client, f"{settings.collection}_history", None)
            self._journal = self._guard(self._open_collection, client, f"{settings.collection}_journal", None)
        self._recover_on_open()

    def _guard(self, operation: Any, *args: Any) -> Any:
        try:
            return operation(*args)
        except MemdockError:
            raise
        except Exception as exc:
            raise BackendUnavailable(f"chroma at {self._where}: {type(exc).__name__}: {exc}") from exc

    @staticmethod
    def _open_collection(client: Any, name: str, embedder: Embedder | None) -> Any:
        identity = embedder.identity if embedder else name.rpartition("_")[2]  # "history" or "journal"
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
        return [{key: value} for key, value in _scope_keys(scope)]

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
        """Batched add (no duplicate check), all or nothing like `add_with_history`."""
        with self._writing():
            self._commit(self._write_new(records, []))

    def add_with_history(
        self, records: Sequence[MemoryRecord], events: Sequence[HistoryEvent]
    ) -> Sequence[MemoryRecord] | None:
        """The records and their events, in as few Chroma writes as Chroma takes (the ADD events riding in
        the records, other events in writes of their own; see the module docstring), journaled when that
        is more than one write.

        Dedup re-check: under the write locks (on embedded Chroma the cross-process ``flock`` too), when
        another writer stored one of the texts in exactly its scope since this thread's last
        `find_duplicates`, nothing is written and `WriteConflict` is raised (`Memory` checks again and
        answers NONE with the other writer's record). The re-check is skipped when no writer wrote since that
        `find_duplicates` (the lock file's generation is unchanged).

        On a Chroma server, which memdock cannot lock, the records are checked once more AFTER the write:
        where Chroma (which returns records in the order they were stored) holds an earlier live copy of the
        same text in the same scope, the whole batch just written is deleted again with its events and
        `WriteConflict` raised. Every writer agrees on which copy is first, so racing writers keep exactly
        one; in between, readers may see both, and a writer that dies before deleting its copy leaves it
        (unless its batch was journaled: the journal entry goes only after this check).

        Recovery rule (Chroma has no transactions): when a write fails, every record and event this call
        wrote is deleted again before the error is re-raised; a batch of more than one write is journaled
        first, so that after a crash the next open (or the next journaled batch) deletes what it wrote.
        Either way a batch ends wholly stored or wholly absent."""
        with self._writing():
            if getattr(self._checked, "generation", None) != self._generation() and any(self._holders(records)):
                raise self._conflict()
            self._checked.generation = None
            written = self._write_new(records, events)
            if records and not isinstance(self._gate, _PathGate) and self._raced(records, written):
                raise self._conflict()
            self._commit(written)
            return None

    def _conflict(self) -> WriteConflict:
        return WriteConflict(f"chroma at {self._where}: another writer stored the same text in this scope at the "
                             "same time; nothing of this batch was stored")

    def _raced(self, fresh: Sequence[MemoryRecord], written: _Written) -> bool:
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

    def _write_new(self, records: Sequence[MemoryRecord], events: Sequence[HistoryEvent]) -> _Written:
        """Add records, then events, in writes of at most `_chunk` items and `_REQUEST_BYTES` estimated
        bytes each; when that takes more than one write, roll back dead writers' batches, then journal the
        ids of every write before the first (`_write_journal`). On failure delete what was written, then
        re-raise. The caller holds the write locks (`_writing`) and ends the batch with `_commit`."""
        if any(r.vector is None for r in records):
            raise InvalidInput("records need vectors", field="vector")
        self._free_ids(records)
        by_record: dict[str, builtins.list[HistoryEvent]] = {r.id: [] for r in records}
        for event in events:
            by_record.get(event.memory_id, []).append(event)
        carried = {r.id: by_record[r.id][0] for r in records if _inlinable(r, by_record[r.id])}
        events = [e for e in events if carried.get(e.memory_id) is not e]
        metadatas = [_to_chroma(r, carried.get(r.id)) for r in records]
        documents = [e.model_dump_json() for e in events]
        record_runs = _runs([_record_bytes(r, m) for r, m in zip(records, metadatas, strict=True)], self._chunk)
        event_runs = _runs([2 * len(d.encode("utf-8")) + 200 for d in documents], self._chunk)
        writes = [("records", [records[n].id for n in run]) for run in record_runs]
        writes += [("events", [events[n].id for n in run]) for run in event_runs]
        written = _Written(batch=uuid.uuid4().hex if len(writes) > 1 else None)
        try:
            if written.batch is not None:
                self._recover()
                self._write_journal(written, writes)
            for run, (_, ids) in zip(record_runs, writes, strict=False):
                self._renew(written)
                written.records.append(ids)  # before the call: a failed call may still have stored them
                self._guard(lambda r=run, i=ids: self._collection.add(
                    ids=i, embeddings=[records[n].vector for n in r], documents=[records[n].text for n in r],
                    metadatas=[metadatas[n] for n in r]))
            for run, (_, ids) in zip(event_runs, writes[len(record_runs):], strict=True):
                self._renew(written)
                written.events.append(ids)
                self._add_events([events[n] for n in run], [documents[n] for n in run])
        except BaseException:
            self._undo(written)
            raise
        finally:
            if written.records:
                self._guard(self._gate.bump)
        if any(r.expires_at is not None for r in records):
            self._expiring = True
        return written

    def _free_ids(self, records: Sequence[MemoryRecord]) -> None:
        """Before new records go in: Chroma's ``add`` silently skips an id the collection holds, so a record
        keeping one of their ids is dealt with first (one ``get`` per 1,000 ids): an expired one is gone
        to every reader and is deleted (its carried ADD event kept in the history collection); a live one
        makes the batch a `WriteConflict` (nothing written). So a batch never overlaps a stored record, and
        rolling it back deletes only what it wrote."""
        ids = [r.id for r in records]
        now, expired = self.now(), []
        for start in range(0, len(ids), _BATCH):
            got = self._guard(lambda part=ids[start : start + _BATCH]: self._collection.get(
                ids=part, include=["metadatas"]))
            for memory_id, meta in zip(got["ids"], got["metadatas"], strict=True):
                if not _expired(meta, now):
                    raise WriteConflict(f"chroma at {self._where}: a memory with id {memory_id!r} is stored; "
                                        "nothing of this batch was stored")
                expired.append(memory_id)
        if expired:
            self._release_carried(expired)
            self._guard(lambda: self._collection.delete(ids=expired))

    def _write_journal(self, written: _Written, writes: builtins.list[tuple[str, builtins.list[str]]]) -> None:
        """Journal a batch before its first write: one entry per write (id ``<batch>:<n>``, the write's ids
        as ``{"records": [...]}`` or ``{"events": [...]}``), leased for `journal_lease` seconds from now,
        in as few Chroma writes as `_REQUEST_BYTES` allows (one, unless the batch is huge)."""
        entries = [f"{written.batch}:{n}" for n in range(len(writes))]
        documents = [json.dumps({kind: ids}) for kind, ids in writes]
        lease = time.time() + self._settings.journal_lease
        written.leased_at = time.monotonic()
        for run in _runs([len(d) + 100 for d in documents], self._chunk):
            self._guard(lambda r=run: self._journal.add(
                ids=[entries[n] for n in r], embeddings=[[1.0] for _ in r], documents=[documents[n] for n in r],
                metadatas=[{"batch": written.batch, "lease": lease} for _ in r]))
            written.entries.extend(entries[n] for n in run)

    def _renew(self, written: _Written) -> None:
        """Before a write of a journaled batch, where leases tell writers apart: stop when the lease ran out
        (another writer may have rolled the batch back meanwhile); renew it once half of it has passed
        (on the first entry: a batch's lease is the latest of its entries')."""
        if not written.entries or self._locks_out_writers:
            return
        self._check_lease(written)
        if time.monotonic() - written.leased_at > self._settings.journal_lease / 2:
            now = time.monotonic()
            lease = time.time() + self._settings.journal_lease
            self._guard(lambda: self._journal.update(
                ids=written.entries[:1], metadatas=[{"batch": written.batch, "lease": lease}]))
            written.leased_at = now

    def _check_lease(self, written: _Written) -> None:
        if written.entries and not self._locks_out_writers and (
            time.monotonic() - written.leased_at > self._settings.journal_lease
        ):
            raise BackendUnavailable(
                f"chroma at {self._where}: the batch's journal lease ({self._settings.journal_lease:g} s) ran out "
                "between two of its writes, so another writer may have rolled it back; nothing of it was kept")

    def _commit(self, written: _Written) -> None:
        """End a batch: delete its journal entries (after checking, where leases tell writers apart, that
        the lease still holds and no other writer took the entries for a dead writer's). On failure the
        batch is deleted again and the error raised."""
        if not written.entries:
            return
        try:
            if not self._locks_out_writers:
                self._check_lease(written)
                kept = self._guard(lambda: self._journal.get(ids=written.entries, include=[]))["ids"]
                if len(kept) != len(written.entries):
                    raise BackendUnavailable(
                        f"chroma at {self._where}: another writer rolled this batch back (its journal lease of "
                        f"{self._settings.journal_lease:g} s ran out); nothing of it was kept")
            self._guard(lambda: self._journal.delete(ids=written.entries))
        except BaseException:
            self._undo(written)
            raise

    def _undo(self, written: _Written) -> None:
        """Delete the records and events of every write the batch made or tried, then its journal
        entries (the recovery rule). If that fails, the journal entries stay and the batch is rolled back
        later (`_recover`)."""
        try:
            for collection, chunks in ((self._collection, written.records), (self._history, written.events)):
                for ids in chunks:
                    self._guard(lambda c=collection, i=ids: c.delete(ids=i))
            if written.entries:
                self._guard(lambda: self._journal.delete(ids=written.entries))
        except Exception as exc:
            later = "; the next open rolls it back" if written.entries else ""
            raise BackendUnavailable(f"chroma at {self._where}: rollback failed{later}: {type(exc).__name__}: "
                                     f"{exc}") from exc
        written.records.clear()
        written.events.clear()
        written.entries.clear()

    def _recover_on_open(self) -> None:
        """Roll back the batches of dead writers that the journal holds (one read when it holds none)."""
        got = self._guard(lambda: self._journal.get(include=["metadatas"]))
        now = time.time()
        if got["ids"] and (self._locks_out_writers or any(self._lease(m) <= now for m in got["metadatas"])):
            with self._writing():
                self._recover()

    @staticmethod
    def _lease(meta: dict[str, Any] | None) -> float:
        try:
            return float((meta or {})["lease"])
        except (KeyError, TypeError, ValueError):
            return 0.0  # unreadable: nobody can be holding it

    def _recover(self) -> None:
        """Under the write locks: delete the records and events of every journaled batch whose writer is
        gone, then its journal entries. Where the ``flock`` locks out every writer of the path, every entry
        found is a dead writer's; elsewhere a batch is a dead writer's once the leases of all its entries
        ran out (a live writer renews them in time, see `_renew`)."""
        got = self._guard(lambda: self._journal.get(include=["metadatas", "documents"]))
        batches: dict[str, builtins.list[int]] = {}
        for n, meta in enumerate(got["metadatas"]):
            batches.setdefault(str((meta or {}).get("batch")), []).append(n)
        now = time.time()
        for rows in batches.values():
            if not self._locks_out_writers and max(self._lease(got["metadatas"][n]) for n in rows) > now:
                continue  # its writer may be alive
            for n in rows:
                try:
                    entry = json.loads(got["documents"][n])
                except (TypeError, ValueError):
                    entry = {}
                for kind, collection in (("records", self._collection), ("events", self._history)):
                    if isinstance(entry, dict) and entry.get(kind):
                        self._guard(lambda c=collection, i=entry[kind]: c.delete(ids=i))
            self._guard(lambda r=rows: self._journal.delete(ids=[got["ids"][n] for n in r]))

    def _upsert(self, records: Sequence[MemoryRecord]) -> None:
        if any(r.vector is None for r in records):
            raise InvalidInput("records need vectors", field="vector")
        metadatas = [_to_chroma(r) for r in records]
        self._guard(lambda: self._collection.upsert(ids=[r.id for r in records], embeddings=[r.vector for r in records],
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
                self._upsert([record])
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

    def keyword_search(self, text: str, scope: Scope, where: Filter | None, limit: int) -> builtins.list[SearchHit]:
        """The keyword mode, exactly as the reference ranks it: memdock's BM25 over the live records of the
        scope that match `where`, fetched in one request (Chroma's own full-text ``$contains`` matches
        substrings, not terms, and has no ranking). Nothing is kept beside the collection, so the ranking
        is consistent with every add, update and delete, whichever process made it."""
        if where is not None:
            return keyword_hits(self._candidates(scope, where), text, limit)
        got, rows = self._scope_rows(scope, vectors=False)
        index = BM25Index()
        index.add_many((got["ids"][n], got["documents"][n]) for n in rows)
        return self._hits(got, keyword_ranking(index, text, [got["ids"][n] for n in rows], limit))

    def hybrid_search(
        self, vector: Sequence[float] | None, text: str, scope: Scope, where: Filter | None, limit: int
    ) -> builtins.list[SearchHit]:
        """The hybrid mode, exactly: every live candidate of the scope matching `where` (one request, with
        vectors) scored by cosine and by BM25 and fused as `memdock.search_modes` defines."""
        if vector is None:
            raise InvalidInput("the Chroma backend needs a query vector", field="vector")
        if where is not None:
            return hybrid_hits(self._candidates(scope, where, vectors=True), vector, text, limit)
        import numpy as np  # here, not at module top: importing memdock stays cheap

        got, rows = self._scope_rows(scope, vectors=True)
        if not rows:
            return []
        index = BM25Index()
        index.add_many((got["ids"][n], got["documents"][n]) for n in rows)
        matrix = np.asarray(got["embeddings"], dtype=np.float64)[rows]
        return self._hits(got, hybrid_ranking(index, text, vector, [got["ids"][n] for n in rows], matrix, limit))

    def _scope_rows(self, scope: Scope, *, vectors: bool) -> tuple[dict[str, Any], builtins.list[int]]:
        """Chroma's raw answer for the scope's records (one ``get``) and the rows of the live ones: what
        `_candidates` finds without a filter, before any `MemoryRecord` is built (only hits need one)."""
        include = ["metadatas", "documents", *(["embeddings"] if vectors else [])]
        got = self._guard(lambda: self._collection.get(where=_and(self._scope_clauses(scope)), include=include))
        now = self.now()
        wanted = _scope_keys(scope)
        return got, [n for n, meta in enumerate(got["metadatas"]) if _live_in(meta, wanted, now)]

    @staticmethod
    def _hits(got: dict[str, Any], ranked: builtins.list[tuple[str, float]]) -> builtins.list[SearchHit]:
        """The ranked (id, score) pairs as hits, each record built from `got` (with its vector if fetched)."""
        rows = {memory_id: n for n, memory_id in enumerate(got["ids"])}
        embeddings = got.get("embeddings")
        return [SearchHit(record=_from_chroma(memory_id, got["documents"][rows[memory_id]],
                                              got["metadatas"][rows[memory_id]],
                                              embeddings[rows[memory_id]] if embeddings is not None else None),
                          score=score)
                for memory_id, score in ranked]

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
        """Delete every record, history event and journal entry of this collection, in batches."""
        with self._lock:
            for collection in (self._collection, self._history, self._journal):
                while True:
                    ids = self._guard(lambda c=collection: c.get(limit=_BATCH, include=[])["ids"])
                    if not ids:
                        break
                    self._guard(lambda c=collection, i=ids: c.delete(ids=i))

    def record_history(self, events: Sequence[HistoryEvent]) -> None:
        """Append events to the companion collection (all or nothing, like `add_with_history`)."""
        if events:
            with self._writing():
                self._commit(self._write_new([], events))

    def _add_events(self, events: Sequence[HistoryEvent], documents: Sequence[str]) -> None:
        self._guard(lambda: self._history.add(
            ids=[e.id for e in events], embeddings=[[1.0] for _ in events], documents=list(documents),
            metadatas=[{"memory_id": e.memory_id, "at": e.created_at.isoformat()} for e in events],
        ))

    def history(self, memory_id: str) -> builtins.list[HistoryEvent]:
        """Events of one memory, oldest first (see `history_many`)."""
        return self.history_many([memory_id])[memory_id]


@hookimpl
def register_backends(register: Callable[[type[Backend]], None]) -> None:
    """Register ``chroma://`` and ``chroma+http://``."""
    register(ChromaBackend)
