"""The pgvector store behind `PgvectorBackend` (imported when a backend opens, so psycopg loads then).

- Storage: one table per namespace (`memdock.backends.pgvector.schema`), created by explicit, versioned,
  idempotent migrations when the backend opens.
- Connections: one psycopg `ConnectionPool` per server, pool size and search settings, shared by every
  backend of the process. Connections are in autocommit (a read is one statement, one round trip) and
  carry the search settings from their start; a connection is checked with a round trip only when it
  was idle for `IDLE_CHECK_SECONDS` or the server ended it meanwhile (its socket turned readable), so a
  pool outlives a server restart: while the server is down a call raises `BackendUnavailable` after
  ``connect_timeout`` seconds, and the first call after it is back succeeds.
- Filters: compiled to parameterised SQL with the reference evaluator's semantics
  (`memdock.backends.pgvector.sql`); ``icontains`` (Python's casefold) is evaluated in Python over the scope.
- Search: one statement that counts the scope's rows on its ids' index (at most ``exact_scan_rows``) and
  then runs one of two branches: a scope below that size has every row ranked exactly (a scan of the
  scope, no index: an approximate index misses neighbours in a scope that is a small part of a large
  table); a larger one ``ORDER BY embedding <=> q`` on the HNSW index with ``hnsw.iterative_scan`` and an
  ``hnsw.ef_search`` raised to the limit, so scoped and filtered searches return as many hits as exist
  (pgvector otherwise filters after the index scan and returns too few). The hits are re-ranked
  exactly. Expiry is checked on the hits (asked again with the condition only when one expired).
- Keyword and hybrid search: one statement each, BM25 over the scope's candidates and the fusion computed
  in SQL (`memdock.backends.pgvector.keyword`); the statement text is composed once per scope/filter shape.
- Statements are composed once per store and shape and kept as text (composing costs more than a
  search's query); vectors travel in binary.
- Writes: a batch and its history events are one statement, all or nothing (each row with its keyword
  terms); the unique (scope, hash) index makes dedup atomic across processes (`WriteConflict` when
  another writer got there first). Every other driver error becomes `BackendUnavailable` naming the
  server without its password.
"""

from __future__ import annotations

import builtins
import json
import math
import select
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from memdock.backends.pgvector.keyword import (
    MEMDOCK,
    TERM_COLUMNS,
    RankingParts,
    document_terms,
    hybrid_hits,
    hybrid_statement,
    keyword_hits,
    keyword_score,
    keyword_statement,
    ranking_parts,
    stored_terms_sql,
    vector_score,
)
from memdock.backends.pgvector.schema import Namespace, setup
from memdock.backends.pgvector.sql import Bound, compile_filter, needs_python, ordering_fields, params_of
from memdock.embedding import Embedder
from memdock.errors import BackendUnavailable, InvalidFilter, InvalidInput, MemdockError, WriteConflict
from memdock.filters import Filter, evaluate
from memdock.models import SCOPE_FIELDS, EventKind, HistoryEvent, MemoryRecord, Page, Scope, SearchHit
from memdock.pagination import decode_cursor, encode_cursor, page_of
from memdock.scoring import cosine_distance_to_score, rank_by_cosine

if TYPE_CHECKING:
    from memdock.backends.pgvector.backend import PgvectorBackend

COLUMNS = ("id", "text", "user_id", "agent_id", "run_id", "app_id", "metadata", "hash", "created_at", "updated_at",
           "expires_at")
_EXPIRES_AT = COLUMNS.index("expires_at")
HISTORY_COLUMNS = ("id", "memory_id", "event", "old_text", "new_text", "old_metadata", "new_metadata", "user_id",
                   "agent_id", "run_id", "app_id", "created_at")

_COLUMN_TYPES = ("text", "text", "text", "text", "text", "text", "jsonb", "text", "timestamptz", "timestamptz",
                 "timestamptz", "vector")
