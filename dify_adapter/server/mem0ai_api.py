"""The ``mem0ai-api`` dialect (tonori/mem0ai-api, mounted under ``/mem0ai-api`` by default), answered by
memdock, so the Dify plugins built for that service work by changing only their ``api_url``.

Envelope: success ``{"code": 0, "data": ...}``; failure ``{"code": N, "error": str, "message": str}`` with
HTTP status N, except a failed auth, which answers HTTP 200 with ``code: 401`` as the original does.
Route mapping onto the core (documented in docs/server.md):

- ``GET /authorized`` -> the key check only;
- ``POST /store`` ``{data, user_id?, agent_id?, run_id?, metadata?}`` -> `Memory.add` (``prompt`` and
  ``filters`` are accepted and ignored: memdock calls no LLM); ``data.results`` lists what was stored;
- ``POST /search`` (JSON) and ``GET /search`` (query string, older plugins) -> `Memory.search`;
  ``filters`` is mem0-style JSON over metadata; ``data.results`` carries scores;
- ``GET /retrieve?ids&limit=100`` -> the first ``limit`` memories of the scope, oldest first;
- ``GET /retrieve/{id}`` -> the memory's HISTORY (each entry also carries the scope ids);
- ``PUT /update/{id}?data=TEXT`` -> `Memory.update`; a JSON body ``{"metadata": {...}}`` (a memdock
  extension) also replaces the metadata;
- ``DELETE /delete/{id}``, ``DELETE /delete-all?ids`` -> `Memory.delete`, `Memory.delete_all`;
- ``DELETE /reset-all`` -> `Memory.reset`, 204, only with ``--allow-reset`` and an unrestricted key.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from memdock.dify_adapter.server.access import (
    Caller,
    CallerDep,
    ConfigDep,
    MemoryDep,
    Unauthenticated,
    request_caller,
)
from memdock.dify_adapter.server.errors import first_error, status_of, translating_route
from memdock.dify_adapter.server.mem0_server import require_reset_allowed, scope_from, visible
from memdock.errors import InvalidInput, MemoryNotFound
from memdock.filters import coerce_filter
from memdock.formats.mem0 import add_result_items, event_to_history_entry, record_to_item
from memdock.memory import Memory
from memdock.validation import MAX_LIMIT

ERROR_NAMES = {401: "Unauthorized_Error", 403: "Forbidden", 404: "NotFoundError", 422: "ValidationError",
               501: "NotSupported", 502: "UpstreamAuthError", 503: "BackendUnavailable"}


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


class Mem0aiApiSearchRequest(BaseModel):
    """``POST /search``."""

    model_config = ConfigDict(extra="ignore")

    query: str
    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None
    limit: int | None = 100
    filters: dict[str, Any] | None = None


def ok(data: Any = None) -> dict[str, Any]:
    """The success envelope."""
    return {"code": 0, "data": data}


def mem0ai_api_error(request: Request, exc: Exception) -> Response:
    """The failure envelope; a failed auth answers HTTP 200 with ``code: 401``."""
    if isinstance(exc, Unauthenticated):
        return JSONResponse({"code": 401, "error": "Unauthorized_Error", "message": "Unauthorized"})
    status = status_of(exc)
    message = str(exc)
    if isinstance(exc, RequestValidationError):
        field, text = first_error(exc)
        status, message = 422, f"{field}: {text}"
    body = {"code": status, "error": ERROR_NAMES.get(status, type(exc).__name__), "message": message}
    return JSONResponse(body, status_code=status)


router = APIRouter(route_class=translating_route(mem0ai_api_error), tags=["mem0ai-api dialect"],
                   dependencies=[Depends(request_caller)])
"""The mem0ai-api dialect's routes, relative to its mount point (``/mem0ai-api`` by default). Route
functions carry no docstrings: FastAPI would publish them as descriptions in the OpenAPI document."""


@router.get("/authorized", summary="Check the API key")
def authorized() -> dict[str, Any]:
    return ok()


@router.post("/store", summary="Store a memory")
def store(body: StoreRequest, memory: MemoryDep, caller: CallerDep) -> dict[str, Any]:
    scope = scope_from(caller, user_id=body.user_id, agent_id=body.agent_id, run_id=body.run_id)
    results = memory.add(body.data, scope=scope, metadata=body.metadata)
    return ok({"results": add_result_items(results)})


def run_search(body: Mem0aiApiSearchRequest, memory: Memory, caller: Caller) -> dict[str, Any]:
    """Both ``/search`` routes: the scope's best `body.limit` hits (clamped to 1..`MAX_LIMIT`), in the
    success envelope; `InvalidInput` without a scope id, `Forbidden` outside the caller's scopes."""
    scope = scope_from(caller, user_id=body.user_id, agent_id=body.agent_id, run_id=body.run_id)
    limit = min(max(body.limit or 100, 1), MAX_LIMIT)
    hits = memory.search(body.query, scope=scope, filter=coerce_filter(body.filters), limit=limit)
    return ok({"results": [record_to_item(h.record, score=h.score) for h in hits]})


