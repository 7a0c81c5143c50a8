"""Dify's External Knowledge API without a web framework, shared by ``memdock serve`` and the Dify
plugin's endpoint: parse the request, check the Bearer key (read by `memdock.dify_adapter.auth`, as for
every API), map ``knowledge_id`` to a scope, translate ``metadata_condition`` into a core `Filter`
(`memdock.formats.dify`: Dify's own knowledge-base semantics), search, and shape the answer.

The answers are made for Dify's client (api 1.10.1 and later raise ``ValueError(response.text)`` on ANY
non-200; earlier versions read a non-200 as "no records"): a permitted knowledge id with no memories, a
new user's for instance, answers 200 ``{"records": []}``; nulls Dify's models allow (``top_k``,
``score_threshold``, ``metadata_condition``, ``logical_operator``, ``conditions``) take Dify's defaults;
a condition on a value of another kind simply does not match.

Errors are `RetrievalError` carrying Dify's ``error_code`` and the HTTP status to answer with:
1001 malformed Authorization header (403), 1002 authorization failed (403), 2001 a knowledge id the
knowledge map or the key does not allow (404); memdock adds 400 for a malformed body (the registration
check's empty body included) and 503 when the backend is unavailable.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from memdock.dify_adapter.auth import (
    EXTERNAL_KNOWLEDGE_FORMS,
    ApiKey,
    KeyRing,
    MissingKey,
    UnknownKey,
    authenticate_request,
)
from memdock.errors import AuthenticationFailed, BackendUnavailable, InvalidInput, Unsupported
from memdock.filters import And, Filter, coerce_filter
from memdock.formats.dify import DifyFilter, MetadataCondition, translate_metadata_condition
from memdock.memory import Memory
from memdock.models import SCOPE_FIELDS, Scope, SearchHit
from memdock.search_modes import SearchMode, check_mode
from memdock.validation import MAX_LIMIT, make_scope

MALFORMED_AUTH = 1001
AUTH_FAILED = 1002
UNKNOWN_KNOWLEDGE = 2001
BAD_REQUEST = 400
UNAVAILABLE = 503
TITLE_CHARS = 60
DEFAULT_TOP_K = 4
"""Dify's own default ``top_k`` (its default retrieval model), for a request that sends ``top_k: null``."""


