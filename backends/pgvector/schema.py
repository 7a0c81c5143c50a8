"""Versioned, idempotent schema migrations for the pgvector backend.

Every namespace (a table name, ``table=``/``collection=`` in the URL) has a row in ``memdock_schema``
holding its schema version and the embedder it was written with. `setup` brings a namespace to the
latest version under a transaction-scoped advisory lock, so concurrent setups wait for each other and
running it twice is a no-op. Steps are only ever appended to `MIGRATIONS`, never edited.

Layout of namespace ``T`` (version 1):

- ``T``: ``id`` (primary key), ``text``, the scope ids ``user_id``/``agent_id``/``run_id``/``app_id`` as
  columns with btree indexes, ``metadata jsonb`` with a GIN index, ``hash``, ``created_at``,
  ``updated_at``, ``expires_at`` (timestamptz), ``embedding vector(D)`` with an HNSW
  ``vector_cosine_ops`` index; a unique index on (scope ids, hash) makes "one memory per text and
  scope" a database rule (NULL ids are folded to '' for it: memdock never stores an empty id).
- ``T_history``: one row per ADD/UPDATE/DELETE event, ordered by (created_at, seq).

Version 2 adds keyword search (`memdock.backends.pgvector.keyword`): ``terms tsvector`` with a GIN index,
``term_freqs jsonb`` and ``terms_length integer``, and fills them for the rows already stored (in the
migration's transaction, `fill_terms`). ``memdock_schema.text_search`` records which terms the table holds
(``memdock`` or a PostgreSQL text search configuration); opening it with another is `InvalidInput` until
`reindex` rebuilds the terms.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from memdock.backends.pgvector.backend import check_table_name
from memdock.backends.pgvector.keyword import MEMDOCK, document_terms, stored_terms_sql
from memdock.errors import EmbedderMismatch, InvalidInput, Unsupported

SCHEMA_TABLE = "memdock_schema"


@dataclass(frozen=True)
class Namespace:
    """One table and the index options it is created with."""

    table: str
    dimension: int
    hnsw_m: int
    hnsw_ef_construction: int
    text_search: str = MEMDOCK

    def ident(self, suffix: str = "") -> sql.Identifier:
        """The quoted identifier of the table (or of ``table + suffix``)."""
        return sql.Identifier(self.table + suffix)


def _v1(ns: Namespace) -> list[sql.Composed]:
    t, h = ns.ident(), ns.ident("_history")
    statements = [
        sql.SQL(
            "CREATE TABLE {t} ("
            " id text PRIMARY KEY, text text NOT NULL,"
            " user_id text, agent_id text, run_id text, app_id text,"
            " metadata jsonb NOT NULL DEFAULT '{{}}'::jsonb, hash text NOT NULL,"
            " created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, expires_at timestamptz,"
            " embedding vector({d}) NOT NULL)"
        ).format(t=t, d=sql.Literal(ns.dimension)),
        sql.SQL(
            "CREATE UNIQUE INDEX {i} ON {t} (COALESCE(user_id, ''), COALESCE(agent_id, ''), COALESCE(run_id, ''),"
            " COALESCE(app_id, ''), hash)"
        ).format(i=ns.ident("_scope_hash"), t=t),
        sql.SQL("CREATE INDEX {i} ON {t} USING gin (metadata)").format(i=ns.ident("_metadata"), t=t),
        sql.SQL("CREATE INDEX {i} ON {t} (created_at, id)").format(i=ns.ident("_created"), t=t),
        sql.SQL("CREATE INDEX {i} ON {t} (expires_at) WHERE expires_at IS NOT NULL").format(
            i=ns.ident("_expires"), t=t),
        sql.SQL(
            "CREATE INDEX {i} ON {t} USING hnsw (embedding vector_cosine_ops) WITH (m = {m}, ef_construction = {ef})"
        ).format(i=ns.ident("_embedding"), t=t, m=sql.Literal(ns.hnsw_m), ef=sql.Literal(ns.hnsw_ef_construction)),
        sql.SQL(
            "CREATE TABLE {h} ("
            " seq bigserial PRIMARY KEY, id text NOT NULL, memory_id text NOT NULL, event text NOT NULL,"
            " old_text text, new_text text, old_metadata jsonb, new_metadata jsonb,"
            " user_id text, agent_id text, run_id text, app_id text, created_at timestamptz NOT NULL)"
        ).format(h=h),
        sql.SQL("CREATE INDEX {i} ON {h} (memory_id, created_at, seq)").format(i=ns.ident("_history_memory"), h=h),
    ]
    statements += [
        sql.SQL("CREATE INDEX {i} ON {t} ({c})").format(i=ns.ident(f"_{column}"), t=t, c=sql.Identifier(column))
        for column in ("user_id", "agent_id", "run_id", "app_id")
    ]
    return statements


def _v2(ns: Namespace) -> list[sql.Composed]:
    t = ns.ident()
    return [
        sql.SQL("ALTER TABLE {t} ADD COLUMN terms tsvector, ADD COLUMN term_freqs jsonb,"
                " ADD COLUMN terms_length integer").format(t=t),
        sql.SQL("CREATE INDEX {i} ON {t} USING gin (terms)").format(i=ns.ident("_terms"), t=t),
    ]


MIGRATIONS: list[Callable[[Namespace], list[sql.Composed]]] = [_v1, _v2]
"""Step N brings a namespace from version N-1 to N. Append only."""
LATEST = len(MIGRATIONS)


def ensure_extension(conn: psycopg.Connection[Any]) -> None:
    """``CREATE EXTENSION IF NOT EXISTS vector``; `Unsupported` with instructions when it cannot."""
    try:
        with conn.transaction():
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except (psycopg.errors.UndefinedFile, psycopg.errors.FeatureNotSupported, psycopg.errors.UndefinedObject) as exc:
        raise Unsupported(
            "this PostgreSQL server has no pgvector extension; install pgvector (https://github.com/pgvector/pgvector)"
            f" or enable it on your managed service ({type(exc).__name__}: {str(exc).strip()})"
        ) from None
    except psycopg.errors.InsufficientPrivilege as exc:
        raise Unsupported(
            "the pgvector extension is not enabled and this role may not create it: run "
            f"`CREATE EXTENSION vector;` as an administrator once ({str(exc).strip()})"
        ) from None


def _ensure_schema_table(conn: psycopg.Connection[Any]) -> None:
    """``memdock_schema`` with its ``text_search`` column (added to a table of an earlier memdock), created
    or altered under a lock of its own so concurrent first opens do not collide."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('memdock:schema'))")
        conn.execute(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (namespace text PRIMARY KEY, version integer NOT NULL,"
            " embedder text NOT NULL, dimension integer NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(),"
            " text_search text)"
        ).format(sql.Identifier(SCHEMA_TABLE)))
        found = conn.execute(
            "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = 'text_search'"
            " AND NOT attisdropped", (SCHEMA_TABLE,)).fetchone()
        if found is None:
            conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS text_search text").format(
                sql.Identifier(SCHEMA_TABLE)))


