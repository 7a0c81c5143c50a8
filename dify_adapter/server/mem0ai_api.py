"""The ``mem0ai-api`` dialect (tonori/mem0ai-api, mounted under ``/mem0ai-api`` by default), answered by
memdock in the real service's shapes and codes, so the Dify plugins built for that service (the seed's
tonori/dify-plugin-mem0ai, old and new revisions) work by changing only their ``api_url``.

What the real service answers, and memdock with it (docs/server.md lists the routes):

- success ``{"code": 0, "data": ...}``: ``data`` is a BARE list for store, search and retrieve, ``null`` for
  update and delete (`memdock.formats.mem0ai_api` writes the items, store results and history entries);
- a missing or wrong key: HTTP 200 ``{"code": 401, "error": "Unauthorized_Error", "message": "Unauthorized"}``;
- a malformed request: 422 with FastAPI's ``{"detail": [...]}``; a missing id: 404 ``{"detail": "Memory <id>
  not found"}`` (also once the memory is deleted, for its history too);
- ``""`` for an optional id or ``prompt`` means absent; ``filters`` on store must be an object (it is accepted
  and ignored: memdock calls no LLM), on search it is mem0-style JSON over metadata.

Where the real service is unsafe, memdock refuses in tonori's error envelope ``{"code": N, "error", "message"}``
with HTTP status N: a store, search, list or delete-all without a scope id (422, ``ValueError``, where tonori
stores unscoped, searches or lists every user, or answers 500), a scope the key may not touch (403), a reset
without ``--allow-reset`` (403). The key is checked before anything else, so a wrong key never learns whether
an id exists (tonori answers some 404s first). An update keeps the memory's scope, metadata and creation time
(tonori's loses them). memdock also answers, where tonori fails or refuses: ``limit: null`` (-> 100),
``GET /search?query=..`` (the plugin's older revision; tonori answers 405). Other memdock errors use the
envelope too (501 unsupported, 503 backend unavailable). Route by route:

- ``GET /authorized`` -> the key check only;
- ``POST /store`` ``{data, user_id?, agent_id?, run_id?, metadata?, filters?, prompt?}`` -> `Memory.add`;
- ``POST /search`` ``{query, ids?, limit=100, filters?}`` and ``GET /search?query&ids&limit&filters`` ->
  `Memory.search` (``limit`` 1..`MAX_LIMIT`; 0, negatives, larger numbers and fractions answer the 422
  envelope naming ``limit``: memdock never clamps silently), items with memdock's score;
- ``GET /retrieve?ids&limit=100`` -> the first ``limit`` memories of the scope, oldest first;
- ``GET /retrieve/{id}`` -> the memory's HISTORY (as the original: not the memory);
- ``PUT /update/{id}?data=TEXT`` -> `Memory.update` of the text; a JSON body ``{"metadata": {...}}`` (a memdock
  extension) also replaces the metadata;
- ``DELETE /delete/{id}``, ``DELETE /delete-all?ids`` -> `Memory.delete`, `Memory.delete_all`;
- ``DELETE /reset-all`` -> `Memory.reset`, 204, only with ``--allow-reset`` and an unrestricted key.
"""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, field_validator
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from memdock.dify_adapter.server.access import (
    Caller,
    CallerDep,
    ConfigDep,
    MemoryDep,
    Unauthenticated,
    owned_history,
    owned_record,
    request_caller,
)
from memdock.dify_adapter.server.errors import UnreadableBody, status_of, translating_route, validation_errors
from memdock.dify_adapter.server.mem0_server import require_reset_allowed
from memdock.errors import InvalidInput, MemoryNotFound
from memdock.filters import coerce_filter, parse_filter_text
from memdock.formats.mem0ai_api import mem0ai_api_history, mem0ai_api_item, mem0ai_api_store_results
from memdock.memory import Memory
from memdock.models import EventKind, Scope
from memdock.validation import MAX_LIMIT, make_scope

