"""Dify's External Knowledge API: ``POST /retrieval`` (see `memdock.dify_adapter.external_knowledge`,
which the Dify plugin's endpoint shares), also served at ``//retrieval`` and ``/retrieval/``: Dify appends
``/retrieval`` to the endpoint a user registers, so ``http://host:8765/`` makes it call ``//retrieval``.

Dify 1.10.1 and later raise ``ValueError(response.text)`` on any non-200 (earlier versions read it as no
records), so every error answer is also logged here with the request id and the error code (never the
key, the query or memory text)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from memdock.dify_adapter.external_knowledge import RetrievalError, authorize, parse_request, retrieve
from memdock.dify_adapter.server.access import ConfigDep, MemoryDep, note_key

log = logging.getLogger("memdock.retrieval")

router = APIRouter(tags=["Dify External Knowledge API"])
"""The ``/retrieval`` route, relative to its mount point (the root by default). It authenticates in
Dify's way (`authorize`: 1001/1002) rather than through `request_caller`. Route functions carry no
docstrings: FastAPI would publish them as descriptions in the OpenAPI document."""


RETRIEVAL_PATH = "/retrieval"
ALIASES = ("//retrieval", "/retrieval/")
"""Other spellings of `RETRIEVAL_PATH` served by the same route, left out of the OpenAPI document."""


@router.post(
    RETRIEVAL_PATH,
    summary="Dify External Knowledge retrieval",
    description="Body: {knowledge_id, query, retrieval_setting: {top_k, score_threshold}, metadata_condition?}. "
    "Errors: {error_code, error_msg}: 1001 malformed Authorization header (403), 1002 authorization "
    "failed (403), 2001 unknown knowledge id (404), 400 malformed body, 503 backend unavailable.",
)
async def retrieval(request: Request, config: ConfigDep, memory: MemoryDep) -> Response:
    try:
        key = authorize(request.headers.get("authorization"), config.keys)
        note_key(request, key)
        body = parse_request(await request.body())
        answer = await run_in_threadpool(retrieve, memory, body, config.knowledge, key)
    except RetrievalError as exc:
        log.warning("retrieval failed: request_id=%s status=%s error_code=%s %s",
                    request.state.request_id, exc.status, exc.code, exc.message)
        return JSONResponse(exc.body(), status_code=exc.status)
    return JSONResponse(answer)


for _alias in ALIASES:
    router.add_api_route(_alias, retrieval, methods=["POST"], include_in_schema=False)