class RetrievalError(Exception):
    """An error answer: HTTP `status` with body ``{"error_code": code, "error_msg": message}``."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        """The JSON body Dify expects."""
        return {"error_code": self.code, "error_msg": self.message}


# -- the request ---------------------------------------------------------------------------------------


class RetrievalSetting(BaseModel):
    """``top_k`` results at most (null or absent: `DEFAULT_TOP_K`), none scoring below ``score_threshold``
    (null, absent or 0: no threshold)."""

    model_config = ConfigDict(extra="ignore")

    top_k: int = Field(default=DEFAULT_TOP_K, ge=1, le=MAX_LIMIT)
    score_threshold: float = Field(default=0.0, ge=0.0, le=1.0)

    @field_validator("top_k", mode="before")
    @classmethod
    def _default_top_k(cls, value: Any) -> Any:
        return DEFAULT_TOP_K if value is None else value

    @field_validator("score_threshold", mode="before")
    @classmethod
    def _no_threshold(cls, value: Any) -> Any:
        return 0.0 if value is None else value


class RetrievalRequest(BaseModel):
    """The body Dify POSTs to ``{base}/retrieval``; a null ``retrieval_setting`` takes the defaults."""

    model_config = ConfigDict(extra="ignore")

    knowledge_id: str = Field(min_length=1)
    query: str = Field(min_length=1)
    retrieval_setting: RetrievalSetting = Field(default_factory=RetrievalSetting)
    metadata_condition: MetadataCondition | None = None

    @field_validator("retrieval_setting", mode="before")
    @classmethod
    def _default_setting(cls, value: Any) -> Any:
        return {} if value is None else value


def parse_request(raw: bytes | str | None) -> RetrievalRequest:
    """Parse a request body; `RetrievalError` 400 names the offending field. An empty body (Dify's
    registration check) is a 400 too, which Dify counts as a reachable endpoint."""
    if raw is None or not raw.strip():
        raise RetrievalError(400, BAD_REQUEST, "empty request body (expected knowledge_id, query, retrieval_setting)")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RetrievalError(400, BAD_REQUEST, f"body is not JSON: {exc}") from None
    try:
        return RetrievalRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise RetrievalError(400, BAD_REQUEST, f"{where}: {first['msg']}") from None


# -- auth ----------------------------------------------------------------------------------------------


def authorize(header: str | None, keys: KeyRing) -> ApiKey | None:
    """Check the ``Authorization`` header value `header` (None when absent) the way Dify's API reads it:
    ``Bearer <key>`` only (`memdock.dify_adapter.auth.EXTERNAL_KNOWLEDGE_FORMS`; ``X-API-Key`` is not read).
    Returns the matching key, or None when the key ring is empty (an open server: any header passes).
    Raises `RetrievalError` 403 with 1001 for a missing or malformed header, 1002 for a key that is not
    in the ring."""
    try:
        return authenticate_request(keys, header, forms=EXTERNAL_KNOWLEDGE_FORMS)
    except MissingKey:
        raise RetrievalError(403, MALFORMED_AUTH,
                             "Invalid Authorization header format. Expected 'Bearer <api-key>'.") from None
    except UnknownKey:
        raise RetrievalError(403, AUTH_FAILED, "Authorization failed") from None


# -- knowledge ids ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KnowledgeTarget:
    """Where a knowledge id reads: a scope and an optional filter applied to every query."""

    scope: Scope
    filter: Filter | None = None
    explicit: bool = False
    mode: SearchMode | None = None  # the search mode of `memdock.search_modes`; None: the backend's default


class KnowledgeMap:
    """Maps Dify's free-text ``knowledge_id`` to a scope.

    Explicit entries (``{"kb-support": {"scope": {"agent_id": "support"}, "filter": {...}, "mode":
    "keyword"}}``; ``filter`` and ``mode`` optional, ``mode`` as in `memdock.search_modes`) win. Other
    ids map to ``{default_field: knowledge_id}`` (default ``user_id``); with ``default_field=None`` only
    explicit ids exist. Every id the map resolves is a knowledge base, empty or not: an id with no
    memories yet (a new user) answers no records, never 2001.
    """

    def __init__(self, entries: Mapping[str, KnowledgeTarget] | None = None, default_field: str | None = "user_id"):
        if default_field is not None and default_field not in SCOPE_FIELDS:
            raise InvalidInput(f"must be one of {', '.join(SCOPE_FIELDS)} or none", field="knowledge_default")
        self.entries = dict(entries or {})
        self.default_field = default_field

    @classmethod
    def from_json(cls, data: Any, default_field: str | None = "user_id") -> KnowledgeMap:
        """Build from ``{knowledge_id: {"scope": {...}, "filter": {...}?, "mode": "..."?}}``; `InvalidInput`
        names the entry."""
        if not isinstance(data, Mapping):
            raise InvalidInput("must be a JSON object of knowledge ids", field="knowledge_map")
        entries: dict[str, KnowledgeTarget] = {}
        for knowledge_id, spec in data.items():
            where = f"knowledge_map.{knowledge_id}"
            if not isinstance(spec, Mapping) or not isinstance(spec.get("scope"), Mapping):
                raise InvalidInput('needs {"scope": {"user_id": ...}}', field=where)
            unknown = set(spec) - {"scope", "filter", "mode"}
            if unknown:
                raise InvalidInput(f"unknown keys {sorted(unknown)}", field=where)
            scope = make_scope(None, dict(spec["scope"]), required=True)
            try:
                mode = check_mode(spec.get("mode"))
            except InvalidInput as exc:
                raise InvalidInput(str(exc), field=f"{where}.mode") from None
            entries[str(knowledge_id)] = KnowledgeTarget(scope, coerce_filter(spec.get("filter")), explicit=True,
                                                         mode=mode)
        return cls(entries, default_field)

    @classmethod
    def from_file(cls, path: str | Path, default_field: str | None = "user_id") -> KnowledgeMap:
        """Read `from_json` data from a JSON file."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"cannot read {path}: {exc}", field="knowledge_map") from None
        return cls.from_json(data, default_field)

    def resolve(self, knowledge_id: str) -> KnowledgeTarget | None:
        """The target of a knowledge id, or None when it names nothing."""
        if knowledge_id in self.entries:
            return self.entries[knowledge_id]
        if self.default_field is None:
            return None
        try:
            return KnowledgeTarget(make_scope(None, {self.default_field: knowledge_id}, required=True))
        except InvalidInput:
            return None


