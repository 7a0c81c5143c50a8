"""`SQLiteBackend`: memdock records in one SQLite file, searched exactly with numpy.

Tables (per collection, names from a validated identifier, values always bound as parameters):
``<c>_records`` (id, text, scope ids, exact scope key, hash, times, expiry, metadata JSON, float32 vector),
``<c>_history`` and ``memdock_meta`` (the embedder identity of each collection).
Filters are evaluated with memdock's reference evaluator on the scope's rows, which keeps the example
short and exactly right; a production backend would compile them to SQL.
"""

from __future__ import annotations

import builtins
import json
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Self

import numpy as np

from memdock import (
    Backend,
    BackendSettings,
    BackendURL,
    Capability,
    Embedder,
    HistoryEvent,
    MemoryRecord,
    Page,
    Scope,
    SearchHit,
)
from memdock.errors import BackendUnavailable, EmbedderMismatch, InvalidInput, WriteConflict
from memdock.filters import Filter, evaluate
from memdock.models import SCOPE_FIELDS
from memdock.pagination import page_of
from memdock.scoring import rank_by_cosine

CAPABILITIES = frozenset({
    Capability.FILTER_EQUALITY, Capability.FILTER_RANGE, Capability.CONTAINS, Capability.HISTORY,
    Capability.TTL, Capability.PERSISTENCE, Capability.NESTED_METADATA, Capability.CONCURRENT_WRITES,
    Capability.UPDATE, Capability.HISTORY_AFTER_DELETE,
})
_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")