DEFAULT_LIMIT = 100
NO_SCOPE = ("at least one of user_id, agent_id, run_id is required (memdock never stores, searches, lists or "
            "deletes across every user)")
ERROR_NAMES = {403: "Forbidden", 413: "BodyTooLarge", 422: "ValueError", 501: "NotSupported",
               502: "UpstreamAuthError", 503: "BackendUnavailable"}
"""tonori's ``error`` names by status (it names errors after their Python exception: ``ValueError`` for bad
input); a status not listed uses the memdock exception's class name."""
UNAUTHORIZED = {"code": 401, "error": "Unauthorized_Error", "message": "Unauthorized"}


def blank_is_absent(value: Any) -> Any:
    """``""`` -> None: the seed's plugin sends ``""`` for a blank optional id, and tonori (mem0 0.0.9) treats
    a falsy id as absent."""
    return None if value == "" else value


class StoreRequest(BaseModel):
    """``POST /store``."""

    model_config = ConfigDict(extra="ignore")

    data: str
    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None
    metadata: dict[str, Any] | None = None
    filters: dict[str, Any] | None = None
    prompt: str | None = None

    _blank_ids = field_validator("user_id", "agent_id", "run_id", "prompt", mode="before")(blank_is_absent)


class Mem0aiApiSearchRequest(BaseModel):
    """``POST /search`` (``limit: null`` means the default)."""

    model_config = ConfigDict(extra="ignore")

    query: str
    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None
    limit: int | None = DEFAULT_LIMIT
    filters: dict[str, Any] | None = None

    _blank_ids = field_validator("user_id", "agent_id", "run_id", mode="before")(blank_is_absent)


def ok(data: Any = None) -> dict[str, Any]:
    """The success envelope."""
    return {"code": 0, "data": data}


class Mem0aiApiError(BaseModel):
    """tonori's error envelope, answered with HTTP status ``code``."""

    code: int
    error: str
    message: str


class Mem0aiApiDetail(BaseModel):
    """A missing memory: ``{"detail": "Memory <id> not found"}``."""

    detail: str


class ValidationDetail(BaseModel):
    """FastAPI's answer to a malformed request: ``{"detail": [{"loc", "msg", "type", ...}]}``."""

    detail: list[dict[str, Any]]