# -- the answer ------------------------------------------------------------------------------------------


def retrieve(memory: Memory, request: RetrievalRequest, knowledge: KnowledgeMap, key: ApiKey | None) -> dict[str, Any]:
    """Answer a retrieval request: ``{"records": [...]}``, best first, possibly empty. Raises
    `RetrievalError`: 2001 when the map or the key does not allow the knowledge id, 400 for conditions
    that cannot be read (or a knowledge map filter that fails on a stored value), 503 for the backend."""
    target = knowledge.resolve(request.knowledge_id)
    if target is None or (key is not None and not key.allows_knowledge(request.knowledge_id, target.scope)):
        raise RetrievalError(404, UNKNOWN_KNOWLEDGE, "The knowledge does not exist")
    setting = request.retrieval_setting
    try:
        conditions = translate_metadata_condition(request.metadata_condition)
        hits = search_with(memory, request.query, target, conditions, setting.top_k, setting.score_threshold or None)
    except InvalidInput as exc:
        raise RetrievalError(400, BAD_REQUEST, str(exc)) from None
    except Unsupported as exc:
        raise RetrievalError(400, BAD_REQUEST, str(exc)) from None
    except (BackendUnavailable, AuthenticationFailed) as exc:
        raise RetrievalError(503, UNAVAILABLE, f"memory backend unavailable: {type(exc).__name__}") from exc
    return {"records": [hit_to_record(hit) for hit in hits]}


def search_with(memory: Memory, query: str, target: KnowledgeTarget, conditions: DifyFilter | None, top_k: int,
                threshold: float | None) -> list[SearchHit]:
    """The `top_k` best hits in the target's scope that match its filter and Dify's `conditions`.

    When the filter language says the conditions exactly, the backend filters. When they hold an
    ordering or time condition (`memdock.formats.dify.Ordered`), the backend filters by the necessary
    part and the up to `memdock.validation.MAX_LIMIT` best candidates are checked here: a match ranked
    below that many non-matching memories of the same scope is not found."""
    pushdown = None if conditions is None else conditions.pushdown
    where = _both(target.filter, pushdown)
    if conditions is None or conditions.exact:
        return memory.search(query, scope=target.scope, filter=where, limit=top_k, threshold=threshold,
                             mode=target.mode)
    candidates = memory.search(query, scope=target.scope, filter=where, limit=MAX_LIMIT, threshold=threshold,
                               mode=target.mode)
    return [hit for hit in candidates if conditions.matches(hit.record)][:top_k]


def _both(first: Filter | None, second: Filter | None) -> Filter | None:
    if first is None or second is None:
        return first or second
    return And((first, second))


def hit_to_record(hit: SearchHit) -> dict[str, Any]:
    """One Dify record: ``content``, ``score``, ``title`` and ``metadata``, always an object: the memory's
    own metadata, then ``document_id`` and ``memory_id`` (both the memory id: Dify's citations group by
    ``document_id``, so two memories never merge into one), ``created_at`` and ``updated_at``."""
    record = hit.record
    title = record.metadata.get("title")
    if not isinstance(title, str) or not title.strip():
        first_line = record.text.strip().splitlines()[0] if record.text.strip() else record.id
        title = first_line if len(first_line) <= TITLE_CHARS else first_line[: TITLE_CHARS - 1] + "…"
    metadata = {
        **record.metadata,
        "document_id": record.id,
        "memory_id": record.id,
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
    }
    return {"content": record.text, "score": hit.score, "title": title, "metadata": metadata}
