"""The Dify plugin's External Knowledge endpoint without importing `dify_plugin`: the same translation as
``memdock serve``'s ``/retrieval`` (`memdock.dify_adapter.external_knowledge`), configured by the
endpoint's settings in Dify.

Settings (the endpoint group YAML declares exactly these):

- ``backend_url``: the memdock URL to answer from; ``backend_api_key``: its key, as the tools' ``api_key``.
- ``api_key``: the key Dify's External Knowledge API sends as ``Authorization: Bearer``; at least 16
  characters. Required: an endpoint without a usable key refuses every call (403, error_code 1002).
- ``knowledge_default``: the scope id an unmapped ``knowledge_id`` names (``user_id`` by default, or
  ``agent_id``, ``run_id``, ``app_id``, ``none``); ``knowledge_map``: optional JSON, as
  ``memdock serve --knowledge-map``.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Mapping
from typing import Any

from memdock.dify_adapter.auth import KeyRing, plain_key
from memdock.dify_adapter.external_knowledge import (
    AUTH_FAILED,
    UNAVAILABLE,
    KnowledgeMap,
    RetrievalError,
    authorize,
    parse_request,
    retrieve,
)
from memdock.dify_adapter.plugin_logic.backend import open_memory
from memdock.errors import InvalidInput, MemdockError

log = logging.getLogger("memdock.plugin.retrieval")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def request_id_of(given: str | None) -> str:
    """`given` (a caller's ``X-Request-ID``) when it is a plain token of at most 64 characters, else a new
    16-hex-digit id, as ``memdock serve`` makes them."""
    return given if given is not None and _REQUEST_ID.match(given) else uuid.uuid4().hex[:16]


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


def key_ring(settings: Mapping[str, Any]) -> KeyRing:
    """The one key the endpoint accepts. `RetrievalError` 403/1002 when none (or a too short one) is set:
    an endpoint never answers without a key."""
    secret = str(settings.get("api_key") or "").strip()
    if not secret:
        raise RetrievalError(403, AUTH_FAILED, "Authorization failed: the endpoint has no API key configured")
    try:
        return KeyRing([plain_key(secret, "endpoint")])
    except InvalidInput as exc:
        raise RetrievalError(403, AUTH_FAILED, f"Authorization failed: the endpoint's {exc}") from None


def answer_retrieval(settings: Mapping[str, Any], authorization: str | None, body: bytes, *,
                     request_id: str | None = None) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) for one POST to the endpoint's ``/retrieval``, in Dify's contract: the key
    is checked first (1001 malformed header, 1002 wrong key), then the body (400, so an empty body with a
    good key, Dify's registration check, counts as reachable), then the backend (503 when it cannot be
    opened or reached), then the knowledge id (2001 only for an id the knowledge map does not allow; an
    id with no memories answers 200 with no records). Every refusal is logged with `request_id` (the
    request's ``X-Request-ID``, else a new one; `request_id_of`), never with the key, query or memories."""
    try:
        key = authorize(authorization, key_ring(settings))
        request = parse_request(body)
        try:
            memory = open_memory(settings.get("backend_url"), settings.get("backend_api_key"))
            knowledge = knowledge_of(settings)
        except InvalidInput as exc:
            raise RetrievalError(503, UNAVAILABLE, f"endpoint misconfigured: {exc}") from None
        except MemdockError as exc:
            raise RetrievalError(503, UNAVAILABLE, f"memory backend unavailable: {type(exc).__name__}") from None
        return 200, retrieve(memory, request, knowledge, key)
    except RetrievalError as exc:
        log.warning("retrieval failed: request_id=%s status=%s error_code=%s %s",
                    request_id_of(request_id), exc.status, exc.code, exc.message)
        return exc.status, exc.body()
