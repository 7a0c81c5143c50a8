"""memdock's native HTTP API (mounted under ``/v1`` by default): every `Memory` operation, one route each.

Scope ids travel as query parameters on GET/DELETE and in the body on POST; filters are mem0-style JSON
(a query parameter holding JSON on GET/DELETE). Errors answer ``{"error": {"type", "message", "field"}}``
with 401/403 for auth, 404 for a missing memory, 400/422 for bad input, 501 for an operation the backend
does not support and 503 when the backend is unavailable. By-id routes answer 404 for a memory outside
the caller's scope, exactly as for a missing one.

Four routes exist for clients that are themselves memdock backends (``memdock+http://``, see
docs/memdock-http-backend.md): ``GET /info`` (what the server's backend declares and which embedder it
uses), ``POST /import`` (store records with the ids and times the client chose, all or nothing),
``POST /lookup`` (the memory of exactly this scope holding a text, or with a hash: dedup), ``POST /lookups``
(many of those in one request, answered in order) and
``POST /reset`` (body ``{"confirm": true}``; only with ``--allow-reset`` and an unrestricted key, else 403).
They keep the same auth and scope confinement as the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from memdock.capabilities import Capability
from memdock.dify_adapter.server.access import (
    Caller,
    CallerDep,
    ConfigDep,
    Forbidden,
    MemoryDep,
    owned_history,
    owned_record,
    request_caller,
)
from memdock.dify_adapter.server.errors import native_error, translating_route
from memdock.errors import BackendUnavailable, InvalidInput, MemdockError, MemoryNotFound, Unsupported
from memdock.filters import parse_filter_text
from memdock.memory import Memory
from memdock.models import SCOPE_FIELDS, EventKind, HistoryEvent, MemoryRecord, Scope, SearchHit, WriteResult
from memdock.validation import MAX_LIMIT, check_text, make_scope, text_hash

# -- shapes ------------------------------------------------------------------------------------------------


class ScopeIds(BaseModel):
    """Scope ids of a write or read; at least one is needed."""

    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None
    app_id: str | None = None


class Message(BaseModel):
    """One chat message; system messages are not stored."""

    role: Literal["system", "user", "assistant"]
    content: str


class AddRequest(ScopeIds):
    """Store ``text``, or one memory per non-system message of ``messages`` (exactly one of the two)."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = None
    messages: list[Message] | None = None
    metadata: dict[str, Any] | None = None
    expires_at: datetime | None = Field(default=None, description="timezone-aware; needs a TTL backend")

    @model_validator(mode="after")
    def _one_payload(self) -> AddRequest:
        if (self.text is None) == (self.messages is None):
            raise ValueError("give exactly one of text and messages")
        return self


class NativeSearchRequest(ScopeIds):
    """Find the memories most similar to ``query`` in the scope."""

    model_config = ConfigDict(extra="forbid")

    query: str
    filter: dict[str, Any] | None = Field(default=None, description='mem0-style, e.g. {"rating": {"gte": 4}}')
    limit: int = Field(default=10, ge=1, le=MAX_LIMIT)
    threshold: float | None = Field(default=None, ge=0.0, le=1.0, description="minimum score")
    mode: Literal["hybrid", "vector", "keyword"] | None = Field(
        default=None, description="what to rank by: hybrid (0.5 x vector + 0.5 x keyword score), vector (cosine) or "
        "keyword (BM25 / the query's bound); default hybrid where the backend has keyword search (GET /v1/info "
        "lists keyword_search), else vector; another mode there answers 501")


class UpdateRequest(BaseModel):
    """New text and/or metadata (metadata replaces the old one)."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = None
    metadata: dict[str, Any] | None = None


class MemoryOut(BaseModel):
    """A memory as the API shows it."""

    id: str
    text: str
    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None
    app_id: str | None = None
    metadata: dict[str, Any]
    hash: str
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None = None

    @classmethod
    def of(cls, record: MemoryRecord) -> MemoryOut:
        """From a core record."""
        return cls(id=record.id, text=record.text, **record.scope.ids(), metadata=record.metadata, hash=record.hash,
                   created_at=record.created_at, updated_at=record.updated_at, expires_at=record.expires_at)


class WriteOut(BaseModel):
    """What a write did (ADD, UPDATE, DELETE, or NONE when nothing changed) and the memory."""

    event: EventKind
    memory: MemoryOut

    @classmethod
    def of(cls, result: WriteResult) -> WriteOut:
        """From a core write result."""
        return cls(event=result.event, memory=MemoryOut.of(result.record))


class AddResponse(BaseModel):
    """One result per stored text or message, in order."""

    results: list[WriteOut]


class HitOut(BaseModel):
    """A search result: ``score`` is a similarity in [0, 1], higher is more similar."""

    score: float
    memory: MemoryOut


class SearchResponse(BaseModel):
    """Best first."""

    results: list[HitOut]


class PageResponse(BaseModel):
    """Oldest first; pass ``next_cursor`` back as ``cursor`` for the next page (null on the last)."""

    items: list[MemoryOut]
    next_cursor: str | None


class CountResponse(BaseModel):
    """How many memories match."""

    count: int


class DeletedResponse(BaseModel):
    """How many memories were deleted."""

    deleted: int


class HistoryResponse(BaseModel):
    """Events of one memory, oldest first."""

    events: list[HistoryEvent]


class EmbedderOut(BaseModel):
    """The embedder the server's memories are embedded with: ``name`` is what ``embedder=`` takes."""

    name: str
    dimension: int | None = None
    identity: str | None = None


