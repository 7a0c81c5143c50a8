"""memdock on top of a mem0 HTTP service: ``mem0+http://host:port[/base]?dialect=server|mem0ai-api|platform``
(``mem0+https://`` too). The API key comes from ``?api_key=`` or ``MEMDOCK_MEM0_API_KEY``.

The service embeds text itself (`SERVER_SIDE_EMBEDDING`) and assigns ids and times (`add` returns the
records as the service stored them). What a dialect lacks is emulated exactly or refused, and what each
dialect can promise is its own capability set (an opened backend is an instance of the dialect's subclass,
whose `capabilities` are `Dialect.capabilities`; the class itself declares what all dialects share):

- filters: the scope is sent to the service, every other condition is evaluated here with
  `memdock.filters.evaluate` (search asks for `max_items` candidates when a filter is given);
- list and count read the whole scope in one listing and page it here; a scope of `max_items` memories
  or more is refused with `Unsupported` (mem0's server and mem0ai-api cannot page), never truncated;
- dedup (`find_duplicate`) searches the scope for the text and compares memdock's own hash;
- metadata keys a service keeps for itself (its `Dialect.reserved_metadata`, and memdock's markers) are
  refused with `InvalidInput`, because the service would swallow or hide them;
- mem0 has no ``app_id``: a scope with one is refused. TTL is not offered (mem0 expiry is date-only).
"""

from __future__ import annotations

import builtins
import contextlib
import os
from collections.abc import Callable, Sequence
from typing import Any, Literal, Self, cast

from pydantic import Field, SecretStr

from memdock.backend import Backend, BackendSettings, BackendURL
from memdock.backends.mem0.dialects import SHARED_CAPABILITIES, Dialect, Message, PlatformDialect, ServerDialect
from memdock.backends.mem0.mem0ai_api import Mem0aiApiDialect
from memdock.backends.mem0.transport import Transport
from memdock.embedding import Embedder
from memdock.errors import InvalidInput, MemdockError
from memdock.extras import require_extra
from memdock.filters import Filter, evaluate
from memdock.formats.mem0 import NO_ROLE_MARKER, REMOVED_KEYS_MARKER
from memdock.hookspecs import hookimpl
from memdock.models import HistoryEvent, MemoryRecord, Page, Scope, SearchHit
from memdock.pagination import page_of

KEY_ENV = "MEMDOCK_MEM0_API_KEY"
DIALECT_ALIASES = {"oss": "server", "tonori": "mem0ai-api"}
"""Other names of the dialects: mem0's open-source server, and tonori's mem0ai-api."""
DIALECTS: dict[str, type[Dialect]] = {"server": ServerDialect, "mem0ai-api": Mem0aiApiDialect,
                                      "platform": PlatformDialect}
AUTH_HEADERS = {"server": ("X-API-Key", "{key}"), "mem0ai-api": ("Authorization", "Bearer {key}"),
                "platform": ("Authorization", "Token {key}")}
MARKERS = frozenset({NO_ROLE_MARKER, REMOVED_KEYS_MARKER})
DEDUP_CANDIDATES = 10


