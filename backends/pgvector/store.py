"""The pgvector store behind `PgvectorBackend` (imported when a backend opens, so psycopg loads then).

- Storage: one table per namespace (`memdock.backends.pgvector.schema`), created by explicit, versioned,
  idempotent migrations when the backend opens.
- Connections: one psycopg `ConnectionPool` per server and pool size, shared by every backend of the
  process and checked on checkout, so a pool outlives a server restart: while the server is down a call
  raises `BackendUnavailable` after ``connect_timeout`` seconds, and the first call after it is back
  succeeds.
- Filters: compiled to parameterised SQL with the reference evaluator's semantics
  (`memdock.backends.pgvector.sql`); ``icontains`` (Python's casefold) is evaluated in Python over the scope.
- Search: ``ORDER BY embedding <=> q`` with ``hnsw.iterative_scan`` and an ``hnsw.ef_search`` raised to
  the limit, so scoped and filtered searches return as many hits as exist (pgvector otherwise filters
  after the index scan and returns too few); the hits are re-ranked exactly.
- Writes: a batch is one transaction (COPY), all or nothing. Every driver error becomes
  `BackendUnavailable` naming the server without its password.
"""

from __future__ import annotations

import builtins
import json
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, overload

import numpy as np
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from memdock.backends.pgvector.schema import Namespace, setup
from memdock.backends.pgvector.sql import Bound, compile_filter, needs_python, ordering_fields, params_of
from memdock.embedding import Embedder
from memdock.errors import BackendUnavailable, InvalidFilter, InvalidInput, MemdockError
from memdock.filters import Filter, evaluate
from memdock.models import SCOPE_FIELDS, EventKind, HistoryEvent, MemoryRecord, Page, Scope, SearchHit
from memdock.pagination import decode_cursor, encode_cursor, page_of
from memdock.scoring import cosine_distance_to_score, rank_by_cosine

if TYPE_CHECKING:
    from memdock.backends.pgvector.backend import PgvectorBackend

COLUMNS = ("id", "text", "user_id", "agent_id", "run_id", "app_id", "metadata", "hash", "created_at", "updated_at",
           "expires_at")
HISTORY_COLUMNS = ("id", "memory_id", "event", "old_text", "new_text", "old_metadata", "new_metadata", "user_id",
                   "agent_id", "run_id", "app_id", "created_at")


class _SharedPool:
    """A pool and how many open backends use it."""

    def __init__(self, pool: ConnectionPool[Any]) -> None:
        self.pool = pool
        self.users = 0


_pools: dict[tuple[str, int, int], _SharedPool] = {}
_pools_lock = threading.Lock()


def _configure(conn: psycopg.Connection[Any]) -> None:
    from pgvector.psycopg import register_vector

    register_vector(conn)
    conn.commit()


def _acquire_pool(settings: PgvectorBackend.Settings) -> tuple[tuple[str, int, int], ConnectionPool[Any]]:
    key = (settings.conninfo(), settings.pool_min_size, settings.pool_max_size)
    with _pools_lock:
        shared = _pools.get(key)
        if shared is None:
            pool: ConnectionPool[Any] = ConnectionPool(
                key[0], min_size=settings.pool_min_size, max_size=settings.pool_max_size,
                timeout=float(settings.connect_timeout), configure=_configure, check=ConnectionPool.check_connection,
                reconnect_timeout=float(settings.connect_timeout) * 4, name=f"memdock:{settings.location()}",
                open=False,
            )
            pool.open(wait=False)
            shared = _pools[key] = _SharedPool(pool)
        shared.users += 1
        return key, shared.pool


def _release_pool(key: tuple[str, int, int]) -> None:
    with _pools_lock:
        shared = _pools.get(key)
        if shared is None:
            return
        shared.users -= 1
        if shared.users <= 0:
            del _pools[key]
            shared.pool.close(timeout=5)


