"""memdock on top of a mem0 HTTP service: ``mem0+http://host:port[/base]?dialect=server|mem0ai-api|platform``
(``mem0+https://`` too). The API key comes from ``?api_key=`` or ``MEMDOCK_MEM0_API_KEY``.

The service embeds text itself (`SERVER_SIDE_EMBEDDING`) and assigns ids and times (`add` returns the
records as the service stored them). What a dialect lacks is emulated exactly or refused:

- filters: the scope is sent to the service, every other condition is evaluated here with
  `memdock.filters.evaluate` (search asks for `max_items` candidates when a filter is given);
- list and count read the whole scope in one listing and page it here; a scope of `max_items` memories
  or more is refused with `Unsupported` (mem0's server and mem0ai-api cannot page), never truncated;
- dedup (`find_duplicate`) searches the scope for the text and compares memdock's own hash;
- get by id on mem0ai-api goes through the memory's history and a listing of its scope;
- mem0 has no ``app_id``: a scope with one is refused. TTL is not offered (mem0 expiry is date-only).
"""

from __future__ import annotations

import builtins
import contextlib
import os
from collections.abc import Callable, Sequence
from typing import Any, Literal, Self

from pydantic import Field, SecretStr

from memdock.backend import Backend, BackendSettings, BackendURL
from memdock.backends.mem0.dialects import AUTH_HEADERS, DIALECTS, Dialect, Item, Message, ScopeIds
from memdock.backends.mem0.transport import NotFoundAnswer, Transport
from memdock.capabilities import Capability
from memdock.embedding import Embedder
from memdock.errors import InvalidInput, MemdockError, MemoryNotFound, Unsupported
from memdock.extras import require_extra
from memdock.filters import Filter, evaluate
from memdock.formats.mem0 import NO_ROLE_MARKER, history_entry_to_event, item_score, item_to_record
from memdock.hookspecs import hookimpl
from memdock.models import HistoryEvent, MemoryRecord, Page, Scope, SearchHit
from memdock.pagination import page_of

KEY_ENV = "MEMDOCK_MEM0_API_KEY"
DIALECT_ALIASES = {"oss": "server", "tonori": "mem0ai-api"}
"""Other names of the dialects: mem0's open-source server, and tonori's mem0ai-api."""
DEDUP_CANDIDATES = 10
CAPABILITIES = frozenset({
    Capability.SERVER_SIDE_EMBEDDING, Capability.FILTER_EQUALITY, Capability.FILTER_RANGE, Capability.CONTAINS,
    Capability.HISTORY, Capability.PERSISTENCE, Capability.NESTED_METADATA, Capability.CONCURRENT_WRITES,
})