def check_text_search_exists(conn: psycopg.Connection[Any], text_search: str) -> None:
    """`InvalidInput` (field ``text_search``) unless it is ``memdock`` or a configuration of this server."""
    if text_search == MEMDOCK:
        return
    row = conn.execute("SELECT EXISTS (SELECT 1 FROM pg_ts_config WHERE cfgname = %s AND pg_ts_config_is_visible(oid))",
                       (text_search,)).fetchone()
    if not row or not row[0]:
        names = [r[0] for r in conn.execute("SELECT cfgname FROM pg_ts_config ORDER BY cfgname").fetchall()]
        raise InvalidInput(f"no text search configuration {text_search!r} on this server; use 'memdock' or one of "
                           f"{', '.join(names)}", field="text_search")


def setup(conn: psycopg.Connection[Any], ns: Namespace, embedder_identity: str) -> int:
    """Bring `ns` to the latest schema version; returns the version it was at before (0 = new).

    A table of version 1 gets its rows' terms (`fill_terms`) in the same transaction. Raises
    `EmbedderMismatch` when the namespace was written with another embedder and `InvalidInput` (field
    ``text_search``) when its terms are of another ``text_search`` than `ns` asks for (see `reindex`).
    """
    ensure_extension(conn)
    check_text_search_exists(conn, ns.text_search)
    _ensure_schema_table(conn)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"memdock:{ns.table}",))
        row = conn.execute(
            sql.SQL("SELECT version, embedder, text_search FROM {} WHERE namespace = %s").format(
                sql.Identifier(SCHEMA_TABLE)),
            (ns.table,),
        ).fetchone()
        version = row[0] if row else 0
        if row is not None and row[1] != embedder_identity:
            raise EmbedderMismatch(
                f"table {ns.table!r} was written with embedder {row[1]!r}, not {embedder_identity!r}", field="embedder"
            )
        indexed = (row[2] or MEMDOCK) if row is not None and version >= 2 else None
        if indexed is not None and indexed != ns.text_search:
            raise InvalidInput(
                f"table {ns.table!r} is indexed with text_search={indexed!r}, not {ns.text_search!r}: open it with"
                f" text_search={indexed}, or rebuild its terms once with"
                " memdock.backends.pgvector.schema.reindex(connection, namespace)", field="text_search")
        for step in MIGRATIONS[version:]:
            for statement in step(ns):
                conn.execute(statement)
        if 0 < version < 2:
            fill_terms(conn, ns)
        if version < LATEST:
            conn.execute(sql.SQL(
                "INSERT INTO {} (namespace, version, embedder, dimension, text_search) VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (namespace) DO UPDATE SET version = EXCLUDED.version,"
                " text_search = EXCLUDED.text_search, updated_at = now()"
            ).format(sql.Identifier(SCHEMA_TABLE)), (ns.table, LATEST, embedder_identity, ns.dimension,
                                                      ns.text_search))
    return int(version)


