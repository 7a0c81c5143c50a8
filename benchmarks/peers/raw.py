"""The raw engines memdock is measured against, each written the way a careful user would write it by hand
for this data, holding the same records and answering the same scoped top-10 query:

- `RawChroma`: a plain chromadb collection (cosine space, as memdock's) with ``user_id``/``agent_id``/
  ``bucket`` metadata; a search is one ``collection.query`` with ``where={field: value}``.
- `RawPgvector`: a plain table (id, text, user_id, agent_id, metadata jsonb, embedding vector(384)) with
  btree indexes on the scope columns and the same HNSW index as memdock's (m 16, ef_construction 64,
  `memdock.backends.pgvector.schema`), session settings set once per connection (ef_search 100,
  iterative_scan relaxed_order, as memdock's defaults), autocommit reads: one round trip per search.
- `NumpyBrute`: a float32 matrix and per-scope row lists; a search is one matrix-vector product over the
  scope's rows and an ``argpartition``.

A text search embeds the text with the same default embedder first, so the raw figures are the floor
for memdock's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from bench_data import DIMENSION, LIMIT, Item
from bench_systems import System

from memdock.embedding import Embedder

HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64
EF_SEARCH = 100


class RawChroma(System):
    """chromadb's own API on a plain collection in its own folder."""

    store = "chroma"
    kind = "raw"
    label = "raw chromadb"

    def __init__(self, path: str, minilm: Embedder) -> None:
        import chromadb
        from chromadb.config import Settings

        self.minilm = minilm
        self.client = chromadb.PersistentClient(path=path, settings=Settings(anonymized_telemetry=False))
        self.collection = self.client.create_collection("raw", metadata={"hnsw:space": "cosine"})

    def _put(self, items: Sequence[Item]) -> None:
        self.collection.add(ids=[i.id for i in items], embeddings=np.stack([i.vector for i in items]),
                            documents=[i.text for i in items],
                            metadatas=[{"user_id": i.user_id, "agent_id": i.agent_id, "bucket": i.bucket}
                                       for i in items])

    def load(self, items: Sequence[Item]) -> None:
        for start in range(0, len(items), 1000):
            self._put(items[start:start + 1000])

    def add_one(self, item: Item) -> None:
        self._put([item])

    def add_batch(self, items: Sequence[Item]) -> None:
        self._put(items)

    def search_vector(self, text: str, vector: Sequence[float], field: str, value: str) -> list[str]:
        got = self.collection.query(query_embeddings=[vector], n_results=LIMIT, where={field: value},
                                    include=["metadatas", "documents", "distances"])
        return list(got["ids"][0])

    def search_text(self, text: str, field: str, value: str) -> list[str]:
        return self.search_vector(text, self.minilm.embed([text])[0], field, value)


