"""The self-hosted mem0 server's REST dialect (mounted under ``/mem0`` by default), answered by memdock.

An app or plugin built for mem0's server works against memdock by changing its base URL. Shapes follow
exchanges recorded with mem0's real self-hosted server: ``POST /memories`` ->
``{"results": [{"id", "memory", "event", ...}]}``; a missing id on ``GET /memories/{id}``
answers 200 with ``null``; history is a bare list and survives deletion; errors are ``{"detail": ...}``
(400 bad input, a body that is not UTF-8 included; 401 no or wrong key with ``WWW-Authenticate: Bearer``;
403 a scope the key may not touch; 404 missing; 422 malformed body, FastAPI's list). Each route declares
the statuses it answers (`errors`), so the OpenAPI document lists every one.

As the server does: ``""`` for a scope id means absent; search defaults to ``top_k`` 20 and a threshold of
0.1 on the semantic score (memdock's score: the clamped cosine), ``top_k: 0`` finds nothing and ``explain:
true`` adds ``score_details``; a list defaults to 20 (``top_k=0`` answers one item, as the server does);
``PUT`` MERGES the given metadata into the stored one (keys are never removed; ``{}`` changes nothing) and a
memory keeps its ``role``; an add that does not say ``infer: false`` answers ``{"id", "memory", "event"}``.

Where memdock differs, on purpose (docs/server.md lists every difference): messages are always stored
verbatim (``infer`` is accepted and ignored: memdock calls no LLM); a request with no scope id is refused
(400) instead of listing every user's memories; an unknown id answers as missing instead of 502; the score
is the semantic score alone (the server blends in BM25 when a keyword matches); backend outages answer 503.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, field_validator
from starlette.responses import Response

from memdock.dify_adapter.server.access import (
    Caller,
    CallerDep,
    ConfigDep,
    Forbidden,
    MemoryDep,
    Unauthenticated,
    owned_history,
    owned_record,
    request_caller,
)
from memdock.dify_adapter.server.config import ServerConfig
from memdock.dify_adapter.server.errors import headers_for, status_of, translating_route, validation_errors
from memdock.errors import InvalidInput, MemoryNotFound
from memdock.filters import Filter, parse_mem0_filter
from memdock.formats.mem0 import (
    MEM0_SCOPE_FIELDS,
    NO_ROLE_MARKER,
    REMOVED_KEYS_MARKER,
    add_result_items,
    event_to_history_entry,
    record_to_item,
)
from memdock.memory import Memory
from memdock.models import MemoryRecord, Scope
from memdock.validation import MAX_LIMIT, check_threshold, make_scope

NO_SCOPE = "At least one identifier (user_id, agent_id, run_id) is required."
NO_SEARCH_SCOPE = "filters must contain at least one of: user_id, agent_id, run_id. Example: filters={'user_id': 'u1'}"
DEFAULT_TOP_K = 20
"""The server's default ``top_k`` for lists and searches."""
DEFAULT_THRESHOLD = 0.1
"""The server's default minimum semantic score of a search hit."""


def blank_is_absent(value: Any) -> Any:
    """``""`` -> None: the server treats a falsy scope id as absent."""
    return None if value == "" else value


class Mem0Message(BaseModel):
    """A chat message as mem0 takes it (extra keys such as ``name`` are ignored, as mem0 does)."""

    role: str
    content: str


class Mem0AddRequest(BaseModel):
    """``POST /memories``."""

    model_config = ConfigDict(extra="ignore")

    messages: list[Mem0Message]
    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None
    metadata: dict[str, Any] | None = None
    infer: bool | None = None
    expiration_date: str | None = None
    memory_type: str | None = None

    _blank_ids = field_validator("user_id", "agent_id", "run_id", mode="before")(blank_is_absent)


class Mem0SearchRequest(BaseModel):
    """``POST /search``: scope ids belong inside ``filters`` (top-level ids are accepted, deprecated)."""

    model_config = ConfigDict(extra="ignore")

    query: str
    filters: dict[str, Any] | None = None
    top_k: int | None = None
    limit: int | None = None
    threshold: float | None = None
    explain: bool | None = None
    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None

    _blank_ids = field_validator("user_id", "agent_id", "run_id", mode="before")(blank_is_absent)