class Mem0Backend(Backend):
    """The memdock protocol over one mem0 dialect (see the module docstring)."""

    name = "mem0"
    description = "A mem0 HTTP service: mem0's server, the mem0ai-api wrapper, or mem0's platform."
    schemes = ("mem0+http", "mem0+https")
    secret_param = "api_key"
    capabilities = SHARED_CAPABILITIES

    class Settings(BackendSettings):
        """Where the service is, which dialect it speaks, and how patient to be."""

        base_url: str = Field(description="http(s)://host:port[/base path], from the mem0+http(s) URL")
        dialect: Literal["server", "mem0ai-api", "platform"] = "server"
        api_key: SecretStr | None = Field(default=None, description=f"else ${KEY_ENV}")
        timeout: float = Field(default=10.0, gt=0, le=600, description="seconds a call may take, retries included")
        retries: int = Field(default=2, ge=0, le=10, description="extra attempts for reads (never for writes)")
        max_items: int = Field(default=1000, ge=10, le=100000, description="longest listing asked for at once")
        server_embedder: str | None = Field(
            default=None, description="the memdock embedder the service embeds with, when known (e.g. hash): "
                                      "lets clients recompute its vectors and scores")

        @classmethod
        def from_url(cls, url: BackendURL) -> Self:
            """``mem0+http://host:port/base?dialect=...`` -> ``base_url=http://host:port/base``."""
            if not url.host:
                raise InvalidInput("mem0+http:// needs a host", field="host")
            scheme = "https" if url.scheme == "mem0+https" else "http"
            port = f":{url.port}" if url.port else ""
            if "base_url" in url.params:
                raise InvalidInput("the service address is the URL's host, port and path", field="base_url")
            data: dict[str, Any] = {**url.params, "base_url": f"{scheme}://{url.host}{port}{url.path.rstrip('/')}"}
            if data.get("dialect") in DIALECT_ALIASES:
                data["dialect"] = DIALECT_ALIASES[data["dialect"]]
            return cls.validated(data)

        def key(self) -> str | None:
            """The API key (URL parameter first, then the environment)."""
            if self.api_key is not None:
                return self.api_key.get_secret_value()
            return os.environ.get(KEY_ENV) or None

    def __new__(cls, settings: Mem0Backend.Settings, embedder: Embedder | None) -> Self:
        """An instance of the dialect's subclass (so `capabilities` are the dialect's)."""
        chosen = _BY_DIALECT.get(settings.dialect, cls) if cls is Mem0Backend else cls
        return cast(Self, object.__new__(chosen))

    def __init__(self, settings: Mem0Backend.Settings, embedder: Embedder | None) -> None:
        require_extra("mem0", "the mem0 backend", "httpx")
        key = settings.key()
        headers: dict[str, str] = {}
        if key:
            name, template = AUTH_HEADERS[settings.dialect]
            headers[name] = template.format(key=key)
        self._transport = Transport(settings.base_url, headers, dialect=settings.dialect, timeout=settings.timeout,
                                    retries=settings.retries, envelope=settings.dialect == "mem0ai-api")
        self._dialect: Dialect = DIALECTS[settings.dialect](self._transport, settings.max_items)
        self._server_embedder = settings.server_embedder
        try:
            self._dialect.check_credentials()
        except MemdockError:
            self._transport.close()
            raise

    def server_embedder(self) -> str | None:
        """The embedder named by ``server_embedder=`` (mem0 services do not say which they use)."""
        return self._server_embedder

    # -- helpers -------------------------------------------------------------------------------------------

    def _checked(self, metadata: dict[str, Any]) -> dict[str, Any]:
        """A copy of `metadata`; keys the service keeps for itself, and memdock's markers, are refused with
        `InvalidInput` (the service would swallow or hide them)."""
        for key in metadata:
            if key in self._dialect.reserved_metadata or key in MARKERS:
                raise InvalidInput(f"the key {key!r} is reserved by the mem0 {self._dialect.name} service",
                                   field=f"metadata.{key}")
        return dict(metadata)

    def _wire_metadata(self, metadata: dict[str, Any]) -> dict[str, Any]:
        """What to send as mem0 metadata (`_checked`): where every memory has a role, a role-less text
        carries a marker."""
        metadata = self._checked(metadata)
        if self._dialect.messages_have_roles and not isinstance(metadata.get("role"), str):
            return {**metadata, NO_ROLE_MARKER: True}
        return dict(metadata)

    def _scope_records(self, scope: Scope) -> list[MemoryRecord]:
        return [r for r in self._dialect.list_scope(scope) if scope.contains(r.scope)]

    # -- writes --------------------------------------------------------------------------------------------

    def add(self, records: Sequence[MemoryRecord]) -> list[MemoryRecord]:
        """One request per run of chat messages sharing scope and metadata (where the dialect takes several),
        else one per record. If a request fails, the memories this call stored are deleted before raising."""
        stored_ids: list[str] = []
        try:
            for batch in _batches(records, group=self._dialect.messages_have_roles):
                first = batch[0]
                messages: list[Message]
                if _role(first) is not None and self._dialect.messages_have_roles:
                    messages = [(_role(r), r.text) for r in batch]
                    metadata = self._checked({k: v for k, v in first.metadata.items() if k != "role"})
                else:
                    messages = [(None, first.text)]
                    metadata = self._wire_metadata(first.metadata)
                stored_ids += self._dialect.add(first.scope, messages, metadata or None)
        except MemdockError:
            for memory_id in stored_ids:
                with contextlib.suppress(MemdockError):
                    self._dialect.delete(memory_id)
            raise
        try:
            kept = self._dialect.get_many(stored_ids)
        except MemdockError:
            kept = {}
        return [self._as_stored(memory_id, record, kept.get(memory_id))
                for memory_id, record in zip(stored_ids, records, strict=True)]

    @staticmethod
    def _as_stored(memory_id: str, record: MemoryRecord, stored: MemoryRecord | None) -> MemoryRecord:
        """The record as the service keeps it (its id and times) when it could be read back, else as sent
        with the service's id."""
        if stored is None:
            return record.model_copy(update={"id": memory_id})
        return stored.model_copy(update={"hash": record.hash})

    def update(self, record: MemoryRecord) -> None:
        """Replace text and metadata (`MemoryNotFound` when the service no longer has it; `Unsupported` on
        a dialect that cannot update safely)."""
        self._dialect.update(record, self._wire_metadata(record.metadata))

    def delete(self, memory_ids: Sequence[str]) -> None:
        """Delete each; ids the service does not know are ignored."""
        for memory_id in memory_ids:
            self._dialect.delete(memory_id)

    def record_history(self, events: Sequence[HistoryEvent]) -> None:
        """Nothing: the service records its own history."""

    # -- reads ---------------------------------------------------------------------------------------------

    def get(self, memory_id: str) -> MemoryRecord | None:
        """The memory, or None."""
        return self._dialect.get(memory_id)

    def get_many(self, memory_ids: Sequence[str]) -> builtins.list[MemoryRecord]:
        """The memories with these ids (the dialect reads them together where it can)."""
        return builtins.list(self._dialect.get_many(builtins.list(memory_ids)).values())

    def find_by_hash(self, scope: Scope, text_hash: str) -> MemoryRecord | None:
        """A memory of exactly this scope and hash, by reading the whole scope (exact, but bounded by
        `max_items`); `Memory` uses the cheaper `find_duplicate`."""
        return next((r for r in self._scope_records(scope) if r.scope == scope and r.hash == text_hash), None)

    def find_duplicate(self, scope: Scope, text: str, text_hash: str) -> MemoryRecord | None:
        """A memory of exactly this scope and text: the service's search ranks an identical text first,
        so its best candidates are compared with memdock's own hash (mem0's hash differs). When every
        candidate is this text in a narrower scope (``user_id=u`` also finds ``u``'s agents' memories), the
        copy in exactly this scope may rank behind them: then the whole scope is read (`find_by_hash`). A
        dialect that can tell from a small search that it holds any copy (`Dialect.duplicate_candidates`)
        answers from it; otherwise the search asks for as many candidates as `search` does."""
        nearest = self._dialect.duplicate_candidates(text, scope)
        if nearest is None:
            nearest = self._dialect.search(text, scope, DEDUP_CANDIDATES)
        hits = _ranked(nearest)[:DEDUP_CANDIDATES]
        candidates = [h.record for h in hits]
        for record in candidates:
            if record.scope == scope and record.hash == text_hash:
                return record
        if len(candidates) >= DEDUP_CANDIDATES and all(r.hash == text_hash for r in candidates):
            return self.find_by_hash(scope, text_hash)
        return None

    def search(
        self, vector: Sequence[float] | None, text: str, scope: Scope, where: Filter | None, limit: int
    ) -> list[SearchHit]:
        """The service's search in the scope, ranked here by memdock's score; a filter is applied here
        over `max_items` candidates."""
        ask = limit if where is None else self._dialect.max_items
        hits = [hit for hit in self._dialect.search(text, scope, ask)
                if scope.contains(hit.record.scope) and (where is None or evaluate(where, hit.record))]
        return _ranked(hits)[:limit]

    def list(self, scope: Scope, where: Filter | None, limit: int, cursor: str | None) -> Page:
        """A page of the scope (read whole, filtered and paged here)."""
        records = self._scope_records(scope)
        return page_of([r for r in records if where is None or evaluate(where, r)], limit, cursor)

    def count(self, scope: Scope, where: Filter | None) -> int:
        """How many memories of the scope match."""
        return sum(1 for r in self._scope_records(scope) if where is None or evaluate(where, r))

    def history(self, memory_id: str) -> builtins.list[HistoryEvent]:
        """The service's events of one memory, oldest first. mem0's entries carry no scope: events take the
        memory's while it exists (a deleted memory's events have an empty scope)."""
        current = self._dialect.get(memory_id)
        return self._dialect.history(memory_id, current.scope if current is not None else None)

    def history_many(self, memory_ids: Sequence[str]) -> dict[str, builtins.list[HistoryEvent]]:
        """`history` of each id, the memories read together first (one listing of the service where the
        dialect's `get` reads one per id, as mem0ai-api's does), then one history request per id."""
        current = self._dialect.get_many(builtins.list(dict.fromkeys(memory_ids)))
        scopes = {memory_id: record.scope for memory_id, record in current.items()}
        return {memory_id: self._dialect.history(memory_id, scopes.get(memory_id)) for memory_id in memory_ids}

    def close(self) -> None:
        """Close the HTTP connections."""
        self._transport.close()


