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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from memdock.backends.pgvector.backend import check_table_name
from memdock.errors import EmbedderMismatch, Unsupported

SCHEMA_TABLE = "memdock_schema"


@dataclass(frozen=True)
class Namespace:
    """One table and the index options it is created with."""

    table: str
    dimension: int
    hnsw_m: int
    hnsw_ef_construction: int

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


MIGRATIONS: list[Callable[[Namespace], list[sql.Composed]]] = [_v1]
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


def setup(conn: psycopg.Connection[Any], ns: Namespace, embedder_identity: str) -> int:
    """Bring `ns` to the latest schema version; returns the version it was at before (0 = new).

    Raises `EmbedderMismatch` when the namespace was written with another embedder.
    """
    ensure_extension(conn)
    with conn.transaction():
        conn.execute(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (namespace text PRIMARY KEY, version integer NOT NULL,"
            " embedder text NOT NULL, dimension integer NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())"
        ).format(sql.Identifier(SCHEMA_TABLE)))
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"memdock:{ns.table}",))
        row = conn.execute(
            sql.SQL("SELECT version, embedder FROM {} WHERE namespace = %s").format(sql.Identifier(SCHEMA_TABLE)),
            (ns.table,),
        ).fetchone()
        version = row[0] if row else 0
        if row is not None and row[1] != embedder_identity:
            raise EmbedderMismatch(
                f"table {ns.table!r} was written with embedder {row[1]!r}, not {embedder_identity!r}", field="embedder"
            )
        for step in MIGRATIONS[version:]:
            for statement in step(ns):
                conn.execute(statement)
        if version < LATEST:
            conn.execute(sql.SQL(
                "INSERT INTO {} (namespace, version, embedder, dimension) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (namespace) DO UPDATE SET version = EXCLUDED.version, updated_at = now()"
            ).format(sql.Identifier(SCHEMA_TABLE)), (ns.table, LATEST, embedder_identity, ns.dimension))
    return int(version)


def drop(conn: psycopg.Connection[Any], table: str) -> None:
    """Delete a namespace: its tables and its version row (for tests and administrators)."""
    check_table_name(table)
    with conn.transaction():
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}, {}").format(
            sql.Identifier(table), sql.Identifier(table + "_history")))
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (SCHEMA_TABLE,)).fetchone()
        if exists and exists[0]:
            conn.execute(sql.SQL("DELETE FROM {} WHERE namespace = %s").format(sql.Identifier(SCHEMA_TABLE)), (table,))