class Mem0UpdateRequest(BaseModel):
    """``PUT /memories/{id}``."""

    model_config = ConfigDict(extra="ignore")

    text: str | None = None
    metadata: dict[str, Any] | None = None
    expiration_date: str | None = None


class Mem0Error(BaseModel):
    """Every error answer of the dialect but a malformed body's: ``{"detail": "<message>"}``."""

    detail: str


ERROR_TEXT = {
    400: "bad input (no scope id, a bad value, a body that is not UTF-8 JSON)",
    401: "missing or unknown API key (with WWW-Authenticate: Bearer)",
    403: "the key may not access this scope, or reset is disabled",
    404: "no such memory in the caller's scope",
    413: "request body too large",
    501: "not supported by the backend",
    502: "the backend refused memdock's credentials",
    503: "backend unavailable (with Retry-After)",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses, each answered as `Mem0Error`."""
    return {status: {"model": Mem0Error, "description": ERROR_TEXT[status]} for status in statuses}


def mem0_server_error(request: Request, exc: Exception) -> Response:
    """mem0's error bodies: ``{"detail": ...}``; request validation keeps FastAPI's detail list."""
    if isinstance(exc, RequestValidationError):
        return JSONResponse({"detail": validation_errors(exc)}, status_code=422)
    status = status_of(exc)
    if isinstance(exc, InvalidInput) and status == 422:  # the server answers bad input with 400
        status = 400
    detail = str(exc)
    if isinstance(exc, MemoryNotFound):
        detail = f"Memory with id {exc.memory_id} not found"
    elif isinstance(exc, Unauthenticated):
        detail = "Authentication required. Provide a Bearer token or X-API-Key header."
    return JSONResponse({"detail": detail}, status_code=status, headers=headers_for(status))


def expiry_of(expiration_date: str | None) -> datetime | None:
    """mem0's ``expiration_date`` (YYYY-MM-DD): the memory lives through that day (UTC)."""
    if expiration_date is None:
        return None
    try:
        day = date.fromisoformat(expiration_date)
    except ValueError:
        raise InvalidInput("expiration_date must be a valid date in YYYY-MM-DD format.",
                           field="expiration_date") from None
    return datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)


def without_marker(metadata: dict[str, Any] | None) -> tuple[dict[str, Any] | None, bool]:
    """The metadata without the mem0 backend's `NO_ROLE_MARKER`, and whether the marker was set."""
    if metadata is None or NO_ROLE_MARKER not in metadata:
        return metadata, False
    rest = {k: v for k, v in metadata.items() if k != NO_ROLE_MARKER}
    return rest, metadata[NO_ROLE_MARKER] is True


def without_removed_keys(metadata: dict[str, Any] | None) -> tuple[dict[str, Any] | None, frozenset[str]]:
    """The metadata without the mem0 backend's `REMOVED_KEYS_MARKER`, and the key names it lists (which that
    backend means to be gone: memdock removes them instead of storing the marker). `InvalidInput` when the
    marker is not a list of strings."""
    if metadata is None or REMOVED_KEYS_MARKER not in metadata:
        return metadata, frozenset()
    removed = metadata[REMOVED_KEYS_MARKER]
    if not isinstance(removed, list) or not all(isinstance(key, str) for key in removed):
        raise InvalidInput("must be a list of key names", field=f"metadata.{REMOVED_KEYS_MARKER}")
    return {k: v for k, v in metadata.items() if k != REMOVED_KEYS_MARKER}, frozenset(removed)


def split_filters(filters: dict[str, Any] | None, top_level: dict[str, str | None]) -> tuple[Scope, Filter | None]:
    """mem0 puts scope ids inside ``filters``: take the top-level string ids out as the scope, keep the
    rest as a memdock filter. Deprecated top-level request ids are merged in."""
    rest = dict(filters or {})
    ids: dict[str, Any] = {k: v for k, v in top_level.items() if v}
    for name in (*MEM0_SCOPE_FIELDS, "app_id"):
        if isinstance(rest.get(name), str):
            value = rest.pop(name)
            if value:
                ids[name] = value
    scope = make_scope(None, ids, required=False)
    if scope.is_empty():
        raise InvalidInput(NO_SEARCH_SCOPE, field="filters")
    return scope, parse_mem0_filter(rest) if rest else None