class Mem0Backend(Backend):
    """The memdock protocol over one mem0 dialect (see the module docstring)."""

    name = "mem0"
    description = "A mem0 HTTP service: mem0's server, the mem0ai-api wrapper, or mem0's platform."
    schemes = ("mem0+http", "mem0+https")
    secret_param = "api_key"
    capabilities = CAPABILITIES

    class Settings(BackendSettings):
        """Where the service is, which dialect it speaks, and how patient to be."""

        base_url: str = Field(description="http(s)://host:port[/base path], from the mem0+http(s) URL")
        dialect: Literal["server", "mem0ai-api", "platform"] = "server"
        api_key: SecretStr | None = Field(default=None, description=f"else ${KEY_ENV}")
        timeout: float = Field(default=10.0, gt=0, le=600, description="seconds a call may take, retries included")
        retries: int = Field(default=2, ge=0, le=10, description="extra attempts for reads (never for writes)")
        max_items: int = Field(default=1000, ge=10, le=100000, description="longest listing asked for at once")

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
        self._name = settings.dialect
        try:
            self._dialect.check_credentials()
        except MemdockError:
            self._transport.close()
            raise

    # -- helpers -------------------------------------------------------------------------------------------

    def _ids(self, scope: Scope) -> ScopeIds:
        if scope.app_id is not None:
            raise Unsupported(f"the mem0 {self._name} dialect has no app_id; use user_id, agent_id or run_id")
        return scope.ids()

    def _record(self, item: Item, scope: Scope | None = None) -> MemoryRecord:
        return item_to_record(item, self._name, fallback_scope=scope)

    def _wire_metadata(self, metadata: dict[str, Any]) -> dict[str, Any]:
        """What to send as mem0 metadata: where every memory has a role, a role-less text carries a marker."""
        if self._dialect.messages_have_roles and not isinstance(metadata.get("role"), str):
            return {**metadata, NO_ROLE_MARKER: True}
        return dict(metadata)

    def _scope_records(self, scope: Scope) -> list[MemoryRecord]:
        records = [self._record(item, scope) for item in self._dialect.list_scope(self._ids(scope))]
        return [r for r in records if scope.contains(r.scope)]

    # -- writes --------------------------------------------------------------------------------------------

    def add(self, records: Sequence[MemoryRecord]) -> list[MemoryRecord]:
        """One request per run of chat messages sharing scope and metadata (where the dialect takes several),
        else one per record. If a request fails, the memories this call stored are deleted before raising."""
        stored_ids: list[str] = []
        try:
            for batch in _batches(records, group=self._dialect.messages_have_roles):
                first = batch[0]
                messages: list[Message]
                if _role(first) is not None:
                    messages = [(_role(r), r.text) for r in batch]
                    metadata = {k: v for k, v in first.metadata.items() if k != "role"}
                else:
                    messages = [(None, first.text)]
                    metadata = self._wire_metadata(first.metadata)
                stored_ids += self._dialect.add(self._ids(first.scope), messages, metadata or None)
        except MemdockError:
            for memory_id in stored_ids:
                with contextlib.suppress(MemdockError):
                    self._dialect.delete(memory_id)
            raise
        return [self._as_stored(memory_id, record) for memory_id, record in zip(stored_ids, records, strict=True)]

    def _as_stored(self, memory_id: str, record: MemoryRecord) -> MemoryRecord:
        """The record as the service keeps it (its id and times), read back when the dialect can."""
        try:
            item = self._dialect.get(memory_id)
        except MemdockError:
            item = None
        if item is None:
            return record.model_copy(update={"id": memory_id})
        return self._record(item, record.scope).model_copy(update={"hash": record.hash})

    def update(self, record: MemoryRecord) -> None:
        """Replace text and metadata; `MemoryNotFound` when the service no longer has it."""
        try:
            self._dialect.update(record.id, record.text, self._wire_metadata(record.metadata))
        except NotFoundAnswer:
            raise MemoryNotFound(record.id) from None

    def delete(self, memory_ids: Sequence[str]) -> None:
        """Delete each; ids the service does not know are ignored."""
        for memory_id in memory_ids:
            self._dialect.delete(memory_id)

    def record_history(self, events: Sequence[HistoryEvent]) -> None:
        """Nothing: the service records its own history."""

    # -- reads ---------------------------------------------------------------------------------------------

    def get(self, memory_id: str) -> MemoryRecord | None:
        """The memory, or None."""
        item = self._dialect.get(memory_id)
        return None if item is None else self._record(item)

    def find_by_hash(self, scope: Scope, text_hash: str) -> MemoryRecord | None:
        """A memory of exactly this scope and hash, by reading the whole scope (exact, but bounded by
        `max_items`); `Memory` uses the cheaper `find_duplicate`."""
        return next((r for r in self._scope_records(scope) if r.scope == scope and r.hash == text_hash), None)

    def find_duplicate(self, scope: Scope, text: str, text_hash: str) -> MemoryRecord | None:
        """A memory of exactly this scope and text: the service's search ranks an identical text first,
        so its best candidates are compared with memdock's own hash (mem0's hash differs). When every
        candidate is this text in a narrower scope (``user_id=u`` also finds ``u``'s agents' memories), the
        copy in exactly this scope may rank behind them: then the whole scope is read (`find_by_hash`)."""
        candidates = [self._record(item, scope) for item in self._dialect.search(text, self._ids(scope),
                                                                                 DEDUP_CANDIDATES)]
        for record in candidates:
            if record.scope == scope and record.hash == text_hash:
                return record
        if len(candidates) >= DEDUP_CANDIDATES and all(r.hash == text_hash for r in candidates):
            return self.find_by_hash(scope, text_hash)
        return None

    def search(
        self, vector: Sequence[float] | None, text: str, scope: Scope, where: Filter | None, limit: int
    ) -> list[SearchHit]:
        """The service's search in the scope; a filter is applied here over `max_items` candidates."""
        ask = limit if where is None else self._dialect.max_items
        hits = []
        for item in self._dialect.search(text, self._ids(scope), ask):
            record = self._record(item, scope)
            if scope.contains(record.scope) and (where is None or evaluate(where, record)):
                hits.append(SearchHit(record=record, score=item_score(item, self._name)))
        hits.sort(key=lambda h: (-h.score, h.record.id))
        return hits[:limit]

    def list(self, scope: Scope, where: Filter | None, limit: int, cursor: str | None) -> Page:
        """A page of the scope (read whole, filtered and paged here)."""
        records = self._scope_records(scope)
        return page_of([r for r in records if where is None or evaluate(where, r)], limit, cursor)

    def count(self, scope: Scope, where: Filter | None) -> int:
        """How many memories of the scope match."""
        return sum(1 for r in self._scope_records(scope) if where is None or evaluate(where, r))

    def history(self, memory_id: str) -> builtins.list[HistoryEvent]:
        """The service's events of one memory, oldest first."""
        try:
            entries = self._dialect.history(memory_id)
        except NotFoundAnswer:
            return []
        scope = None
        if any(not any(isinstance(e.get(k), str) for k in ("user_id", "agent_id", "run_id")) for e in entries):
            current = self.get(memory_id)  # mem0 entries carry no scope: take the memory's, while it exists
            scope = current.scope if current is not None else None
        return [history_entry_to_event(entry, self._name, fallback_scope=scope) for entry in entries]

    def close(self) -> None:
        """Close the HTTP connections."""
        self._transport.close()


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