class PgvectorStore:
    """memdock records in one PostgreSQL table (see the module docstring). `PgvectorBackend` opens it and
    hands every call on; `now` is the backend's clock (expiry)."""

    def __init__(self, settings: PgvectorBackend.Settings, embedder: Embedder, now: Callable[[], datetime]) -> None:
        self.now = now
        self._settings = settings
        self._where = settings.location()
        self._ns = Namespace(settings.table, embedder.dimension, settings.hnsw_m, settings.hnsw_ef_construction)
        self._table = sql.Identifier(settings.table)
        self._history_table = sql.Identifier(settings.table + "_history")
        try:
            with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
                setup(conn, self._ns, embedder.identity)
        except MemdockError:
            raise
        except (psycopg.Error, OSError) as exc:
            raise BackendUnavailable(f"pgvector at {self._where}: {type(exc).__name__}: {_first_line(exc)}") from None
        self._pool_key, self._pool = _acquire_pool(settings)
        self._closed = False

    # -- plumbing ------------------------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection inside one transaction (committed on success, rolled back on error)."""
        try:
            with self._pool.connection(timeout=float(self._settings.connect_timeout)) as conn:
                yield conn
        except MemdockError:
            raise
        except psycopg.errors.UniqueViolation:
            raise BackendUnavailable(
                f"pgvector at {self._where}: another writer stored the same text in this scope at the same time; retry"
            ) from None
        except PoolTimeout:
            raise BackendUnavailable(
                f"pgvector at {self._where}: no connection within {self._settings.connect_timeout}s (server down?)"
            ) from None
        except (psycopg.Error, OSError) as exc:
            raise BackendUnavailable(f"pgvector at {self._where}: {type(exc).__name__}: {_first_line(exc)}") from None

    def _scope_clause(self, scope: Scope) -> list[sql.Composable]:
        clauses: list[sql.Composable] = [
            Bound(sql.SQL("{} = %s").format(sql.Identifier(name)), [value]) for name, value in scope.ids().items()
        ]
        clauses.append(Bound(sql.SQL("(expires_at IS NULL OR expires_at > %s)"), [self.now()]))
        return clauses

    def _where_clause(
        self, conn: psycopg.Connection[Any], scope: Scope, where: Filter | None
    ) -> list[sql.Composable] | None:
        """SQL conditions for scope, liveness and filter; None when the filter must run in Python.
        Raises `InvalidFilter` when the reference evaluator would raise on a record in scope."""
        clauses = self._scope_clause(scope)
        if where is None:
            return clauses
        if needs_python(where):
            return None
        compiled = compile_filter(where)
        if compiled.raises.constant is not False:
            probe = sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE {})").format(
                self._table, sql.SQL(" AND ").join([*clauses, compiled.raises.sql]))
            row = conn.execute(probe, params_of(probe)).fetchone()
            if row and row[0]:
                fields = ordering_fields(where)
                raise InvalidFilter("an ordering operator compares numbers but a stored value is not a number",
                                    field=fields[0] if fields else "filter")
        return [*clauses, compiled.matches.sql]

    def _select(self, conn: psycopg.Connection[Any], clauses: list[sql.Composable], tail: sql.Composable,
                *, vectors: bool = False) -> list[MemoryRecord]:
        columns = [*COLUMNS, *(["embedding"] if vectors else [])]
        query = sql.SQL("SELECT {} FROM {} WHERE {} {}").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)), self._table, sql.SQL(" AND ").join(clauses), tail)
        return [_record(row) for row in conn.execute(query, params_of(query)).fetchall()]

    def _python_filtered(self, conn: psycopg.Connection[Any], scope: Scope, where: Filter,
                         *, vectors: bool = False) -> list[MemoryRecord]:
        records = self._select(conn, self._scope_clause(scope), sql.SQL(""), vectors=vectors)
        return [r for r in records if evaluate(where, r)]

    # -- writes --------------------------------------------------------------------------------------------

    def add(self, records: Sequence[MemoryRecord]) -> None:
        """One transaction: expired rows holding the same (scope, hash) are removed, then COPY."""
        if not records:
            return
        if any(r.vector is None for r in records):
            raise InvalidInput("records need vectors", field="vector")
        with self._transaction() as conn:
            keys = [[r.scope.user_id or "", r.scope.agent_id or "", r.scope.run_id or "", r.scope.app_id or "", r.hash]
                    for r in records]
            conn.execute(sql.SQL(
                "DELETE FROM {} WHERE expires_at <= %s AND (COALESCE(user_id, ''), COALESCE(agent_id, ''),"
                " COALESCE(run_id, ''), COALESCE(app_id, ''), hash) IN"
                " (SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[]))"
            ).format(self._table), [self.now(), *(list(column) for column in zip(*keys, strict=True))])
            copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(
                self._table, sql.SQL(", ").join(map(sql.Identifier, [*COLUMNS, "embedding"])))
            with conn.cursor() as cursor, cursor.copy(copy_sql) as copy:
                for record in records:
                    copy.write_row(_row(record))

    def update(self, record: MemoryRecord) -> None:
        """Replace text, metadata, hash, times and vector; another memory holding the new text in the same
        scope makes it `InvalidInput` (field ``text``)."""
        with self._transaction() as conn:
            try:
                conn.execute(sql.SQL(
                    "UPDATE {} SET text = %s, metadata = %s, hash = %s, updated_at = %s, expires_at = %s,"
                    " embedding = %s WHERE id = %s"
                ).format(self._table), [record.text, _jsonb(record.metadata), record.hash, record.updated_at,
                                        record.expires_at, _vector(record.vector), record.id])
            except psycopg.errors.UniqueViolation:
                raise InvalidInput("another memory in this scope already holds this text", field="text") from None

    def delete(self, memory_ids: Sequence[str]) -> None:
        """Delete by id; unknown ids are ignored."""
        if memory_ids:
            with self._transaction() as conn:
                conn.execute(sql.SQL("DELETE FROM {} WHERE id = ANY(%s)").format(self._table), [list(memory_ids)])

    def reset(self) -> None:
        """Empty the namespace's memories and history."""
        with self._transaction() as conn:
            conn.execute(sql.SQL("TRUNCATE {}, {}").format(self._table, self._history_table))

    # -- reads ---------------------------------------------------------------------------------------------

    def get(self, memory_id: str) -> MemoryRecord | None:
        """The record (with its vector), or None when missing or expired."""
        with self._transaction() as conn:
            found = self._select(conn, [Bound(sql.SQL("id = %s"), [memory_id])], sql.SQL(""), vectors=True)
        if not found or found[0].is_expired(self.now()):
            return None
        return found[0]

    def find_by_hash(self, scope: Scope, text_hash: str) -> MemoryRecord | None:
        """A live record with exactly this scope and hash (served by the unique index)."""
        clauses: list[sql.Composable] = [
            Bound(sql.SQL("COALESCE({}, '') = %s").format(sql.Identifier(name)), [getattr(scope, name) or ""])
            for name in SCOPE_FIELDS
        ]
        clauses += [Bound(sql.SQL("hash = %s"), [text_hash]),
                    Bound(sql.SQL("(expires_at IS NULL OR expires_at > %s)"), [self.now()])]
        with self._transaction() as conn:
            found = self._select(conn, clauses, sql.SQL("LIMIT 1"))
        return found[0] if found else None

    def search(
        self, vector: Sequence[float] | None, text: str, scope: Scope, where: Filter | None, limit: int
    ) -> list[SearchHit]:
        """The nearest live records in scope matching `where`, re-ranked exactly (ties by id)."""
        if vector is None:
            raise InvalidInput("the pgvector backend needs a query vector", field="vector")
        with self._transaction() as conn:
            clauses = self._where_clause(conn, scope, where)
            if clauses is None:
                assert where is not None
                return rank_by_cosine(vector, self._python_filtered(conn, scope, where, vectors=True), limit)
            settings = self._settings
            conn.execute("SELECT set_config('hnsw.ef_search', %s, true), set_config('hnsw.iterative_scan', %s, true),"
                         " set_config('hnsw.max_scan_tuples', %s, true)",
                         [str(max(settings.ef_search, min(limit * 2, 1000))), settings.iterative_scan,
                          str(settings.max_scan_tuples)])
            query = sql.SQL(
                "SELECT {}, embedding <=> %s AS distance FROM {} WHERE {} ORDER BY embedding <=> %s LIMIT %s"
            ).format(sql.SQL(", ").join(map(sql.Identifier, COLUMNS)), self._table,
                                 sql.SQL(" AND ").join(clauses))
            query_vector = _vector(vector)
            where_params = params_of(sql.Composed(clauses))
            rows = conn.execute(query, [query_vector, *where_params, query_vector, limit]).fetchall()
        hits = [SearchHit(record=_record(row[:-1]), score=_score(row[-1])) for row in rows]
        return sorted(hits, key=lambda h: (-h.score, h.record.id))

    def list(self, scope: Scope, where: Filter | None, limit: int, cursor: str | None) -> Page:
        """A keyset page ordered by (created_at, id)."""
        with self._transaction() as conn:
            clauses = self._where_clause(conn, scope, where)
            if clauses is None:
                assert where is not None
                return page_of(self._python_filtered(conn, scope, where), limit, cursor)
            if cursor is not None:
                created, memory_id = decode_cursor(cursor)
                clauses.append(Bound(sql.SQL("(created_at, id) > (%s, %s)"),
                                     [datetime.fromisoformat(created), memory_id]))
            items = self._select(conn, clauses, Bound(sql.SQL("ORDER BY created_at, id LIMIT %s"), [limit + 1]))
        more = len(items) > limit
        items = items[:limit]
        return Page(items=items, next_cursor=encode_cursor(items[-1]) if more and items else None)

    def count(self, scope: Scope, where: Filter | None) -> int:
        """How many live records in scope match `where`."""
        with self._transaction() as conn:
            clauses = self._where_clause(conn, scope, where)
            if clauses is None:
                assert where is not None
                return len(self._python_filtered(conn, scope, where))
            query = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(self._table, sql.SQL(" AND ").join(clauses))
            row = conn.execute(query, params_of(query)).fetchone()
        return int(row[0]) if row else 0

    # -- history -------------------------------------------------------------------------------------------

    def record_history(self, events: Sequence[HistoryEvent]) -> None:
        """Append events in one transaction."""
        if not events:
            return
        with self._transaction() as conn:
            copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(
                self._history_table, sql.SQL(", ").join(map(sql.Identifier, HISTORY_COLUMNS)))
            with conn.cursor() as cursor, cursor.copy(copy_sql) as copy:
                for e in events:
                    copy.write_row([e.id, e.memory_id, e.event.value, e.old_text, e.new_text,
                                    _jsonb(e.old_metadata), _jsonb(e.new_metadata), e.scope.user_id,
                                    e.scope.agent_id, e.scope.run_id, e.scope.app_id, e.created_at])

    def history(self, memory_id: str) -> builtins.list[HistoryEvent]:
        """Events of one memory, oldest first (recording order breaks ties)."""
        return self.history_many([memory_id]).get(memory_id, [])

    def get_many(self, memory_ids: Sequence[str]) -> builtins.list[MemoryRecord]:
        """The live records with these ids (with their vectors), in one query."""
        if not memory_ids:
            return []
        with self._transaction() as conn:
            found = self._select(conn, [Bound(sql.SQL("id = ANY(%s)"), [list(memory_ids)])], sql.SQL(""),
                                 vectors=True)
        now = self.now()
        return [r for r in found if not r.is_expired(now)]

    def history_many(self, memory_ids: Sequence[str]) -> dict[str, builtins.list[HistoryEvent]]:
        """Events of each memory, oldest first (recording order breaks ties), in one query."""
        out: dict[str, builtins.list[HistoryEvent]] = {memory_id: [] for memory_id in memory_ids}
        if not memory_ids:
            return out
        with self._transaction() as conn:
            rows = conn.execute(sql.SQL("SELECT {} FROM {} WHERE memory_id = ANY(%s) ORDER BY created_at, seq").format(
                sql.SQL(", ").join(map(sql.Identifier, HISTORY_COLUMNS)), self._history_table),
                [list(memory_ids)]).fetchall()
        for event in self._events(rows):
            out[event.memory_id].append(event)
        return out

    @staticmethod
    def _events(rows: builtins.list[Any]) -> builtins.list[HistoryEvent]:
        return [
            HistoryEvent(id=r[0], memory_id=r[1], event=EventKind(r[2]), old_text=r[3], new_text=r[4],
                         old_metadata=r[5], new_metadata=r[6],
                         scope=Scope(user_id=r[7], agent_id=r[8], run_id=r[9], app_id=r[10]), created_at=r[11])
            for r in rows
        ]

    def close(self) -> None:
        """Stop using the shared pool (it closes when its last user does)."""
        if not self._closed:
            self._closed = True
            _release_pool(self._pool_key)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0]