@router.post("/search", summary="Search memories (JSON body)")
def search(body: Mem0aiApiSearchRequest, memory: MemoryDep, caller: CallerDep) -> dict[str, Any]:
    return run_search(body, memory, caller)


@router.get("/search", summary="Search memories (query string, as older plugins call it)")
def search_get(
    memory: MemoryDep, caller: CallerDep, query: str, user_id: str | None = None, agent_id: str | None = None,
    run_id: str | None = None, limit: int | None = 100, filters: str | None = None,
) -> dict[str, Any]:
    try:
        parsed = json.loads(filters) if filters else None
    except ValueError:
        raise InvalidInput("not valid JSON", field="filters") from None
    body = Mem0aiApiSearchRequest(query=query, user_id=user_id, agent_id=agent_id, run_id=run_id, limit=limit,
                                  filters=parsed)
    return run_search(body, memory, caller)


@router.get("/retrieve", summary="List the memories of a scope")
def retrieve(
    memory: MemoryDep, caller: CallerDep, user_id: str | None = None, agent_id: str | None = None,
    run_id: str | None = None, limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
) -> dict[str, Any]:
    scope = scope_from(caller, user_id=user_id, agent_id=agent_id, run_id=run_id)
    page = memory.list(scope=scope, limit=limit)
    return ok({"results": [record_to_item(r) for r in page.items]})


@router.get("/retrieve/{memory_id}", summary="A memory's history")
def history(memory_id: str, memory: MemoryDep, caller: CallerDep) -> dict[str, Any]:
    events = memory.history(memory_id)
    if not all(caller.may_touch(e.scope) for e in events):
        raise MemoryNotFound(memory_id)
    return ok([event_to_history_entry(e) for e in events])


@router.put("/update/{memory_id}", summary="Update a memory's text (and, as an extension, its metadata)")
async def update(memory_id: str, request: Request, memory: MemoryDep, caller: CallerDep,
                 data: str | None = None) -> dict[str, Any]:
    metadata = await _metadata_extension(request)
    if data is None and metadata is None:
        raise InvalidInput("give ?data=<text> (and/or a JSON body with metadata)", field="data")

    def change() -> None:
        record = visible(memory, caller, memory_id)
        if record is None:
            raise MemoryNotFound(memory_id)
        memory.update(record.id, text=data, metadata=metadata, scope=record.scope)

    await run_in_threadpool(change)
    return ok({"message": "Memory updated successfully!"})


@router.delete("/delete/{memory_id}", summary="Delete a memory")
def delete(memory_id: str, memory: MemoryDep, caller: CallerDep) -> dict[str, Any]:
    record = visible(memory, caller, memory_id)
    if record is None:
        raise MemoryNotFound(memory_id)
    memory.delete(record.id, scope=record.scope)
    return ok()


@router.delete("/delete-all", summary="Delete every memory of a scope")
def delete_all(
    memory: MemoryDep, caller: CallerDep, user_id: str | None = None, agent_id: str | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    memory.delete_all(scope=scope_from(caller, user_id=user_id, agent_id=agent_id, run_id=run_id))
    return ok()


@router.delete("/reset-all", status_code=204, summary="Delete every memory of every scope (opt-in)")
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