"""SQL types of `COLUMNS` + ``embedding``, in order."""
_HISTORY_TYPES = ("text", "text", "text", "text", "text", "jsonb", "jsonb", "text", "text", "text", "text",
                  "timestamptz")
"""SQL types of `HISTORY_COLUMNS`, in order."""


class _SharedPool:
    """A pool and how many open backends use it."""

    def __init__(self, pool: ConnectionPool[Any]) -> None:
        self.pool = pool
        self.users = 0


_pools: dict[tuple[str, int, int], _SharedPool] = {}
_pools_lock = threading.Lock()

STATEMENT_CACHE_SIZE = 256
"""Keyword and hybrid statement texts a store keeps (by mode, query kind and scope/filter SQL)."""

IDLE_CHECK_SECONDS = 5.0
"""A connection idle for longer than this is checked with a round trip when it leaves the pool."""
_returned_at: weakref.WeakKeyDictionary[psycopg.Connection[Any], float] = weakref.WeakKeyDictionary()
_ef_search: weakref.WeakKeyDictionary[psycopg.Connection[Any], int] = weakref.WeakKeyDictionary()


def _configure(conn: psycopg.Connection[Any]) -> None:
    """A new pooled connection: autocommit (a read is one statement, no BEGIN/COMMIT; writes that need
    more than one statement open a transaction) and the vector type registered. The search settings
    came with the connection (``options`` of `PgvectorBackend.Settings.conninfo`)."""
    from pgvector.psycopg import register_vector

    conn.autocommit = True
    register_vector(conn)
    _returned_at[conn] = time.monotonic()


def _check(conn: psycopg.Connection[Any]) -> None:
    """The pool's ``check`` callback, without a round trip for a connection in recent use: a connection
    is checked with an empty query only when it has been idle for `IDLE_CHECK_SECONDS` or when the server
    sent something while it was idle (an idle session receives nothing but its termination: a restart
    or ``kill`` shows up as a readable socket)."""
    if conn.closed or conn.broken:
        raise psycopg.OperationalError("the connection is closed")
    idle = time.monotonic() - _returned_at.get(conn, 0.0)
    if idle > IDLE_CHECK_SECONDS or _socket_readable(conn):
        ConnectionPool.check_connection(conn)


def _socket_readable(conn: psycopg.Connection[Any]) -> bool:
    """Whether the idle connection's socket has something to read, without waiting. `select.poll`, not
    `select.select`: the latter refuses descriptors above 1023, which a busy process reaches (then every
    checkout would pay the check's round trip)."""
    try:
        poller = select.poll()
        poller.register(conn.pgconn.socket, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError, psycopg.Error):
        return True  # no usable socket: let the real check decide