def scope_from(caller: Caller, **ids: str | None) -> Scope:
    """The scope named by mem0's id parameters (``""`` = absent); `InvalidInput` when none is given,
    `Forbidden` when the caller's key may not touch it."""
    scope = make_scope(None, {k: blank_is_absent(v) for k, v in ids.items()}, required=False)
    if scope.is_empty():
        raise InvalidInput(NO_SCOPE, field="scope")
    return caller.require(scope)


def visible(memory: Memory, caller: Caller, memory_id: str) -> MemoryRecord | None:
    """The memory with this id if it exists and the caller may see it; otherwise None (never a hint
    that a memory of another scope exists: `access.owned_record` treats both alike)."""
    try:
        return owned_record(memory, caller, memory_id)
    except MemoryNotFound:
        return None


router = APIRouter(route_class=translating_route(mem0_server_error), tags=["mem0 server dialect"],
                   dependencies=[Depends(request_caller)], responses=errors(401, 413, 502, 503))
"""The mem0 server dialect's routes, relative to its mount point (``/mem0`` by default). Route functions
carry no docstrings: FastAPI would publish them as descriptions in the OpenAPI document."""


@router.post("/memories", summary="Add memories (stored verbatim)", responses=errors(400, 403, 501))
def add(body: Mem0AddRequest, memory: MemoryDep, caller: CallerDep) -> dict[str, Any]:
    scope = scope_from(caller, user_id=body.user_id, agent_id=body.agent_id, run_id=body.run_id)
    if body.memory_type is not None:
        raise InvalidInput("memory_type needs an LLM; memdock stores messages verbatim", field="memory_type")
    expires_at = expiry_of(body.expiration_date)
    marked, no_role = without_marker(body.metadata)
    metadata = without_removed_keys(marked)[0]
    messages = [m.model_dump() for m in body.messages if m.role != "system"]
    if not messages:
        return {"results": []}
    if no_role and len(messages) == 1:  # a memdock text stored through this dialect keeps having no role
        results = memory.add(messages[0]["content"], scope=scope, metadata=metadata, expires_at=expires_at)
    else:
        results = memory.add(messages, scope=scope, metadata=metadata, expires_at=expires_at)
    return {"results": add_result_items(results, inferred=body.infer is not False)}


@router.get("/memories", summary="List memories in a scope", responses=errors(400, 403))
def list_memories(
    memory: MemoryDep, caller: CallerDep, user_id: str | None = None, agent_id: str | None = None,
    run_id: str | None = None, top_k: Annotated[int, Query(ge=0, le=MAX_LIMIT)] = DEFAULT_TOP_K,
) -> dict[str, Any]:
    scope = scope_from(caller, user_id=user_id, agent_id=agent_id, run_id=run_id)
    page = memory.list(scope=scope, limit=max(top_k, 1))  # the server answers one item to top_k=0
    return {"results": [record_to_item(r) for r in page.items]}