class InfoResponse(BaseModel):
    """What the server's backend is and declares (no URL, no secret)."""

    backend: str
    capabilities: list[Capability]
    embedder: EmbedderOut | None = Field(description="null when the backend embeds with an unnamed model")
    reset: bool = Field(description="whether POST /reset is enabled (--allow-reset) for this key")
    version: str


class RecordIn(ScopeIds):
    """A memory as a client backend stamped it: its id and times are kept (the hash is recomputed)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=256)
    text: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: AwareDatetime
    updated_at: AwareDatetime
    expires_at: AwareDatetime | None = Field(default=None, description="needs a TTL backend")


class ImportRequest(BaseModel):
    """Records to store as given, all or nothing; one already stored (same id, or same text in the same
    scope) comes back with event NONE."""

    model_config = ConfigDict(extra="forbid")

    records: list[RecordIn] = Field(min_length=1, max_length=MAX_LIMIT)


class LookupRequest(ScopeIds):
    """Which memory of EXACTLY this scope (every id, set or not) holds ``text``, or has the memdock hash
    ``hash`` (sha256 hex of the text with white space folded); exactly one of the two."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = None
    hash: str | None = Field(default=None, pattern="^[0-9a-f]{64}$")

    @model_validator(mode="after")
    def _one_key(self) -> LookupRequest:
        if (self.text is None) == (self.hash is None):
            raise ValueError("give exactly one of text and hash")
        return self


class LookupResponse(BaseModel):
    """The memory holding the text, or null."""

    memory: MemoryOut | None


class LookupsRequest(BaseModel):
    """Many lookups in one request (a migration's duplicate check for a whole batch), answered in order."""

    model_config = ConfigDict(extra="forbid")

    lookups: list[LookupRequest] = Field(min_length=1, max_length=MAX_LIMIT)


class LookupsResponse(BaseModel):
    """One answer per lookup, in order: the memory, or null."""

    memories: list[MemoryOut | None]


class ResetRequest(BaseModel):
    """``{"confirm": true}``: a reset is never an accident."""

    model_config = ConfigDict(extra="forbid")

    confirm: Literal[True]


class ResetResponse(BaseModel):
    """Every memory of every scope, and their history, was deleted."""

    reset: bool


class ErrorBody(BaseModel):
    """``{"type", "message", "field"}``; field is the offending input when known."""

    type: str
    message: str
    field: str | None = None


class ErrorResponse(BaseModel):
    """Every error answer of the native API."""

    error: ErrorBody
    request_id: str | None = None


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in ((400, "malformed request"), (401, "missing or unknown API key"),
                         (403, "the key may not access this scope"), (404, "no such memory in the caller's scope"),
                         (413, "request body too large"), (422, "invalid input"), (501, "not supported by the backend"),
                         (503, "backend unavailable"))
}


# -- dependencies ------------------------------------------------------------------------------------------


def scope_query(
    user_id: str | None = None, agent_id: str | None = None, run_id: str | None = None, app_id: str | None = None
) -> ScopeIds:
    """Scope ids from the query string."""
    return ScopeIds(user_id=user_id, agent_id=agent_id, run_id=run_id, app_id=app_id)


def filter_query(filter: Annotated[str | None, Query(description="mem0-style filter as JSON")] = None) -> Any:
    """The ``filter`` query parameter, parsed; `InvalidFilter` (field ``filter``) when it is not JSON or
    nests too deeply to parse."""
    return None if filter is None else parse_filter_text(filter)


ScopeDep = Annotated[ScopeIds, Depends(scope_query)]
FilterDep = Annotated[Any, Depends(filter_query)]


def _ids(ids: ScopeIds) -> dict[str, str | None]:
    return {name: getattr(ids, name) for name in SCOPE_FIELDS}