def _acquire_pool(settings: PgvectorBackend.Settings) -> tuple[tuple[str, int, int], ConnectionPool[Any]]:
    key = (settings.conninfo(), settings.pool_min_size, settings.pool_max_size)
    with _pools_lock:
        shared = _pools.get(key)
        if shared is None:
            pool: ConnectionPool[Any] = ConnectionPool(
                key[0], min_size=settings.pool_min_size, max_size=settings.pool_max_size,
                timeout=float(settings.connect_timeout), configure=_configure, check=_check,
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
        self._ns = Namespace(settings.table, embedder.dimension, settings.hnsw_m, settings.hnsw_ef_construction,
                             settings.text_search)
        self._text_search = settings.text_search
        self._table = sql.Identifier(settings.table)
        self._history_table = sql.Identifier(settings.table + "_history")
        try:
            with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
                setup(conn, self._ns, embedder.identity)
        except MemdockError:
            raise
        except (psycopg.Error, OSError) as exc:
            raise BackendUnavailable(f"pgvector at {self._where}: {type(exc).__name__}: {_first_line(exc)}") from None
        self._statements: dict[tuple[Any, ...], bytes] = {}  # see `_statement`
        self._pool_key, self._pool = _acquire_pool(settings)
        self._closed = False

    # -- plumbing ------------------------------------------------------------------------------------------

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection in autocommit: each statement is its own transaction (a read is one round
        trip). Driver errors become memdock's: a uniqueness violation `WriteConflict`, the rest
        `BackendUnavailable` naming the server without its password."""
        try:
            with self._pool.connection(timeout=float(self._settings.connect_timeout)) as conn:
                try:
                    yield conn
                finally:
                    # when it goes back (for `_check`); not the pool's ``reset`` callback, with which the pool
                    # hands the connection back in a worker thread, so the next call waits for that thread
                    _returned_at[conn] = time.monotonic()
        except MemdockError:
            raise
        except psycopg.errors.ProgramLimitExceeded as exc:  # a text too long for PostgreSQL's own tsvector
            raise InvalidInput(f"too long for this table's full-text index (text_search={self._text_search}):"
                               f" {_first_line(exc)}", field="text") from None
        except psycopg.errors.UniqueViolation:
            raise WriteConflict(
                f"pgvector at {self._where}: another writer stored the same text in this scope (or a record with"
                " the same id) at the same time; nothing of this batch was stored"
            ) from None
        except PoolTimeout:
            raise BackendUnavailable(
                f"pgvector at {self._where}: no connection within {self._settings.connect_timeout}s (server down?)"
            ) from None
        except (psycopg.Error, OSError) as exc:
            raise BackendUnavailable(f"pgvector at {self._where}: {type(exc).__name__}: {_first_line(exc)}") from None

    def _ensure_ef_search(self, conn: psycopg.Connection[Any], wanted: int) -> None:
        """``hnsw.ef_search`` of this connection at `wanted`: a connection starts at the configured value
        (its ``options``), so only a search whose limit needs a wider search (and the next one after it)
        spends a statement on it."""
        if _ef_search.get(conn, self._settings.ef_search) != wanted:
            conn.execute("SELECT set_config('hnsw.ef_search', %s, false)", [str(wanted)])
            _ef_search[conn] = wanted

    def _scope_clause(self, scope: Scope, *, live_only: bool = True) -> list[sql.Composable]:
        """The conditions of `scope` (one per id it sets, in `SCOPE_FIELDS` order) and, when `live_only`,
        liveness: one parameter each, in that order."""
        clauses: list[sql.Composable] = [
            Bound(sql.SQL("{} = %s").format(sql.Identifier(name)), [value]) for name, value in scope.ids().items()
        ]
        if live_only:
            clauses.append(Bound(sql.SQL("(expires_at IS NULL OR expires_at > %s)"), [self.now()]))
        return clauses

    def _where_clause(
        self, conn: psycopg.Connection[Any], scope: Scope, where: Filter | None, *, live_only: bool = True
    ) -> list[sql.Composable] | None:
        """SQL conditions for scope, liveness (unless not `live_only`) and filter; None when the filter must
        run in Python. Raises `InvalidFilter` when the reference evaluator would raise on a live record in
        scope."""
        clauses = self._scope_clause(scope, live_only=live_only)
        if where is None:
            return clauses
        if needs_python(where):
            return None
        compiled = compile_filter(where)
        if compiled.raises.constant is not False:
            live = clauses if live_only else self._scope_clause(scope)
            probe = sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE {})").format(
                self._table, sql.SQL(" AND ").join([*live, compiled.raises.sql]))
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
        """`add_with_history` without events."""
        self.add_with_history(records, [])

    def add_with_history(self, records: Sequence[MemoryRecord], events: Sequence[HistoryEvent]) -> None:
        """Records and their history events in ONE statement (one round trip, one transaction): expired rows
        holding the same (scope, hash) or the same id are removed, the records inserted, the events appended. All or
        nothing: when another writer stored one of the texts in the same scope meanwhile (the unique
        (scope, hash) index) or a record with one of the ids, the statement fails as a whole and
        `WriteConflict` says so; a fault during it leaves nothing either."""
        if not records:
            if events:
                self.record_history(events)
            return
        if any(r.vector is None for r in records):
            raise InvalidInput("records need vectors", field="vector")
        memdock_terms = self._text_search == MEMDOCK
        rows = [_row(r) + (_term_values(r.text) if memdock_terms else []) for r in records]
        params: list[Any] = [*(list(column) for column in zip(*rows, strict=True)), self.now()]
        if events:
            params += [list(column) for column in zip(*(_event_row(e) for e in events), strict=True)]
        with_events = bool(events)
        with self._connection() as conn:
            conn.execute(self._statement(conn, ("insert", with_events), lambda: self._insert_sql(with_events)),
                         params)

    def _insert_sql(self, with_events: bool) -> sql.Composed:
        """`add_with_history`'s statement: its parameters are one array per column of `_row` (+ the terms'
        inputs), the time, then one array per column of `_event_row` when `with_events`. The vectors travel
        in binary (as text, 384 floats cost more to format than the insert takes)."""
        memdock_terms = self._text_search == MEMDOCK
        kinds = _COLUMN_TYPES + (_TERM_TYPES if memdock_terms else ())
        incoming = sql.SQL("SELECT * FROM unnest({})").format(sql.SQL(", ").join(
            sql.SQL("%b::{}[]" if kind == "vector" else "%s::{}[]").format(sql.SQL(kind)) for kind in kinds))
        given = [*COLUMNS, "embedding", *(_TERM_INPUTS if memdock_terms else ())]
        stored = sql.SQL(", ").join([*map(sql.Identifier, [*COLUMNS, "embedding"]),
                                     *stored_terms_sql(self._text_search, sql.Identifier("text"), sql.SQL(""))])
        statement = sql.SQL(
            "WITH incoming ({given}) AS MATERIALIZED ({incoming}),"
            " expired AS (DELETE FROM {t} WHERE expires_at <= %s AND ((COALESCE(user_id, ''), COALESCE(agent_id, ''),"
            " COALESCE(run_id, ''), COALESCE(app_id, ''), hash) IN (SELECT COALESCE(user_id, ''),"
            " COALESCE(agent_id, ''), COALESCE(run_id, ''), COALESCE(app_id, ''), hash FROM incoming)"
            " OR id IN (SELECT id FROM incoming)) RETURNING 1),"
            # the scalar subquery runs the DELETE to completion before the first row is inserted
            " stored AS (INSERT INTO {t} ({columns}) SELECT {stored} FROM incoming"
            " WHERE (SELECT count(*) FROM expired) >= 0 RETURNING 1) "
        ).format(columns=sql.SQL(", ").join(map(sql.Identifier, [*COLUMNS, "embedding", *TERM_COLUMNS])),
                 given=sql.SQL(", ").join(map(sql.Identifier, given)), incoming=incoming, stored=stored,
                 t=self._table)
        if with_events:
            history = sql.SQL("SELECT * FROM unnest({})").format(sql.SQL(", ").join(
                sql.SQL("%s::{}[]").format(sql.SQL(kind)) for kind in _HISTORY_TYPES))
            statement += sql.SQL(
                "INSERT INTO {h} ({columns}) {history} WHERE (SELECT count(*) FROM stored) >= 0"
            ).format(h=self._history_table, columns=sql.SQL(", ").join(map(sql.Identifier, HISTORY_COLUMNS)),
                     history=history)
        else:
            statement += sql.SQL("SELECT count(*) FROM stored")
        return statement

    def update(self, record: MemoryRecord) -> None:
        """Replace text, metadata, hash, times and vector; another memory holding the new text in the same
        scope makes it `InvalidInput` (field ``text``)."""
        with self._connection() as conn:
            source: sql.Composable
            if self._text_search == MEMDOCK:
                terms = stored_terms_sql(MEMDOCK, sql.SQL(""), sql.SQL("u."))
                source = Bound(sql.SQL(" FROM (SELECT %s::text AS lexemes, %s::jsonb AS term_freqs,"
                                       " %s::integer AS terms_length) u"), _term_values(record.text))
            else:
                terms = stored_terms_sql(self._text_search, sql.SQL("%s::text"), sql.SQL(""))
                source = sql.SQL("")
            statement = sql.SQL(
                "UPDATE {} SET text = %s, metadata = %s, hash = %s, updated_at = %s, expires_at = %s,"
                " embedding = %s, terms = {}, term_freqs = {}, terms_length = {}{} WHERE id = %s"
            ).format(self._table, *terms, source)
            params = [record.text, _jsonb(record.metadata), record.hash, record.updated_at, record.expires_at,
                      _vector(record.vector),
                      *([] if self._text_search == MEMDOCK else [record.text] * 3), *params_of(source), record.id]
            try:
                conn.execute(statement, params)
            except psycopg.errors.UniqueViolation:
                raise InvalidInput("another memory in this scope already holds this text", field="text") from None

    def delete(self, memory_ids: Sequence[str]) -> None:
        """Delete by id; unknown ids are ignored."""
        if memory_ids:
            with self._connection() as conn:
                conn.execute(sql.SQL("DELETE FROM {} WHERE id = ANY(%s)").format(self._table), [list(memory_ids)])

    def reset(self) -> None:
        """Empty the namespace's memories and history."""
        with self._connection() as conn:
            conn.execute(sql.SQL("TRUNCATE {}, {}").format(self._table, self._history_table))

    # -- reads ---------------------------------------------------------------------------------------------

    def get(self, memory_id: str) -> MemoryRecord | None:
        """The record (with its vector), or None when missing or expired."""
        with self._connection() as conn:
            found = self._select(conn, [Bound(sql.SQL("id = %s"), [memory_id])], sql.SQL(""), vectors=True)
        if not found or found[0].is_expired(self.now()):
            return None
        return found[0]

    def find_by_hash(self, scope: Scope, text_hash: str) -> MemoryRecord | None:
        """A live record with exactly this scope and hash (served by the unique index)."""
        return self.find_duplicates([(scope, "", text_hash)])[0]

    def find_duplicates(self, wanted: Sequence[tuple[Scope, str, str]]) -> builtins.list[MemoryRecord | None]:
        """For each ``(scope, text, hash)``, the live record of exactly this scope with this hash, or None; the
        whole batch in one query (the unique (scope, hash) index answers each triple)."""
        if not wanted:
            return []
        keys = [[getattr(scope, name) or "" for name in SCOPE_FIELDS] + [digest] for scope, _, digest in wanted]
        with self._connection() as conn:
            query = self._statement(conn, ("duplicates",), lambda: sql.SQL(
                "SELECT w.n, {columns} FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[])"
                " WITH ORDINALITY AS w (user_id, agent_id, run_id, app_id, hash, n)"
                " JOIN {t} t ON COALESCE(t.user_id, '') = w.user_id AND COALESCE(t.agent_id, '') = w.agent_id"
                " AND COALESCE(t.run_id, '') = w.run_id AND COALESCE(t.app_id, '') = w.app_id AND t.hash = w.hash"
                " WHERE t.expires_at IS NULL OR t.expires_at > %s"
            ).format(columns=sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in COLUMNS),
                     t=self._table))
            rows = conn.execute(query, [*(list(c) for c in zip(*keys, strict=True)), self.now()]).fetchall()
        found: dict[int, MemoryRecord] = {int(row[0]): _record(row[1:]) for row in rows}
        return [found.get(n) for n in range(1, len(wanted) + 1)]

    def search(
        self, vector: Sequence[float] | None, text: str, scope: Scope, where: Filter | None, limit: int
    ) -> list[SearchHit]:
        """The nearest live records in scope matching `where`, re-ranked exactly (ties by id).

        Liveness is checked on the hits: the index is asked without the expiry condition (which costs
        every candidate a comparison), and asked again with it only when an expired record is among the
        hits, so a table without expiring records pays nothing and an expired record is never returned."""
        if vector is None:
            raise InvalidInput("the pgvector backend needs a query vector", field="vector")
        with self._connection() as conn:
            if where is not None and needs_python(where):
                return rank_by_cosine(vector, self._python_filtered(conn, scope, where, vectors=True), limit)
            query_vector, now = _vector(vector), self.now()
            self._ensure_ef_search(conn, max(self._settings.ef_search, min(limit * 2, 1000)))
            rows = self._nearest(conn, query_vector, scope, where, limit, now, live_only=False)
            if any(row[_EXPIRES_AT] is not None and row[_EXPIRES_AT] <= now for row in rows):
                rows = self._nearest(conn, query_vector, scope, where, limit, now, live_only=True)
        hits = [SearchHit(record=_record(row[:-1]), score=_score(row[-1])) for row in rows]
        return sorted(hits, key=lambda h: (-h.score, h.record.id))

    def _nearest(self, conn: psycopg.Connection[Any], query_vector: Any, scope: Scope, where: Filter | None,
                 limit: int, now: datetime, *, live_only: bool) -> builtins.list[Any]:
        """The `limit` nearest rows in scope matching `where` (`COLUMNS` and the distance), with the expiry
        condition when `live_only`, in one statement: a scope holding fewer than ``exact_scan_rows`` rows
        (counted on its ids' index, at most that many) has every row ranked exactly; a larger one is
        ranked by the HNSW index (`nearest_sql`). The vector travels in binary, the rows come back in
        binary; without a filter the statement's text is composed once per set of scope ids and kept."""
        clauses = (self._scope_clause(scope, live_only=live_only) if where is None
                   else self._where_clause(conn, scope, where, live_only=live_only))
        assert clauses is not None  # a filter SQL cannot evaluate is ranked by `search` itself
        exact_rows = self._settings.exact_scan_rows

        def compose() -> sql.Composable:
            id_clauses = self._scope_clause(scope, live_only=False) if exact_rows else None
            return nearest_sql(self._table, COLUMNS, clauses, id_clauses)

        if where is None:  # `_scope_clause`'s parameters: the scope's ids, then the time
            text = self._statement(conn, ("nearest", tuple(scope.ids()), live_only, exact_rows > 0), compose)
            params = [*scope.ids().values(), *([now] if live_only else [])]
        else:
            text, params = compose().as_bytes(conn), params_of(sql.Composed(clauses))
        if not exact_rows:
            return conn.execute(text, [query_vector, *params, limit], binary=True).fetchall()
        gate = [exact_rows, *scope.ids().values(), exact_rows]
        branch = [query_vector, *params, limit]
        return conn.execute(text, [*gate, *branch, *branch], binary=True).fetchall()

    def _statement(self, conn: psycopg.Connection[Any], key: tuple[Any, ...],
                   compose: Callable[[], sql.Composable]) -> bytes:
        """The text of the statement `key` names, composed by `compose` the first time and kept (at most
        `STATEMENT_CACHE_SIZE`; the cache is emptied when full)."""
        text = self._statements.get(key)
        if text is None:
            text = compose().as_bytes(conn)
            if len(self._statements) >= STATEMENT_CACHE_SIZE:
                self._statements.clear()
            self._statements[key] = text
        return text

    def _ranking_clauses(self, conn: psycopg.Connection[Any], scope: Scope,
                         where: Filter | None) -> list[sql.Composable]:
        """The candidates' conditions: scope, liveness and the filter in SQL; for a filter SQL cannot
        evaluate (``icontains``), the ids of the scope's records the reference evaluator keeps (one more
        statement)."""
        clauses = self._where_clause(conn, scope, where)
        if clauses is not None:
            return clauses
        assert where is not None
        ids = [r.id for r in self._python_filtered(conn, scope, where)]
        return [Bound(sql.SQL("id = ANY(%s)"), [ids]), *self._scope_clause(scope)]

    def _rank(self, conn: psycopg.Connection[Any], clauses: list[sql.Composable], parts: RankingParts,
              vector: Any, limit: int) -> builtins.list[Any]:
        """Run the keyword statement (`vector` None) or the hybrid one. Its text depends only on the mode, the
        kind of query and the scope and filter's SQL, so it is composed once per such key (composing the
        long statement costs more than running it on a scope of a hundred) and reused, a prepared
        statement for psycopg after a few runs; the parameters travel apart, in the statement's order."""
        where = sql.SQL(" AND ").join(clauses)
        text = self._statement(conn, (vector is None, parts.kind, where.as_bytes(conn)), lambda: (
            keyword_statement(self._table, clauses, COLUMNS, parts, limit) if vector is None
            else hybrid_statement(self._table, clauses, COLUMNS, parts, vector, limit)))
        params = [*parts.params, *([] if vector is None else [vector]), *params_of(where), limit]
        return conn.execute(text, params, binary=True).fetchall()

    def keyword_search(self, text: str, scope: Scope, where: Filter | None, limit: int) -> list[SearchHit]:
        """BM25 over the live records of `scope` matching `where`, with their statistics, in one statement
        (`memdock.backends.pgvector.keyword`); records sharing no term are not hits."""
        parts = ranking_parts(self._text_search, text)
        if parts.empty:
            return []
        with self._connection() as conn:
            clauses = self._ranking_clauses(conn, scope, where)
            rows = self._rank(conn, clauses, parts, None, limit)
        scored = [(_record(row[:-2]), keyword_score(row[-2], row[-1])) for row in rows]
        return keyword_hits([(record, score) for record, score in scored if score is not None], limit)

    def hybrid_search(
        self, vector: Sequence[float] | None, text: str, scope: Scope, where: Filter | None, limit: int
    ) -> list[SearchHit]:
        """Every candidate's cosine and keyword score, fused, in one statement
        (`memdock.backends.pgvector.keyword`)."""
        if vector is None:
            raise InvalidInput("the pgvector backend needs a query vector", field="vector")
        parts = ranking_parts(self._text_search, text)
        with self._connection() as conn:
            clauses = self._ranking_clauses(conn, scope, where)
            rows = self._rank(conn, clauses, parts, _vector(vector), limit)
        return hybrid_hits([(_record(row[:-3]), vector_score(row[-3]), keyword_score(row[-2], row[-1]))
                            for row in rows], limit)

    def list(self, scope: Scope, where: Filter | None, limit: int, cursor: str | None) -> Page:
        """A keyset page ordered by (created_at, id)."""
        with self._connection() as conn:
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
        with self._connection() as conn:
            clauses = self._where_clause(conn, scope, where)
            if clauses is None:
                assert where is not None
                return len(self._python_filtered(conn, scope, where))
            query = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(self._table, sql.SQL(" AND ").join(clauses))
            row = conn.execute(query, params_of(query)).fetchone()
        return int(row[0]) if row else 0

    # -- history -------------------------------------------------------------------------------------------

    def record_history(self, events: Sequence[HistoryEvent]) -> None:
        """Append events in one statement (COPY)."""
        if not events:
            return
        with self._connection() as conn:
            copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(
                self._history_table, sql.SQL(", ").join(map(sql.Identifier, HISTORY_COLUMNS)))
            with conn.cursor() as cursor, cursor.copy(copy_sql) as copy:
                for e in events:
                    copy.write_row(_event_row(e))

    def history(self, memory_id: str) -> builtins.list[HistoryEvent]:
        """Events of one memory, oldest first (recording order breaks ties)."""
        return self.history_many([memory_id]).get(memory_id, [])

    def get_many(self, memory_ids: Sequence[str]) -> builtins.list[MemoryRecord]:
        """The live records with these ids (with their vectors), in one query."""
        if not memory_ids:
            return []
        with self._connection() as conn:
            found = self._select(conn, [Bound(sql.SQL("id = ANY(%s)"), [list(memory_ids)])], sql.SQL(""),
                                 vectors=True)
        now = self.now()
        return [r for r in found if not r.is_expired(now)]

    def history_many(self, memory_ids: Sequence[str]) -> dict[str, builtins.list[HistoryEvent]]:
        """Events of each memory, oldest first (recording order breaks ties), in one query."""
        out: dict[str, builtins.list[HistoryEvent]] = {memory_id: [] for memory_id in memory_ids}
        if not memory_ids:
            return out
        with self._connection() as conn:
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


