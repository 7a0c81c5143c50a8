"""PostgreSQL + pgvector: ``pgvector://user:pass@host:port/db?table=memdock`` (also ``postgresql://`` and
``postgres://``; a Unix-socket directory goes in ``?host=/run/postgresql``; the password may come from
the URL's netloc or ``?password=``, ``PGPASSWORD`` or ``~/.pgpass``, as libpq reads them).

This module is the backend's declaration and loads no driver; psycopg is imported when a backend opens
(`memdock.backends.pgvector.store` holds the implementation, `schema` the migrations, `sql` the filter
compiler).
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import Field, SecretStr

from memdock.backend import Backend, BackendSettings, BackendURL
from memdock.capabilities import Capability
from memdock.embedding import Embedder
from memdock.errors import InvalidInput
from memdock.extras import require_extra
from memdock.filters import Filter
from memdock.hookspecs import hookimpl
from memdock.models import HistoryEvent, MemoryRecord, Page, Scope, SearchHit

if TYPE_CHECKING:
    from memdock.backends.pgvector.store import PgvectorStore

CAPABILITIES = frozenset({
    Capability.FILTER_EQUALITY, Capability.FILTER_RANGE, Capability.CONTAINS, Capability.HISTORY,
    Capability.TTL, Capability.PERSISTENCE, Capability.NESTED_METADATA, Capability.CONCURRENT_WRITES,
    Capability.UPDATE, Capability.HISTORY_AFTER_DELETE, Capability.KEYWORD_SEARCH,
})
SSL_MODES = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
TABLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,39}$")


def check_table_name(name: str, field: str = "table") -> str:
    """A lower-case SQL identifier of at most 40 characters (so derived index names fit in 63)."""
    if not TABLE_NAME.match(name):
        raise InvalidInput("must be 1-40 characters of a-z, 0-9 and _, not starting with a digit", field=field)
    return name


class PgvectorBackend(Backend):
    """memdock records in one PostgreSQL table per namespace; every call goes to a `PgvectorStore`."""

    name = "pgvector"
    description = "PostgreSQL with pgvector (pgvector://user@host/db?table=memdock)."
    schemes = ("pgvector", "postgresql", "postgres")
    capabilities = CAPABILITIES
    namespace_param = "table"
    secret_param = "password"

    class Settings(BackendSettings):
        """Connection, namespace, pool and index settings (query parameters; host/port/db/user from the URL)."""

        host: str | None = Field(default=None, description="server host, or a Unix-socket directory")
        port: int | None = Field(default=None, ge=1, le=65535)
        dbname: str | None = None
        user: str | None = None
        password: SecretStr | None = Field(default=None, description="prefer PGPASSWORD or ~/.pgpass")
        table: str = Field(default="memdock", description="namespace: the table holding the memories")
        collection: str | None = Field(default=None, description="alias of table (the conformance kit sets it)")
        sslmode: SSL_MODES | None = None
        application_name: str = "memdock"
        connect_timeout: int = Field(default=5, ge=1, le=300, description="seconds to connect or wait for the pool")
        statement_timeout_ms: int = Field(default=30000, ge=0, description="0 = no limit")
        pool_min_size: int = Field(default=1, ge=0, le=100)
        pool_max_size: int = Field(default=10, ge=1, le=1000)
        hnsw_m: int = Field(default=16, ge=2, le=100, description="HNSW links per node (at table creation)")
        hnsw_ef_construction: int = Field(default=64, ge=4, le=1000, description="HNSW build width (at creation)")
        ef_search: int = Field(default=100, ge=1, le=1000, description="HNSW search width (raised to the limit)")
        iterative_scan: Literal["relaxed_order", "strict_order", "off"] = "relaxed_order"
        max_scan_tuples: int = Field(default=20000, ge=1, description="iterative scan budget (hnsw.max_scan_tuples)")
        exact_scan_rows: int = Field(
            default=20000, ge=0, le=1_000_000,
            description="a vector search in a scope of fewer rows ranks every row of the scope exactly; larger"
                        " scopes go through the HNSW index (0: always the index)")
        text_search: str = Field(
            default="memdock", pattern=r"^[a-z_][a-z0-9_]{0,62}$",
            description="keyword terms: 'memdock' (memdock's multilingual terms, the reference's ranking) or a"
                        " PostgreSQL text search configuration ('english', 'german', 'simple', ...)")

        @classmethod
        def from_url(cls, url: BackendURL) -> Self:
            """Host, port, database, user and password from the URL; everything else from the query."""
            data: dict[str, Any] = dict(url.params)
            for key, value in (("host", url.host), ("port", url.port), ("user", url.username),
                               ("password", url.password), ("dbname", url.path.lstrip("/") or None)):
                if value is not None and key not in data:
                    data[key] = value
            settings = cls.validated(data)
            if settings.collection is not None:
                if "table" in url.params and settings.table != settings.collection:
                    raise InvalidInput("table and collection name the same thing; give one", field="collection")
                settings = settings.model_copy(update={"table": settings.collection})
            check_table_name(settings.table)
            if settings.pool_min_size > settings.pool_max_size:
                raise InvalidInput("must not exceed pool_max_size", field="pool_min_size")
            return settings

        def conninfo(self) -> str:
            """The libpq connection string (holds the password: never log it). The search settings are
            session settings from the start (``options``), so a search needs no statement to set them."""
            options = (f"-c statement_timeout={self.statement_timeout_ms} -c hnsw.ef_search={self.ef_search}"
                       f" -c hnsw.iterative_scan={self.iterative_scan} -c hnsw.max_scan_tuples={self.max_scan_tuples}")
            parts: dict[str, Any] = {"host": self.host, "port": self.port, "dbname": self.dbname, "user": self.user,
                                     "sslmode": self.sslmode, "application_name": self.application_name,
                                     "connect_timeout": self.connect_timeout, "options": options}
            if self.password is not None:
                parts["password"] = self.password.get_secret_value()
            from psycopg.conninfo import make_conninfo

            return make_conninfo("", **{k: v for k, v in parts.items() if v is not None})

        def location(self) -> str:
            """Where the data is, without secrets."""
            user = f"{self.user}@" if self.user else ""
            if self.host and self.host.startswith("/"):  # a Unix-socket directory
                port = f"&port={self.port}" if self.port else ""
                return f"postgresql://{user}/{self.dbname or ''}?host={self.host}{port}&table={self.table}"
            port = f":{self.port}" if self.port else ""
            return f"postgresql://{user}{self.host or 'localhost'}{port}/{self.dbname or ''}?table={self.table}"

    def __init__(self, settings: PgvectorBackend.Settings, embedder: Embedder | None) -> None:
        if embedder is None:
            raise InvalidInput("the pgvector backend needs an embedder", field="embedder")
        require_extra("pgvector", "the pgvector backend", "psycopg", "psycopg_pool", "pgvector")
        from memdock.backends.pgvector.store import PgvectorStore

        self._store: PgvectorStore = PgvectorStore(settings, embedder, now=lambda: self.now())

    def add(self, records: Sequence[MemoryRecord]) -> None:
        """All records in one statement (all or nothing)."""
        self._store.add(records)

    def add_with_history(self, records: Sequence[MemoryRecord], events: Sequence[HistoryEvent]) -> None:
        """Records and their events in one statement, all or nothing; `WriteConflict` (nothing stored) when
        another writer stored one of the texts in the same scope since `Memory`'s duplicate check."""
        self._store.add_with_history(records, events)

    def get(self, memory_id: str) -> MemoryRecord | None:
        """The live record with this id."""
        return self._store.get(memory_id)

    def find_by_hash(self, scope: Scope, text_hash: str) -> MemoryRecord | None:
        """A live record of exactly `scope` with this hash."""
        return self._store.find_by_hash(scope, text_hash)

    def find_duplicates(self, wanted: Sequence[tuple[Scope, str, str]]) -> builtins.list[MemoryRecord | None]:
        """`find_by_hash` for every triple, in one query."""
        return self._store.find_duplicates(wanted)

    def update(self, record: MemoryRecord) -> None:
        """Replace the stored record."""
        self._store.update(record)

    def delete(self, memory_ids: Sequence[str]) -> None:
        """Delete these records."""
        self._store.delete(memory_ids)

    def reset(self) -> None:
        """Empty the namespace's table and its history."""
        self._store.reset()

    def search(
        self, vector: Sequence[float] | None, text: str, scope: Scope, where: Filter | None, limit: int
    ) -> builtins.list[SearchHit]:
        """Nearest records by cosine, re-ranked exactly."""
        return self._store.search(vector, text, scope, where, limit)

    def keyword_search(self, text: str, scope: Scope, where: Filter | None, limit: int) -> builtins.list[SearchHit]:
        """BM25 over the scope's matching live records, computed in one statement (with ``text_search=memdock``
        the reference's exact ranking and scores)."""
        return self._store.keyword_search(text, scope, where, limit)

    def hybrid_search(
        self, vector: Sequence[float] | None, text: str, scope: Scope, where: Filter | None, limit: int
    ) -> builtins.list[SearchHit]:
        """Cosine and keyword scores fused in one statement, over the vector top `limit` and every keyword
        match (the ranking of every candidate, see `memdock.backends.pgvector.keyword`)."""
        return self._store.hybrid_search(vector, text, scope, where, limit)

    def list(self, scope: Scope, where: Filter | None, limit: int, cursor: str | None) -> Page:
        """A keyset page ordered by (created_at, id)."""
        return self._store.list(scope, where, limit, cursor)

    def get_many(self, memory_ids: Sequence[str]) -> builtins.list[MemoryRecord]:
        """The live records with these ids, in one query."""
        return self._store.get_many(memory_ids)

    def history_many(self, memory_ids: Sequence[str]) -> dict[str, builtins.list[HistoryEvent]]:
        """Events of each memory, in one query."""
        return self._store.history_many(memory_ids)

    def count_every(self) -> int:
        """Number of live records of the table."""
        return self._store.count(Scope(), None)

    def list_every(self, limit: int, cursor: str | None, *, vectors: bool = False) -> Page:
        """A keyset page of every live record of the table, ordered by (created_at, id) (without vectors)."""
        return self._store.list(Scope(), None, limit, cursor)

    def count(self, scope: Scope, where: Filter | None) -> int:
        """Matching live records."""
        return self._store.count(scope, where)

    def record_history(self, events: Sequence[HistoryEvent]) -> None:
        """Append history events (COPY)."""
        self._store.record_history(events)

    def history(self, memory_id: str) -> builtins.list[HistoryEvent]:
        """Events of one memory, oldest first."""
        return self._store.history(memory_id)

    def close(self) -> None:
        """Release this backend's share of the connection pool."""
        self._store.close()



@hookimpl
def register_backends(register: Callable[[type[Backend]], None]) -> None:
    """Register ``pgvector://``, ``postgresql://`` and ``postgres://``."""
    register(PgvectorBackend)