class _ServerBackend(Mem0Backend):
    """`Mem0Backend` over mem0's self-hosted server."""

    capabilities = ServerDialect.capabilities


class _Mem0aiApiBackend(Mem0Backend):
    """`Mem0Backend` over tonori/mem0ai-api."""

    capabilities = Mem0aiApiDialect.capabilities


class _PlatformBackend(Mem0Backend):
    """`Mem0Backend` over mem0's hosted platform."""

    capabilities = PlatformDialect.capabilities


_BY_DIALECT: dict[str, type[Mem0Backend]] = {"server": _ServerBackend, "mem0ai-api": _Mem0aiApiBackend,
                                             "platform": _PlatformBackend}


def _ranked(hits: builtins.list[SearchHit]) -> builtins.list[SearchHit]:
    return sorted(hits, key=lambda h: (-h.score, h.record.id))


def _role(record: MemoryRecord) -> str | None:
    role = record.metadata.get("role")
    return role if isinstance(role, str) else None


def _batches(records: Sequence[MemoryRecord], *, group: bool) -> list[list[MemoryRecord]]:
    """With `group`, runs of chat messages (string role) with the same scope and other metadata; else
    one record per batch."""
    batches: list[list[MemoryRecord]] = []
    for record in records:
        if group and batches and _same_conversation(batches[-1][0], record):
            batches[-1].append(record)
        else:
            batches.append([record])
    return batches


def _same_conversation(first: MemoryRecord, other: MemoryRecord) -> bool:
    def rest(r: MemoryRecord) -> dict[str, Any]:
        return {k: v for k, v in r.metadata.items() if k != "role"}

    return (_role(first) is not None and _role(other) is not None and first.scope == other.scope
            and rest(first) == rest(other))


@hookimpl
def register_backends(register: Callable[[type[Backend]], None]) -> None:
    """Register ``mem0+http://`` and ``mem0+https://``."""
    register(Mem0Backend)