def _jsonb(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value, dumps=_json_text)


def _json_text(value: Any) -> str:
    """JSON whose floats keep a decimal point: jsonb stores numbers as numeric, so ``1e+20`` would read
    back as the integer 100000000000000000000; ``100000000000000000000.0`` reads back as the float."""
    if isinstance(value, float):
        text = repr(value)
        if "e" in text or "E" in text:
            text = format(Decimal(text), "f")
        return text if "." in text else f"{text}.0"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{_json_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_json_text(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def _vector(vector: Sequence[float] | None) -> Any:
    return None if vector is None else np.asarray(vector, dtype=np.float32)


def _row(record: MemoryRecord) -> list[Any]:
    scope = record.scope
    return [record.id, record.text, scope.user_id, scope.agent_id, scope.run_id, scope.app_id, _jsonb(record.metadata),
            record.hash, record.created_at, record.updated_at, record.expires_at, _vector(record.vector)]


def _record(row: Sequence[Any]) -> MemoryRecord:
    vector = row[11] if len(row) > 11 else None
    if vector is not None:
        vector = [float(x) for x in (vector.to_list() if hasattr(vector, "to_list") else vector)]
    return MemoryRecord(
        id=row[0], text=row[1], scope=Scope(user_id=row[2], agent_id=row[3], run_id=row[4], app_id=row[5]),
        metadata=row[6], hash=row[7], created_at=_utc(row[8]), updated_at=_utc(row[9]), expires_at=_utc(row[10]),
        vector=vector,
    )


@overload
def _utc(value: datetime) -> datetime: ...
@overload
def _utc(value: None) -> None: ...
def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def _score(distance: Any) -> float:
    value = float(distance)
    return 0.5 if math.isnan(value) else cosine_distance_to_score(value)