class SQLiteBackend(Backend):
    """One connection per backend, guarded by a lock; every write is one transaction."""

    name = "sqlite"
    description = "One SQLite file, exact cosine search (example plugin)."
    schemes = ("sqlite",)
    capabilities = CAPABILITIES
    namespace_param = "collection"
    local_path_param = "path"

    class Settings(BackendSettings):
        """``sqlite:///absolute/path.db?collection=NAME`` (NAME: letters, digits, underscore)."""

        path: str
        collection: str = "memdock"

        @classmethod
        def from_url(cls, url: BackendURL) -> Self:
            """Read the path from the URL and validate the collection name."""
            if url.host or not url.path.startswith("/"):
                raise InvalidInput("sqlite:// needs an absolute path, e.g. sqlite:///var/lib/mem.db", field="path")
            settings = cls.validated({**url.params, "path": url.path})
            if not _IDENTIFIER.match(settings.collection):
                raise InvalidInput("letters, digits and underscores, starting with a letter", field="collection")
            return settings

    def __init__(self, settings: SQLiteBackend.Settings, embedder: Embedder | None) -> None:
        if embedder is None:
            raise InvalidInput("the sqlite backend needs an embedder", field="embedder")
        self._records = f"{settings.collection}_records"
        self._history = f"{settings.collection}_history"
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(settings.path, check_same_thread=False, timeout=30, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"sqlite at {settings.path}: {exc}") from exc
        self._setup(settings.collection, embedder.identity)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise BackendUnavailable(f"sqlite: {exc}") from exc

    def _query(self, sql: str, params: Sequence[object] = ()) -> builtins.list[tuple[object, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise BackendUnavailable(f"sqlite: {exc}") from exc

    def _setup(self, collection: str, identity: str) -> None:
        scope_columns = ", ".join(f"{name} TEXT" for name in SCOPE_FIELDS)
        with self._transaction() as db:
            db.execute("CREATE TABLE IF NOT EXISTS memdock_meta (collection TEXT PRIMARY KEY, embedder TEXT)")
            db.execute(f"CREATE TABLE IF NOT EXISTS {self._records} (id TEXT PRIMARY KEY, text TEXT, {scope_columns},"
                       " scope_key TEXT, hash TEXT, created TEXT, updated TEXT, expires TEXT, metadata TEXT,"
                       " vector BLOB)")
            db.execute(f"CREATE INDEX IF NOT EXISTS {self._records}_dedup ON {self._records} (scope_key, hash)")
            db.execute(f"CREATE TABLE IF NOT EXISTS {self._history} (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
                       " memory_id TEXT, event TEXT)")
            db.execute("INSERT OR IGNORE INTO memdock_meta VALUES (?, ?)", (collection, identity))
            (known,) = db.execute("SELECT embedder FROM memdock_meta WHERE collection = ?", (collection,)).fetchone()
        if known != identity:
            raise EmbedderMismatch(f"collection {collection!r} was written with {known!r}, not {identity!r}",
                                   field="embedder")

    # -- rows <-> records -----------------------------------------------------------------------------

    _COLUMNS = "id, text, user_id, agent_id, run_id, app_id, hash, created, updated, expires, metadata, vector"

    @staticmethod
    def _row(record: MemoryRecord) -> tuple[object, ...]:
        vector = np.asarray(record.vector, dtype=np.float32).tobytes() if record.vector is not None else None
        return (record.id, record.text, *(getattr(record.scope, f) for f in SCOPE_FIELDS),
                json.dumps([getattr(record.scope, f) for f in SCOPE_FIELDS]), record.hash,
                record.created_at.isoformat(), record.updated_at.isoformat(),
                record.expires_at.isoformat() if record.expires_at else None,
                json.dumps(record.metadata, ensure_ascii=False), vector)

    @staticmethod
    def _record(row: tuple[object, ...]) -> MemoryRecord:
        (memory_id, text, user_id, agent_id, run_id, app_id, text_hash, created, updated, expires,
         metadata, vector) = row
        return MemoryRecord(
            id=str(memory_id), text=str(text),
            scope=Scope(user_id=user_id, agent_id=agent_id, run_id=run_id, app_id=app_id),  # type: ignore[arg-type]
            metadata=json.loads(str(metadata)), hash=str(text_hash),
            created_at=datetime.fromisoformat(str(created)), updated_at=datetime.fromisoformat(str(updated)),
            expires_at=datetime.fromisoformat(str(expires)) if expires else None,
            vector=np.frombuffer(vector, dtype=np.float32).tolist() if isinstance(vector, bytes) else None,
        )

    def _live(self, rows: builtins.list[tuple[object, ...]]) -> builtins.list[MemoryRecord]:
        now = self.now()
        return [r for r in map(self._record, rows) if not r.is_expired(now)]

    def _in_scope(self, scope: Scope, where: Filter | None) -> builtins.list[MemoryRecord]:
        ids = scope.ids()
        clause = " AND ".join(f"{name} = ?" for name in ids)  # names come from SCOPE_FIELDS, values are bound
        rows = self._query(f"SELECT {self._COLUMNS} FROM {self._records} WHERE {clause}", list(ids.values()))
        return [r for r in self._live(rows) if where is None or evaluate(where, r)]

    # -- the Backend contract -------------------------------------------------------------------------

    def add(self, records: Sequence[MemoryRecord]) -> None:
        """Insert all records in one transaction. The id of an expired record is free again (that row is
        deleted first); the id of a live one makes the batch a `WriteConflict`, with nothing stored."""
        now = self.now()
        with self._transaction() as db:
            for record in records:
                row = db.execute(f"SELECT expires FROM {self._records} WHERE id = ?", [record.id]).fetchone()
                if row is None:
                    continue
                if row[0] is None or datetime.fromisoformat(str(row[0])) > now:
                    raise WriteConflict(f"a memory with id {record.id!r} is stored; nothing of this batch was stored")
                db.execute(f"DELETE FROM {self._records} WHERE id = ?", [record.id])
            db.executemany(f"INSERT INTO {self._records} ({self._COLUMNS.replace('hash', 'scope_key, hash')})"
                           f" VALUES ({', '.join('?' * 13)})", [self._row(r) for r in records])

    def get(self, memory_id: str) -> MemoryRecord | None:
        """The live record with this id, or None."""
        found = self._live(self._query(f"SELECT {self._COLUMNS} FROM {self._records} WHERE id = ?", [memory_id]))
        return found[0] if found else None

    def find_by_hash(self, scope: Scope, text_hash: str) -> MemoryRecord | None:
        """A live record with exactly this scope and hash."""
        key = json.dumps([getattr(scope, f) for f in SCOPE_FIELDS])
        rows = self._query(f"SELECT {self._COLUMNS} FROM {self._records} WHERE scope_key = ? AND hash = ?",
                           [key, text_hash])
        found = self._live(rows)
        return found[0] if found else None

    def update(self, record: MemoryRecord) -> None:
        """Replace the row."""
        with self._transaction() as db:
            db.execute(f"INSERT OR REPLACE INTO {self._records} ({self._COLUMNS.replace('hash', 'scope_key, hash')})"
                       f" VALUES ({', '.join('?' * 13)})", self._row(record))

    def delete(self, memory_ids: Sequence[str]) -> None:
        """Delete rows by id."""
        with self._transaction() as db:
            db.executemany(f"DELETE FROM {self._records} WHERE id = ?", [(i,) for i in memory_ids])

    def search(self, vector: Sequence[float] | None, text: str, scope: Scope, where: Filter | None,
               limit: int) -> builtins.list[SearchHit]:
        """Exact cosine search over the scope's matching rows."""
        if vector is None:
            raise InvalidInput("the sqlite backend needs a query vector", field="vector")
        return rank_by_cosine(vector, self._in_scope(scope, where), limit)

    def list(self, scope: Scope, where: Filter | None, limit: int, cursor: str | None) -> Page:
        """A keyset page ordered by (created_at, id)."""
        page = page_of(self._in_scope(scope, where), limit, cursor)
        return Page(items=[r.model_copy(update={"vector": None}) for r in page.items], next_cursor=page.next_cursor)

    def count(self, scope: Scope, where: Filter | None) -> int:
        """Number of matching live rows in scope."""
        return len(self._in_scope(scope, where))

    def record_history(self, events: Sequence[HistoryEvent]) -> None:
        """Append events in one transaction."""
        with self._transaction() as db:
            db.executemany(f"INSERT INTO {self._history} (memory_id, event) VALUES (?, ?)",
                           [(e.memory_id, e.model_dump_json()) for e in events])

    def history(self, memory_id: str) -> builtins.list[HistoryEvent]:
        """Events of one memory in insertion order."""
        rows = self._query(f"SELECT event FROM {self._history} WHERE memory_id = ? ORDER BY seq", [memory_id])
        return [HistoryEvent.model_validate_json(str(row[0])) for row in rows]

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()