def nearest_sql(table: sql.Identifier, columns: Sequence[str], clauses: Sequence[sql.Composable],
                id_clauses: Sequence[sql.Composable] | None) -> sql.Composed:
    """The nearest-rows statement over `clauses`: ``ORDER BY distance LIMIT %s`` on the HNSW index when
    `id_clauses` is None (parameters: the vector, the clauses', the limit). Otherwise gated on the size of
    the scope `id_clauses` select: a bounded count (``LIMIT n`` on the ids' index) decides, once per
    statement, which of two branches runs; the other is never executed. The exact branch scans the
    scope's rows (``OFFSET 0`` keeps the planner from ordering them by the index) and sorts them by
    distance; the index branch is the plain statement. Parameters: n, the ids', n, then the vector, the
    clauses' and the limit once per branch."""
    select = sql.SQL("SELECT {}, embedding <=> %b AS distance FROM {} WHERE {}").format(
        sql.SQL(", ").join(map(sql.Identifier, columns)), table, sql.SQL(" AND ").join(clauses))
    if id_clauses is None:
        return sql.SQL("{} ORDER BY distance LIMIT %s").format(select)
    ids = sql.SQL(" AND ").join(id_clauses) if id_clauses else sql.SQL("TRUE")
    return sql.SQL(
        "WITH scope_size AS MATERIALIZED (SELECT count(*) < %s AS small FROM"
        " (SELECT 1 FROM {table} WHERE {ids} LIMIT %s) AS scope_rows)"
        " (SELECT * FROM ({select} AND (SELECT small FROM scope_size) OFFSET 0) AS exact"
        " ORDER BY distance LIMIT %s)"
        " UNION ALL ({select} AND NOT (SELECT small FROM scope_size) ORDER BY distance LIMIT %s)"
    ).format(table=table, ids=ids, select=select)


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