def _scope(ids: ScopeIds, caller: Caller) -> Scope:
    return caller.require(make_scope(None, _ids(ids), required=True))


def _optional_scope(ids: ScopeIds) -> Scope | None:
    scope = make_scope(None, _ids(ids), required=False)
    return None if scope.is_empty() else scope


def _owned(memory: Memory, memory_id: str, ids: ScopeIds, caller: Caller) -> MemoryRecord:
    """The memory, if it lies in the requested scope (when given) and the caller may see it (a foreign id is
    answered as a missing one, by the same path: `access.owned_record`)."""
    return owned_record(memory, caller, memory_id, _optional_scope(ids))


# -- routes ------------------------------------------------------------------------------------------------


router = APIRouter(route_class=translating_route(native_error), tags=["memories"], responses=ERRORS,
                   dependencies=[Depends(request_caller)])
"""The native API's routes, relative to its mount point (``/v1`` by default). Route functions carry no
docstrings: FastAPI would publish them as descriptions in the OpenAPI document."""


@router.post("/memories", status_code=201, response_model=AddResponse, summary="Add memories")
def add(body: AddRequest, memory: MemoryDep, caller: CallerDep) -> AddResponse:
    scope = _scope(body, caller)
    data: Any = body.text if body.text is not None else [m.model_dump() for m in body.messages or []]
    results = memory.add(data, scope=scope, metadata=body.metadata, expires_at=body.expires_at)
    return AddResponse(results=[WriteOut.of(r) for r in results])


@router.get("/memories", response_model=PageResponse, summary="List memories in a scope, oldest first")
def list_memories(
    memory: MemoryDep, caller: CallerDep, ids: ScopeDep, where: FilterDep,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100, cursor: str | None = None,
) -> PageResponse:
    page = memory.list(scope=_scope(ids, caller), filter=where, limit=limit, cursor=cursor)
    return PageResponse(items=[MemoryOut.of(r) for r in page.items], next_cursor=page.next_cursor)


@router.delete("/memories", response_model=DeletedResponse, summary="Delete every memory in a scope")
def delete_all(memory: MemoryDep, caller: CallerDep, ids: ScopeDep, where: FilterDep) -> DeletedResponse:
    return DeletedResponse(deleted=memory.delete_all(scope=_scope(ids, caller), filter=where))


@router.post("/search", response_model=SearchResponse, summary="Search memories by similarity")
def search(body: NativeSearchRequest, memory: MemoryDep, caller: CallerDep) -> SearchResponse:
    hits = memory.search(body.query, scope=_scope(body, caller), filter=body.filter, limit=body.limit,
                         threshold=body.threshold, mode=body.mode)
    return SearchResponse(results=[_hit(h) for h in hits])


@router.get("/count", response_model=CountResponse, summary="Count memories in a scope")
def count(memory: MemoryDep, caller: CallerDep, ids: ScopeDep, where: FilterDep) -> CountResponse:
    return CountResponse(count=memory.count(scope=_scope(ids, caller), filter=where))


@router.get("/memories/{memory_id}", response_model=MemoryOut, summary="Get one memory")
def get(memory_id: str, memory: MemoryDep, caller: CallerDep, ids: ScopeDep) -> MemoryOut:
    return MemoryOut.of(_owned(memory, memory_id, ids, caller))


@router.patch("/memories/{memory_id}", response_model=WriteOut, summary="Change a memory's text and/or metadata")
def update(memory_id: str, body: UpdateRequest, memory: MemoryDep, caller: CallerDep, ids: ScopeDep) -> WriteOut:
    record = _owned(memory, memory_id, ids, caller)
    return WriteOut.of(memory.update(record.id, text=body.text, metadata=body.metadata, scope=record.scope))


@router.delete("/memories/{memory_id}", response_model=WriteOut, summary="Delete one memory")
def delete(memory_id: str, memory: MemoryDep, caller: CallerDep, ids: ScopeDep) -> WriteOut:
    record = _owned(memory, memory_id, ids, caller)
    return WriteOut.of(memory.delete(record.id, scope=record.scope))


@router.get("/memories/{memory_id}/history", response_model=HistoryResponse, summary="A memory's events")
def history(memory_id: str, memory: MemoryDep, caller: CallerDep, ids: ScopeDep) -> HistoryResponse:
    return HistoryResponse(events=owned_history(memory, caller, memory_id, _optional_scope(ids)))


@router.get("/info", response_model=InfoResponse, summary="The server's backend: its capabilities and embedder")
def info(request: Request, memory: MemoryDep, caller: CallerDep, config: ConfigDep) -> InfoResponse:
    return InfoResponse(backend=memory.backend.name, capabilities=sorted(memory.capabilities),
                        embedder=_embedder_of(memory), reset=config.allow_reset and caller.unrestricted,
                        version=request.app.version)