ERROR_MODELS: dict[int, tuple[Any, str]] = {
    403: (Mem0aiApiError, "the key may not access this scope, or reset is disabled"),
    404: (Mem0aiApiDetail, "no such memory in the caller's scope (or it was deleted)"),
    413: (Mem0aiApiError, "request body too large"),
    422: (ValidationDetail | Mem0aiApiError, "a malformed request (FastAPI's detail list), or input memdock refuses "
          "(the envelope: no scope id, a bad limit or filter, a body that is not UTF-8 JSON)"),
    501: (Mem0aiApiError, "not supported by the backend"),
    502: (Mem0aiApiError, "the backend refused memdock's credentials"),
    503: (Mem0aiApiError, "backend unavailable"),
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses, each with the body the dialect answers it with."""
    return {status: {"model": ERROR_MODELS[status][0], "description": ERROR_MODELS[status][1]}
            for status in statuses}


def mem0ai_api_error(request: Request, exc: Exception) -> Response:
    """tonori's answers to failures: the HTTP-200 ``code: 401`` for auth, FastAPI's 422 ``detail`` list for a
    malformed request, 404 ``{"detail": "Memory <id> not found"}`` for a missing id, and the envelope
    ``{"code": N, "error", "message"}`` with HTTP status N for everything memdock refuses."""
    if isinstance(exc, Unauthenticated):
        return JSONResponse(UNAUTHORIZED)
    if isinstance(exc, RequestValidationError):
        return JSONResponse({"detail": validation_errors(exc)}, status_code=422)
    if isinstance(exc, MemoryNotFound):
        return JSONResponse({"detail": f"Memory {exc.memory_id} not found"}, status_code=404)
    status = 422 if isinstance(exc, UnreadableBody) else status_of(exc)
    body = {"code": status, "error": ERROR_NAMES.get(status, type(exc).__name__), "message": str(exc)}
    return JSONResponse(body, status_code=status)


SUCCESS: dict[int | str, dict[str, Any]] = {200: {"description": (
    'success: {"code": 0, "data": ...}; a missing or wrong key also answers HTTP 200, with {"code": 401, '
    '"error": "Unauthorized_Error", "message": "Unauthorized"}')}}
"""The success answer as the OpenAPI document describes it (tonori answers auth failures with HTTP 200)."""

router = APIRouter(route_class=translating_route(mem0ai_api_error), tags=["mem0ai-api dialect"],
                   dependencies=[Depends(request_caller)], responses={**SUCCESS, **errors(413, 502, 503)})
"""The mem0ai-api dialect's routes, relative to its mount point (``/mem0ai-api`` by default). Route
functions carry no docstrings: FastAPI would publish them as descriptions in the OpenAPI document."""


def required_scope(caller: Caller, **ids: str | None) -> Scope:
    """The scope named by the request's ids (``""`` = absent); `InvalidInput` (422 envelope) when none is
    given, `Forbidden` (403) when the caller's key may not touch it."""
    scope = make_scope(None, {k: blank_is_absent(v) for k, v in ids.items()}, required=False)
    if scope.is_empty():
        raise InvalidInput(NO_SCOPE, field="scope")
    return caller.require(scope)


def limit_of(value: int | float | str | None, field: str = "limit") -> int:
    """A limit as the plugins send it (an int, an integral float, its string, ``""`` or None for the default)
    from 1 to `MAX_LIMIT`; `InvalidInput` naming `field` for anything else (0, -1 or 1e9 are refused, not
    clamped: a client asking for no results or a billion would otherwise get something it did not ask for)."""
    if value is None or value == "":
        return DEFAULT_LIMIT
    number: float
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number != int(number) or not 1 <= number <= MAX_LIMIT:
        raise InvalidInput(f"must be an integer from 1 to {MAX_LIMIT}", field=field)
    return int(number)


def not_deleted(memory: Memory, caller: Caller, memory_id: str) -> list[Any]:
    """The history of a memory the caller may see that still exists; `MemoryNotFound` otherwise (tonori
    answers 404 once a memory is deleted, and memdock never hints at another scope's memory:
    `access.owned_history` answers a foreign id exactly as a missing one)."""
    events = owned_history(memory, caller, memory_id)
    if not events or events[-1].event is EventKind.DELETE:
        raise MemoryNotFound(memory_id)
    return events


@router.get("/authorized", summary="Check the API key")
def authorized() -> dict[str, Any]:
    return ok()


@router.post("/store", summary="Store a memory (verbatim: memdock calls no LLM)", responses=errors(403, 422))
def store(body: StoreRequest, memory: MemoryDep, caller: CallerDep) -> dict[str, Any]:
    scope = required_scope(caller, user_id=body.user_id, agent_id=body.agent_id, run_id=body.run_id)
    results = memory.add(body.data, scope=scope, metadata=body.metadata)
    return ok(mem0ai_api_store_results(results))


def run_search(query: str, ids: dict[str, str | None], limit: int, filters: Any, memory: Memory,
               caller: Caller) -> dict[str, Any]:
    """Both ``/search`` routes: the scope's best `limit` hits in the success envelope (a bare list)."""
    scope = required_scope(caller, **ids)
    # vector mode: the score this API reports is the semantic one (docs/retrieval.md)
    hits = memory.search(query, scope=scope, filter=coerce_filter(filters), limit=limit, mode="vector")
    return ok([mem0ai_api_item(h.record, score=h.score) for h in hits])


@router.post("/search", summary="Search memories (JSON body)", responses=errors(403, 422, 501))
def search(body: Mem0aiApiSearchRequest, memory: MemoryDep, caller: CallerDep) -> dict[str, Any]:
    ids = {"user_id": body.user_id, "agent_id": body.agent_id, "run_id": body.run_id}
    return run_search(body.query, ids, limit_of(body.limit), body.filters, memory, caller)


@router.get("/search", summary="Search memories (query string, as the plugin's older revision calls it)",
            responses=errors(403, 422, 501))
def search_get(
    memory: MemoryDep, caller: CallerDep, query: str, user_id: str | None = None, agent_id: str | None = None,
    run_id: str | None = None, limit: str | None = None, filters: str | None = None,
) -> dict[str, Any]:
    parsed = parse_filter_text(filters, field="filters") if filters else None
    ids = {"user_id": user_id, "agent_id": agent_id, "run_id": run_id}
    return run_search(query, ids, limit_of(limit), parsed, memory, caller)


@router.get("/retrieve", summary="List the memories of a scope", responses=errors(403, 422))
def retrieve(
    memory: MemoryDep, caller: CallerDep, user_id: str | None = None, agent_id: str | None = None,
    run_id: str | None = None, limit: str | None = None,
) -> dict[str, Any]:
    scope = required_scope(caller, user_id=user_id, agent_id=agent_id, run_id=run_id)
    page = memory.list(scope=scope, limit=limit_of(limit))
    return ok([mem0ai_api_item(r) for r in page.items])


@router.get("/retrieve/{memory_id}", summary="A memory's history", responses=errors(404, 422, 501))
def history(memory_id: str, memory: MemoryDep, caller: CallerDep) -> dict[str, Any]:
    return ok(mem0ai_api_history(not_deleted(memory, caller, memory_id)))


@router.put("/update/{memory_id}", summary="Update a memory's text (and, as an extension, its metadata)",
            responses=errors(404, 422))
async def update(memory_id: str, request: Request, memory: MemoryDep, caller: CallerDep,
                 data: str | None = None) -> dict[str, Any]:
    metadata = await _metadata_extension(request)
    if data is None and metadata is None:
        raise RequestValidationError([{"type": "missing", "loc": ("query", "data"), "msg": "Field required",
                                       "input": None}])

    def change() -> None:
        record = owned_record(memory, caller, memory_id)
        memory.update(record.id, text=data, metadata=metadata, scope=record.scope)

    await run_in_threadpool(change)
    return ok()


@router.delete("/delete/{memory_id}", summary="Delete a memory", responses=errors(404, 422))
def delete(memory_id: str, memory: MemoryDep, caller: CallerDep) -> dict[str, Any]:
    record = owned_record(memory, caller, memory_id)
    memory.delete(record.id, scope=record.scope)
    return ok()


@router.delete("/delete-all", summary="Delete every memory of a scope", responses=errors(403, 422))
def delete_all(
    memory: MemoryDep, caller: CallerDep, user_id: str | None = None, agent_id: str | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    memory.delete_all(scope=required_scope(caller, user_id=user_id, agent_id=agent_id, run_id=run_id))
    return ok()


@router.delete("/reset-all", status_code=204, summary="Delete every memory of every scope (opt-in)",
               responses=errors(403, 501))
def reset_all(config: ConfigDep, memory: MemoryDep, caller: CallerDep) -> Response:
    require_reset_allowed(config, caller)
    memory.reset()
    return Response(status_code=204)


async def _metadata_extension(request: Request) -> dict[str, Any] | None:
    """The optional JSON body ``{"metadata": {...}}`` of ``PUT /update/{id}``."""
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        body = json.loads(raw)
    except ValueError:
        raise InvalidInput("body must be JSON", field="body") from None
    if not isinstance(body, dict) or set(body) - {"metadata"}:
        raise InvalidInput('body may only hold {"metadata": {...}}', field="body")
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidInput("must be an object", field="metadata")
    return metadata