@router.delete("/memories", summary="Delete every memory in a scope", responses=errors(400, 403))
def delete_all(
    memory: MemoryDep, caller: CallerDep, user_id: str | None = None, agent_id: str | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    scope = scope_from(caller, user_id=user_id, agent_id=agent_id, run_id=run_id)
    memory.delete_all(scope=scope)
    return {"message": "All relevant memories deleted"}


@router.get("/memories/{memory_id}", summary="Get one memory (null when missing)", responses=errors(400))
def get(memory_id: str, memory: MemoryDep, caller: CallerDep) -> Any:
    record = visible(memory, caller, memory_id)
    return None if record is None else {**record_to_item(record), "score": None}


@router.put("/memories/{memory_id}", summary="Update a memory's text and/or metadata", responses=errors(400, 404))
def update(memory_id: str, body: Mem0UpdateRequest, memory: MemoryDep, caller: CallerDep) -> dict[str, Any]:
    if body.text is None and body.metadata is None and body.expiration_date is None:
        raise InvalidInput("At least one of text, metadata, or expiration_date must be provided.", field="body")
    if body.expiration_date is not None:
        raise InvalidInput("memdock cannot change the expiration_date of a stored memory", field="expiration_date")
    record = owned_record(memory, caller, memory_id)
    given, removed = without_removed_keys(without_marker(body.metadata)[0])
    merged = None if given is None else {  # the server merges (the role stays); keys the mem0 backend lists go
        k: v for k, v in {**record.metadata, **given}.items() if k not in removed}
    memory.update(record.id, text=body.text, metadata=merged, scope=record.scope)
    return {"message": "Memory updated successfully!"}


@router.delete("/memories/{memory_id}", summary="Delete one memory", responses=errors(400, 404))
def delete(memory_id: str, memory: MemoryDep, caller: CallerDep) -> dict[str, Any]:
    record = owned_record(memory, caller, memory_id)
    memory.delete(record.id, scope=record.scope)
    return {"message": "Memory deleted successfully"}


@router.get("/memories/{memory_id}/history", summary="A memory's history (a bare list; [] when unknown)",
            responses=errors(400, 501))
def history(memory_id: str, memory: MemoryDep, caller: CallerDep) -> list[dict[str, Any]]:
    try:
        events = owned_history(memory, caller, memory_id)
    except MemoryNotFound:
        return []
    return [event_to_history_entry(e) for e in events]


@router.post("/search", summary="Search memories (scope ids inside filters)", responses=errors(400, 403, 501))
def search(body: Mem0SearchRequest, memory: MemoryDep, caller: CallerDep) -> dict[str, Any]:
    scope, where = split_filters(body.filters, {"user_id": body.user_id, "agent_id": body.agent_id,
                                                "run_id": body.run_id})
    top_k = next((k for k in (body.top_k, body.limit) if k is not None), DEFAULT_TOP_K)
    if top_k < 0:
        raise InvalidInput(f"Invalid top_k: {top_k}. Must be a non-negative integer.", field="top_k")
    threshold = DEFAULT_THRESHOLD if body.threshold is None else check_threshold(body.threshold)
    scope = caller.require(scope)
    if top_k == 0:
        return {"results": []}
    # vector mode: this API's score (and threshold) is the semantic one (docs/server.md, docs/retrieval.md)
    hits = memory.search(body.query, scope=scope, filter=where, limit=min(top_k, MAX_LIMIT), threshold=threshold,
                         mode="vector")
    return {"results": [search_item(h.record, h.score, threshold if body.explain else None) for h in hits]}


def search_item(record: MemoryRecord, score: float, explain_threshold: float | None) -> dict[str, Any]:
    """A search hit as the server answers it; with `explain_threshold` (the request said ``explain: true``)
    its ``score_details``, in the server's keys: memdock's score is all semantic (no BM25, no entity boost)."""
    item = record_to_item(record, score=score)
    if explain_threshold is not None:
        item["score_details"] = {
            "semantic_score": score, "bm25_score": 0.0, "entity_boost": 0.0, "raw_score": score,
            "max_possible_score": 1.0, "final_score": score, "threshold": explain_threshold,
        }
    return item


@router.post("/reset", summary="Delete every memory (only with --allow-reset and an unrestricted key)",
             responses=errors(403, 501))
def reset(config: ConfigDep, memory: MemoryDep, caller: CallerDep) -> dict[str, Any]:
    require_reset_allowed(config, caller)
    memory.reset()
    return {"message": "All memories reset"}


def require_reset_allowed(config: ServerConfig, caller: Caller) -> None:
    """`Forbidden` unless the server was started with ``--allow-reset`` and the key is unrestricted."""
    if not config.allow_reset:
        raise Forbidden("reset is disabled on this server (start it with --allow-reset)")
    if not caller.unrestricted:
        raise Forbidden("reset needs an unrestricted API key")