@router.post("/import", status_code=201, response_model=AddResponse,
             summary="Store records with their own ids and times")
def import_records(body: ImportRequest, memory: MemoryDep, caller: CallerDep) -> AddResponse:
    records = [_record_in(memory, index, item, caller) for index, item in enumerate(body.records)]
    return AddResponse(results=[WriteOut.of(r) for r in memory.import_(records)])


@router.post("/lookup", response_model=LookupResponse, summary="The memory of exactly this scope holding a text")
def lookup(body: LookupRequest, memory: MemoryDep, caller: CallerDep) -> LookupResponse:
    scope = _scope(body, caller)
    if body.text is not None:
        text = check_text(body.text)
        found = _backend_call(memory, lambda: memory.backend.find_duplicate(scope, text, text_hash(text)))
    else:
        digest = str(body.hash)
        found = _backend_call(memory, lambda: memory.backend.find_by_hash(scope, digest))
    return LookupResponse(memory=None if found is None else MemoryOut.of(found))


@router.post("/lookups", response_model=LookupsResponse, summary="Many lookups (as /lookup) in one request")
def lookups(body: LookupsRequest, memory: MemoryDep, caller: CallerDep) -> LookupsResponse:
    scopes = [_scope(item, caller) for item in body.lookups]
    texts = {n: check_text(item.text, field=f"lookups[{n}].text")
             for n, item in enumerate(body.lookups) if item.text is not None}
    wanted = [(scopes[n], text, text_hash(text)) for n, text in texts.items()]
    found = dict(zip(texts, _backend_call(memory, lambda: memory.backend.find_duplicates(wanted)), strict=True))
    hashed = [(n, scopes[n], item.hash) for n, item in enumerate(body.lookups) if item.hash is not None]
    found.update(_backend_call(memory, lambda: {n: memory.backend.find_by_hash(scope, digest)
                                                for n, scope, digest in hashed}))
    return LookupsResponse(memories=[None if (r := found[n]) is None else MemoryOut.of(r)
                                     for n in range(len(body.lookups))])


@router.post("/reset", response_model=ResetResponse, summary="Delete every memory of every scope (opt-in)")
def reset(body: ResetRequest, memory: MemoryDep, caller: CallerDep, config: ConfigDep) -> ResetResponse:
    if not config.allow_reset:
        raise Forbidden("reset is disabled on this server (start it with --allow-reset)")
    if not caller.unrestricted:
        raise Forbidden("reset needs an unrestricted API key")
    memory.reset()
    return ResetResponse(reset=True)


def _embedder_of(memory: Memory) -> EmbedderOut | None:
    if memory.embedder is not None:
        return EmbedderOut(name=memory.embedder.name, dimension=memory.embedder.dimension,
                           identity=memory.embedder.identity)
    name = _backend_call(memory, memory.backend.server_embedder)
    return None if name is None else EmbedderOut(name=name)


def _record_in(memory: Memory, index: int, item: RecordIn, caller: Caller) -> MemoryRecord:
    """A core record from an imported one, once the caller may write its scope, its id is not a memory of
    another scope (one of the same scope comes back from `Memory.import_` with event NONE), and its expiry
    (if any) can be honoured."""
    if not item.id.strip():
        raise InvalidInput("must not be blank", field=f"records[{index}].id")
    scope = caller.require(make_scope(None, _ids(item), required=True))
    if item.expires_at is not None and Capability.TTL not in memory.capabilities:
        raise Unsupported(f"{memory.name} does not honour expires_at (no TTL capability)")
    try:
        existing = memory.get(item.id)
    except MemoryNotFound:
        existing = None
    if existing is not None and existing.scope != scope:
        raise InvalidInput("a memory of another scope has this id", field=f"records[{index}].id")
    return MemoryRecord(id=item.id, text=item.text, scope=scope, metadata=item.metadata, hash="",
                        created_at=item.created_at, updated_at=item.updated_at, expires_at=item.expires_at)


def _backend_call[T](memory: Memory, operation: Callable[[], T]) -> T:
    """A direct backend call (one `Memory` does not offer), with `Memory`'s rule: anything but a memdock
    error becomes `BackendUnavailable`."""
    try:
        return operation()
    except MemdockError:
        raise
    except Exception as exc:
        raise BackendUnavailable(f"{memory.name} failed: {type(exc).__name__}") from exc


def _hit(hit: SearchHit) -> HitOut:
    return HitOut(score=hit.score, memory=MemoryOut.of(hit.record))