class RawPgvector(System):
    """Hand-written psycopg SQL on one connection (autocommit; the pgvector adapter registered)."""

    store = "pgvector"
    kind = "raw"
    label = "raw psycopg"

    def __init__(self, conninfo: str, minilm: Embedder, table: str = "raw_items") -> None:
        import psycopg
        from pgvector.psycopg import register_vector

        self.minilm = minilm
        self.table = table
        self.conn: Any = psycopg.connect(conninfo, autocommit=True)
        self.conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(self.conn)
        self.conn.execute(f"DROP TABLE IF EXISTS {table}")
        self.conn.execute(f"CREATE TABLE {table} (id uuid PRIMARY KEY, text text NOT NULL, user_id text NOT NULL,"
                          f" agent_id text NOT NULL, metadata jsonb NOT NULL, embedding vector({DIMENSION}) NOT NULL)")
        self.conn.execute(f"CREATE INDEX ON {table} (user_id)")
        self.conn.execute(f"CREATE INDEX ON {table} (agent_id)")
        self.conn.execute(f"CREATE INDEX ON {table} USING hnsw (embedding vector_cosine_ops)"
                          f" WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})")
        self.conn.execute(f"SET hnsw.ef_search = {EF_SEARCH}")
        self.conn.execute("SET hnsw.iterative_scan = relaxed_order")
        self._queries = {field: (f"SELECT id, text, metadata, embedding <=> %s AS distance FROM {table}"
                                 f" WHERE {field} = %s ORDER BY embedding <=> %s LIMIT {LIMIT}")
                         for field in ("user_id", "agent_id")}

    def _put(self, items: Sequence[Item]) -> None:
        from psycopg.types.json import Jsonb

        with self.conn.transaction(), self.conn.cursor().copy(
                f"COPY {self.table} (id, text, user_id, agent_id, metadata, embedding) FROM STDIN") as copy:
            for i in items:
                copy.write_row((i.id, i.text, i.user_id, i.agent_id, Jsonb({"bucket": i.bucket}), i.vector))

    def load(self, items: Sequence[Item]) -> None:
        for start in range(0, len(items), 1000):
            self._put(items[start:start + 1000])

    def add_one(self, item: Item) -> None:
        from psycopg.types.json import Jsonb

        self.conn.execute(f"INSERT INTO {self.table} (id, text, user_id, agent_id, metadata, embedding)"
                          " VALUES (%s, %s, %s, %s, %s, %s)",
                          (item.id, item.text, item.user_id, item.agent_id, Jsonb({"bucket": item.bucket}),
                           item.vector))

    def add_batch(self, items: Sequence[Item]) -> None:
        self._put(items)

    def search_vector(self, text: str, vector: Sequence[float], field: str, value: str) -> list[str]:
        query = np.asarray(vector, dtype=np.float32)
        rows = self.conn.execute(self._queries[field], (query, value, query)).fetchall()
        return [str(row[0]) for row in rows]

    def search_text(self, text: str, field: str, value: str) -> list[str]:
        return self.search_vector(text, self.minilm.embed([text])[0], field, value)

    def close(self) -> None:
        self.conn.close()


class NumpyBrute(System):
    """Exact search in numpy: the floor for memory://."""

    store = "memory"
    kind = "raw"
    label = "raw numpy"

    def __init__(self, minilm: Embedder) -> None:
        self.minilm = minilm
        self.matrix = np.zeros((1024, DIMENSION), dtype=np.float32)
        self.size = 0
        self.ids: list[str] = []
        self.rows: dict[tuple[str, str], list[int]] = {}
        self._index: dict[tuple[str, str], np.ndarray] = {}

    def _put(self, items: Sequence[Item]) -> None:
        while self.size + len(items) > len(self.matrix):
            self.matrix = np.concatenate([self.matrix, np.zeros_like(self.matrix)])
        for item in items:
            self.matrix[self.size] = item.vector
            self.ids.append(item.id)
            for key in (("user_id", item.user_id), ("agent_id", item.agent_id)):
                self.rows.setdefault(key, []).append(self.size)
                self._index.pop(key, None)
            self.size += 1

    def load(self, items: Sequence[Item]) -> None:
        self._put(items)

    def add_one(self, item: Item) -> None:
        self._put([item])

    def add_batch(self, items: Sequence[Item]) -> None:
        self._put(items)

    def search_vector(self, text: str, vector: Sequence[float], field: str, value: str) -> list[str]:
        key = (field, value)
        rows = self._index.get(key)
        if rows is None:
            rows = self._index[key] = np.asarray(self.rows.get(key, []), dtype=np.int64)
        if len(rows) == 0:
            return []
        sims = self.matrix[rows] @ np.asarray(vector, dtype=np.float32)
        top = np.argpartition(-sims, LIMIT - 1)[:LIMIT] if len(rows) > LIMIT else np.arange(len(rows))
        best = top[np.argsort(-sims[top])]
        return [self.ids[rows[n]] for n in best]

    def search_text(self, text: str, field: str, value: str) -> list[str]:
        return self.search_vector(text, self.minilm.embed([text])[0], field, value)
