"""The Dify plugin's External Knowledge endpoint without importing `dify_plugin`: the same translation as
``memdock serve``'s ``/retrieval`` (`memdock.dify_adapter.external_knowledge`), configured by the endpoint's
settings in Dify.

Settings: ``backend_url`` and ``api_key`` (as for the tools), ``retrieval_api_key`` (the key Dify's
External Knowledge registration sends as ``Bearer``; required: an endpoint without it refuses every
call), ``knowledge_default`` (the scope id an unmapped knowledge id names: ``user_id`` by default, or
``none``) and ``knowledge_map`` (optional JSON, as ``memdock serve --knowledge-map``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from memdock.dify_adapter.auth import ApiKey, KeyRing, digest
from memdock.dify_adapter.external_knowledge import (
    AUTH_FAILED,
    UNAVAILABLE,
    KnowledgeMap,
    RetrievalError,
    authorize,
    parse_request,
    retrieve,
)
from memdock.dify_adapter.plugin_tools import memory_for
from memdock.errors import InvalidInput, MemdockError

log = logging.getLogger("memdock.plugin.retrieval")
SETTINGS = ("backend_url", "api_key", "retrieval_api_key", "knowledge_default", "knowledge_map")
"""The endpoint settings this module reads (the endpoint group YAML must declare exactly these)."""


def knowledge_of(settings: Mapping[str, Any]) -> KnowledgeMap:
    """The knowledge map the settings describe; `InvalidInput` names a bad setting."""
    default = str(settings.get("knowledge_default") or "user_id")
    field = None if default == "none" else default
    raw = settings.get("knowledge_map")
    if raw is None or not str(raw).strip():
        return KnowledgeMap(default_field=field)
    try:
        data = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError as exc:
        raise InvalidInput(f"is not valid JSON: {exc}", field="knowledge_map") from None
    return KnowledgeMap.from_json(data, field)


def answer_retrieval(settings: Mapping[str, Any], authorization: str | None, body: bytes) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) for one POST to the endpoint's ``/retrieval``."""
    secret = str(settings.get("retrieval_api_key") or "")
    try:
        if not secret:
            raise RetrievalError(403, AUTH_FAILED, "the endpoint has no retrieval_api_key configured")
        key = authorize(authorization, KeyRing([ApiKey(digest(secret), "endpoint")]))
        request = parse_request(body)
        try:
            memory = memory_for(settings)
            knowledge = knowledge_of(settings)
        except InvalidInput as exc:
            raise RetrievalError(503, UNAVAILABLE, f"endpoint misconfigured: {exc}") from None
        except MemdockError as exc:
            raise RetrievalError(503, UNAVAILABLE, f"memory backend unavailable: {type(exc).__name__}") from None
        return 200, retrieve(memory, request, knowledge, key)
    except RetrievalError as exc:
        log.warning("retrieval failed: status=%s error_code=%s %s", exc.status, exc.code, exc.message)
        return exc.status, exc.body()