FILL_BATCH = 1000
"""Rows whose terms `fill_terms` computes per statement (the ``memdock`` text search, in Python)."""


def fill_terms(conn: psycopg.Connection[Any], ns: Namespace, *, every_row: bool = False) -> int:
    """Compute the keyword columns of the rows that lack them (of every row with `every_row`) for
    ``ns.text_search``, in the caller's transaction; returns how many rows were filled. A PostgreSQL
    configuration is one UPDATE; ``memdock`` terms are computed here, `FILL_BATCH` rows per statement."""
    t = ns.ident()
    missing = sql.SQL("TRUE" if every_row else "terms_length IS NULL")
    if ns.text_search != MEMDOCK:
        values = stored_terms_sql(ns.text_search, sql.SQL("text"), sql.SQL(""))
        cursor = conn.execute(sql.SQL("UPDATE {t} SET terms = {a}, term_freqs = {b}, terms_length = {c} WHERE {m}")
                              .format(t=t, a=values[0], b=values[1], c=values[2], m=missing))
        return cursor.rowcount
    values = stored_terms_sql(MEMDOCK, sql.SQL(""), sql.SQL("u."))
    update = sql.SQL(
        "UPDATE {t} SET terms = {a}, term_freqs = {b}, terms_length = {c}"
        " FROM unnest(%s::text[], %s::text[], %s::jsonb[], %s::integer[]) AS u (id, lexemes, term_freqs, terms_length)"
        " WHERE {t}.id = u.id"
    ).format(t=t, a=values[0], b=values[1], c=values[2])
    filled = 0
    after = ""
    while True:  # keyset batches by id: each batch is read and written before the next is read
        rows = conn.execute(sql.SQL("SELECT id, text FROM {t} WHERE {m} AND id > %s ORDER BY id LIMIT %s").format(
            t=t, m=missing), (after, FILL_BATCH)).fetchall()
        if not rows:
            return filled
        computed = [document_terms(text) for _, text in rows]
        conn.execute(update, ([r[0] for r in rows], [c.lexemes for c in computed],
                              [c.freqs_json() for c in computed], [c.length for c in computed]))
        filled += len(rows)
        after = rows[-1][0]


def reindex(conn: psycopg.Connection[Any], ns: Namespace) -> int:
    """Rebuild every row's terms for ``ns.text_search`` and record it (to change a table's text search);
    one transaction under the namespace's lock. Returns the number of rows. Other processes must reopen
    the table with the new ``text_search``."""
    check_text_search_exists(conn, ns.text_search)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"memdock:{ns.table}",))
        filled = fill_terms(conn, ns, every_row=True)
        conn.execute(sql.SQL("UPDATE {} SET text_search = %s, updated_at = now() WHERE namespace = %s").format(
            sql.Identifier(SCHEMA_TABLE)), (ns.text_search, ns.table))
    return filled


def drop(conn: psycopg.Connection[Any], table: str) -> None:
    """Delete a namespace: its tables and its version row (for tests and administrators)."""
    check_table_name(table)
    with conn.transaction():
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}, {}").format(
            sql.Identifier(table), sql.Identifier(table + "_history")))
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (SCHEMA_TABLE,)).fetchone()
        if exists and exists[0]:
            conn.execute(sql.SQL("DELETE FROM {} WHERE namespace = %s").format(sql.Identifier(SCHEMA_TABLE)), (table,))