def _event_row(e: HistoryEvent) -> list[Any]:
    return [e.id, e.memory_id, e.event.value, e.old_text, e.new_text, _jsonb(e.old_metadata), _jsonb(e.new_metadata),
            e.scope.user_id, e.scope.agent_id, e.scope.run_id, e.scope.app_id, e.created_at]


def _record(row: Sequence[Any]) -> MemoryRecord:
    """The record of a row of `COLUMNS` (+ ``embedding``)."""
    vector = row[11] if len(row) > 11 else None
    if vector is not None:
        vector = [float(x) for x in (vector.to_list() if hasattr(vector, "to_list") else vector)]
    return MemoryRecord(
        id=row[0], text=row[1], scope=Scope(user_id=row[2], agent_id=row[3], run_id=row[4], app_id=row[5]),
        metadata=row[6], hash=row[7], created_at=row[8], updated_at=row[9], expires_at=row[10], vector=vector,
    )


def _score(distance: Any) -> float:
    """The vector score of a cosine distance; a zero vector (NaN distance) scores as cosine 0, as in
    `memdock.scoring.rank_by_cosine`."""
    value = float(distance)
    return 0.0 if math.isnan(value) else cosine_distance_to_score(value)


_TERM_TYPES = ("text", "jsonb", "integer")
"""SQL types of `_TERM_INPUTS`, the ``memdock`` terms a write sends."""
_TERM_INPUTS = ("lexemes", "term_freqs", "terms_length")


def _term_values(text: str) -> list[Any]:
    """The ``memdock`` terms of `text` as the parameters `_TERM_INPUTS` of a write."""
    terms = document_terms(text)
    return [terms.lexemes, terms.freqs_json(), terms.length]
