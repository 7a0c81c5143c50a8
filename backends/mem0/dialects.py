"""The mem0 HTTP dialects behind one small interface (`Dialect`): the paths, payloads and answer shapes of
mem0's self-hosted server (`ServerDialect`) and mem0's hosted platform (`PlatformDialect`) here, tonori's
mem0ai-api wrapper in `memdock.backends.mem0.mem0ai_api`. `Mem0Backend` builds memdock's protocol on top.

A dialect parses what its service answers into memdock records, hits and events (mem0's item shapes are
read by `memdock.formats.mem0`), and declares what its service can promise (`capabilities`). Reads are sent
as idempotent (the transport may retry them), writes never are. Scope ids are mem0's three: ``user_id``,
``agent_id``, ``run_id``; a dialect never sends a request without one.
"""

from __future__ import annotations

import contextlib
import math
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, TypeGuard
from urllib.parse import quote

from memdock.backends.mem0.transport import NotFoundAnswer, Transport
from memdock.capabilities import Capability
from memdock.errors import MalformedResponse, MemoryNotFound, ScopeRequired, Unsupported
from memdock.formats.mem0 import REMOVED_KEYS_MARKER, history_entry_to_event, item_score, item_to_record
from memdock.models import HistoryEvent, MemoryRecord, Scope, SearchHit

Item = dict[str, Any]
Message = tuple[str | None, str]
"""(role, content); a role of None is a text that is not a chat message."""
PLATFORM_PAGE_SIZE = 100
SHARED_CAPABILITIES = frozenset({
    Capability.SERVER_SIDE_EMBEDDING, Capability.FILTER_EQUALITY, Capability.FILTER_RANGE, Capability.CONTAINS,
    Capability.HISTORY, Capability.PERSISTENCE, Capability.NESTED_METADATA,
})
"""What every dialect offers: the service embeds and persists; filters beyond the scope are evaluated by
memdock; each service keeps a history of live memories."""


class Dialect(ABC):
    """One mem0 HTTP dialect over a `Transport`. `max_items` is the longest listing asked for at once."""

    name: ClassVar[str]
    capabilities: ClassVar[frozenset[Capability]] = SHARED_CAPABILITIES
    messages_have_roles: ClassVar[bool] = True
    """True when every memory is a chat message with a role (so a role-less text needs a marker)."""
    reserved_metadata: ClassVar[frozenset[str]] = frozenset()
    """Metadata keys the service keeps for itself (writing them would corrupt or hide the memory)."""

    def __init__(self, transport: Transport, max_items: int) -> None:
        self.transport = transport
        self.max_items = max_items

    # -- requests ------------------------------------------------------------------------------------------

    def _get(self, path: str, **params: Any) -> Any:
        return self.transport.request("GET", path, idempotent=True, params=params).body

    def _read_post(self, path: str, body: Any, **params: Any) -> Any:
        return self.transport.request("POST", path, idempotent=True, json_body=body, params=params).body

    def _write(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        return self.transport.request(method, path, idempotent=False, json_body=body, params=params).body

    def _results(self, body: Any, what: str) -> list[Item]:
        """A list of items: bare, or under ``results`` (both forms exist across mem0 versions)."""
        items = body.get("results") if isinstance(body, Mapping) else body
        if not isinstance(items, list):
            raise MalformedResponse("expected a list (or {\"results\": [...]})", dialect=self.name, field=what)
        return items

    def _full(self, items: list[Any], scope: Scope, asked: int | None = None) -> list[Any]:
        """`items`, a listing of the scope that asked for `asked` (default `max_items`) items; `Unsupported`
        when it may be cut off (a scope is never read in part)."""
        asked = self.max_items if asked is None else asked
        if len(items) >= asked:
            raise Unsupported(
                f"the scope {scope.ids()} holds {asked} or more memories and the {self.name} dialect "
                f"cannot page through them; {self._raise_hint()}"
            )
        return items

    def _raise_hint(self) -> str:
        return "raise max_items if the service allows, or narrow the scope"

    def _ids(self, scope: Scope) -> dict[str, str]:
        """The scope as mem0's ids; never empty (mem0 services read or write every user without one)."""
        ids = scope.ids()
        if scope.app_id is not None:
            raise Unsupported(f"the mem0 {self.name} dialect has no app_id; use user_id, agent_id or run_id")
        if not ids:
            raise ScopeRequired("at least one of user_id, agent_id, run_id is required")
        return ids

    def _record(self, item: Any, scope: Scope | None = None) -> MemoryRecord:
        return item_to_record(item, self.name, fallback_scope=scope)

    # -- the interface -------------------------------------------------------------------------------------

    @abstractmethod
    def check_credentials(self) -> None:
        """A harmless call that fails with `AuthenticationFailed` when the key is refused."""

    @abstractmethod
    def add(self, scope: Scope, messages: list[Message], metadata: dict[str, Any] | None) -> list[str]:
        """Store each message as one memory; the ids the service gave them, one per message, in order."""

    @abstractmethod
    def get(self, memory_id: str) -> MemoryRecord | None:
        """The memory, or None when it does not exist."""

    def get_many(self, memory_ids: list[str]) -> dict[str, MemoryRecord]:
        """The memories among `memory_ids` that exist, by id. The default asks `get` id by id; a dialect
        whose `get` reads a whole listing reads it once for all of them."""
        found = {memory_id: self.get(memory_id) for memory_id in dict.fromkeys(memory_ids)}
        return {memory_id: record for memory_id, record in found.items() if record is not None}

    @abstractmethod
    def list_scope(self, scope: Scope) -> list[MemoryRecord]:
        """Every memory the service lists for the scope (`Unsupported` when it cannot return them all)."""

    @abstractmethod
    def search(self, query: str, scope: Scope, limit: int) -> list[SearchHit]:
        """At most `limit` candidates with memdock scores (the clamped cosine), in the service's order."""

    def duplicate_candidates(self, text: str, scope: Scope) -> list[SearchHit] | None:
        """Candidates for a stored copy of `text` in `scope` from a search cheaper than `search`'s, when the
        dialect can tell that they include any copy; None (the default): the caller uses `search`."""
        return None

    @abstractmethod
    def update(self, record: MemoryRecord, metadata: dict[str, Any]) -> None:
        """Give the memory `record.id` the text `record.text` and exactly the wire `metadata`;
        `MemoryNotFound` when missing, `Unsupported` when the service cannot do it safely."""

    def delete(self, memory_id: str) -> None:
        """Delete one memory; a missing one is ignored."""
        with contextlib.suppress(NotFoundAnswer):
            self._write("DELETE", self.memory_path(memory_id))

    @abstractmethod
    def memory_path(self, memory_id: str) -> str:
        """The path of one memory."""

    @abstractmethod
    def history(self, memory_id: str, scope: Scope | None) -> list[HistoryEvent]:
        """Events of one memory, oldest first ([] when there are none). `scope` is the memory's, when
        it still exists (mem0's entries carry none)."""


def segment(memory_id: str) -> str:
    """A memory id as one URL path segment."""
    return quote(memory_id, safe="")


def _chat(messages: list[Message]) -> list[dict[str, str]]:
    """mem0 chat messages; a text without a role is sent as the user's (its metadata carries the marker)."""
    return [{"role": role or "user", "content": content} for role, content in messages]


def _ids_from(results: list[Item], expected: int, dialect: str) -> list[str]:
    ids = [r.get("id") if isinstance(r, Mapping) else None for r in results]
    if len(ids) != expected or not all(isinstance(i, str) and i for i in ids):
        raise MalformedResponse(f"expected {expected} stored memories with ids, got {len(ids)}", dialect=dialect,
                                field="results")
    return [str(i) for i in ids]


def _is_uuid(memory_id: str) -> bool:
    try:
        uuid.UUID(memory_id)
    except ValueError:
        return False
    return True


DUPLICATE_SEARCH = 20
"""How many results the server's duplicate check asks for first (`ServerDialect.duplicate_candidates`)."""
LIST_LIMIT = 1000
"""The most memories mem0's server lists at once (``top_k`` of ``GET /memories`` is at most 1000; it has no
paging), whatever `max_items` says."""


class ServerDialect(Dialect):
    """mem0's self-hosted REST server (``X-API-Key``), as mem0 2.x really answers:

    - search sends ``threshold: 0`` (the server's hidden default, 0.1, would drop candidates memdock filters
      itself) and ``explain: true``, and reports ``score_details.semantic_score`` (the cosine), not the
      ``score`` the server blends with BM25; it asks for `max_items` candidates so that re-ranking by the
      semantic score is exact below that size;
    - ``PUT`` merges metadata into the stored one, so removed keys are listed under `REMOVED_KEYS_MARKER`
      in the stored metadata and hidden by the reader (replace semantics, see `update`);
    - ``GET /memories/{id}`` answers ``null`` for a missing id; non-UUID ids are answered 502, so they are
      treated as missing without asking; history survives deletion.
    """

    name = "server"
    capabilities = SHARED_CAPABILITIES | {Capability.UPDATE, Capability.HISTORY_AFTER_DELETE,
                                          Capability.CONCURRENT_WRITES}
    reserved_metadata = frozenset({"data", "hash", "created_at", "updated_at", "id", "text_lemmatized",
                                   "attributed_to", "actor_id", "expiration_date", "user_id", "agent_id", "run_id"})

    def check_credentials(self) -> None:
        """List a scope nobody uses."""
        self._get("/memories", user_id="memdock-credential-check", top_k=1)

    def add(self, scope: Scope, messages: list[Message], metadata: dict[str, Any] | None) -> list[str]:
        """``POST /memories`` with ``infer: false`` (no LLM; each message stored verbatim)."""
        body = {"messages": _chat(messages), **self._ids(scope), "metadata": metadata, "infer": False}
        return _ids_from(self._results(self._write("POST", "/memories", body), "results"), len(messages), self.name)

    def _raw(self, memory_id: str) -> Item | None:
        if not _is_uuid(memory_id):
            return None
        body = self._get(self.memory_path(memory_id))
        if body is not None and not isinstance(body, Mapping):
            raise MalformedResponse("expected an object or null", dialect=self.name, field="item")
        return dict(body) if body is not None else None

    def get(self, memory_id: str) -> MemoryRecord | None:
        """``GET /memories/{id}``: null when missing."""
        item = self._raw(memory_id)
        return None if item is None else self._record(item)

    def list_scope(self, scope: Scope) -> list[MemoryRecord]:
        """``GET /memories?ids&top_k=N``, N = `max_items` up to the server's `LIST_LIMIT`."""
        asked = min(self.max_items, LIST_LIMIT)
        items = self._results(self._get("/memories", **self._ids(scope), top_k=asked), "results")
        return [self._record(item, scope) for item in self._full(items, scope, asked)]

    def _raise_hint(self) -> str:
        return (f"mem0's server lists at most {LIST_LIMIT} memories of a scope (GET /memories has no paging), "
                "so keep its scopes smaller (for example one run_id per conversation) or narrow the scope")

    def search(self, query: str, scope: Scope, limit: int) -> list[SearchHit]:
        """``POST /search`` with the scope inside ``filters``, ``threshold: 0``, ``explain: true``."""
        body = {"query": query, "filters": self._ids(scope), "top_k": max(limit, self.max_items), "threshold": 0,
                "explain": True}
        return [SearchHit(record=self._record(item, scope), score=_semantic_score(item, self.name))
                for item in self._results(self._read_post("/search", body), "results")]

    def duplicate_candidates(self, text: str, scope: Scope) -> list[SearchHit] | None:
        """The nearest memories to `text` from a search of `DUPLICATE_SEARCH` results (`search` asks for
        `max_items`), when that is enough to hold a stored copy of `text`; None when it may not be.

        The server ranks its semantic candidates (``max(top_k * 4, 60)`` of them) by its blended score, at
        least ``semantic / max_possible_score``, and a stored copy of the text has the semantic score 1
        (the same text, the same embedding). So a copy is among the results when they are fewer than asked
        (the whole candidate pool came back), or when the last of them scores below ``0.99 /
        max_possible_score`` (the copy would rank above it). Otherwise, or when the server explains no
        score, None: the caller searches wide."""
        body = {"query": text, "filters": self._ids(scope), "top_k": DUPLICATE_SEARCH, "threshold": 0,
                "explain": True}
        items = self._results(self._read_post("/search", body), "results")
        hits = [SearchHit(record=self._record(item, scope), score=_semantic_score(item, self.name)) for item in items]
        if len(items) < DUPLICATE_SEARCH:
            return hits
        blends = [_blend(item) for item in items]
        scores = [blend for blend in blends if blend is not None]
        if len(scores) < len(blends):
            return None
        lowest, divisor = min(score for score, _ in scores), max(bound for _, bound in scores)
        return hits if lowest < 0.99 / divisor else None

    def update(self, record: MemoryRecord, metadata: dict[str, Any]) -> None:
        """``PUT /memories/{id}`` ``{text, metadata}``. The server merges ``metadata`` into what it stores
        and never removes a key, so every stored key the new metadata lacks is listed under
        `REMOVED_KEYS_MARKER` (the reader hides them): what memdock reads back is exactly `metadata`.
        The stored keys are read first (``GET``), the write is sent once."""
        stored = self._raw(record.id)
        if stored is None:
            raise MemoryNotFound(record.id)
        kept = stored.get("metadata")
        stored_keys = set(kept) if isinstance(kept, Mapping) else set()
        removed = sorted(stored_keys - set(metadata) - {REMOVED_KEYS_MARKER})
        wire = dict(metadata)
        if removed or REMOVED_KEYS_MARKER in stored_keys:
            wire[REMOVED_KEYS_MARKER] = removed
        try:
            self._write("PUT", self.memory_path(record.id), {"text": record.text, "metadata": wire})
        except NotFoundAnswer:
            raise MemoryNotFound(record.id) from None

    def delete(self, memory_id: str) -> None:
        """``DELETE /memories/{id}``; missing and non-UUID ids are ignored."""
        if _is_uuid(memory_id):
            super().delete(memory_id)

    def memory_path(self, memory_id: str) -> str:
        """``/memories/{id}``."""
        return f"/memories/{segment(memory_id)}"

    def history(self, memory_id: str, scope: Scope | None) -> list[HistoryEvent]:
        """``GET /memories/{id}/history`` (a bare list; ``[]`` for a missing id)."""
        if not _is_uuid(memory_id):
            return []
        entries = self._results(self._get(f"{self.memory_path(memory_id)}/history"), "history")
        return [history_entry_to_event(entry, self.name, fallback_scope=scope) for entry in entries]


def _blend(item: Any) -> tuple[float, float] | None:
    """(``score``, ``score_details.max_possible_score``) of a search result: the server's blended score and
    its divisor; None when either is missing or not a positive number."""
    details = item.get("score_details") if isinstance(item, Mapping) else None
    score = item.get("score") if isinstance(item, Mapping) else None
    bound = details.get("max_possible_score") if isinstance(details, Mapping) else None
    if not (_finite(score) and _finite(bound)) or float(bound) <= 0:
        return None
    return float(score), float(bound)


def _finite(value: Any) -> TypeGuard[float]:
    """A number (not a bool) that is neither infinite nor NaN."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _semantic_score(item: Any, dialect: str) -> float:
    """``score_details.semantic_score`` (the cosine) when the server explains its score, else ``score``
    (servers without hybrid ranking report the cosine there); clamped to [0, 1]."""
    details = item.get("score_details") if isinstance(item, Mapping) else None
    if details is None:
        return item_score(item, dialect)
    if not isinstance(details, Mapping):
        raise MalformedResponse("must be an object", dialect=dialect, field="score_details")
    return item_score({"score": details.get("semantic_score")}, dialect, field="score_details.semantic_score")


class PlatformDialect(Dialect):
    """mem0's hosted platform (what ``mem0.MemoryClient`` speaks): ``Authorization: Token``, v3 routes."""

    name = "platform"
    capabilities = SHARED_CAPABILITIES | {Capability.UPDATE, Capability.CONCURRENT_WRITES}

    def _filters(self, scope: Scope) -> dict[str, Any]:
        return {"AND": [{key: value} for key, value in self._ids(scope).items()]}

    def check_credentials(self) -> None:
        """``GET /v1/ping/``."""
        self._get("/v1/ping/")

    def add(self, scope: Scope, messages: list[Message], metadata: dict[str, Any] | None) -> list[str]:
        """``POST /v3/memories/add/`` with ``infer: false`` (answered synchronously with the ids)."""
        body = {"messages": _chat(messages), **self._ids(scope), "metadata": metadata, "infer": False}
        return _ids_from(self._results(self._write("POST", "/v3/memories/add/", body), "results"), len(messages),
                         self.name)

    def get(self, memory_id: str) -> MemoryRecord | None:
        """``GET /v1/memories/{id}/``; 404 when missing."""
        try:
            body = self._get(self.memory_path(memory_id))
        except NotFoundAnswer:
            return None
        if not isinstance(body, Mapping):
            raise MalformedResponse("expected an object", dialect=self.name, field="item")
        return self._record(body)

    def list_scope(self, scope: Scope) -> list[MemoryRecord]:
        """``POST /v3/memories/?page=N&page_size=100`` ``{filters}``, following ``next`` to the end."""
        items: list[Item] = []
        page = 1
        while True:
            body = self._read_post("/v3/memories/", {"filters": self._filters(scope)}, page=page,
                                   page_size=PLATFORM_PAGE_SIZE)
            items += self._results(body, "results")
            if not isinstance(body, Mapping) or not body.get("next"):
                return [self._record(item, scope) for item in items]
            page += 1

    def search(self, query: str, scope: Scope, limit: int) -> list[SearchHit]:
        """``POST /v3/memories/search/`` ``{query, filters, top_k}``."""
        body = {"query": query, "filters": self._filters(scope), "top_k": limit}
        return [SearchHit(record=self._record(item, scope), score=item_score(item, self.name))
                for item in self._results(self._read_post("/v3/memories/search/", body), "results")]

    def update(self, record: MemoryRecord, metadata: dict[str, Any]) -> None:
        """``PUT /v1/memories/{id}/``."""
        try:
            self._write("PUT", self.memory_path(record.id), {"text": record.text, "metadata": metadata})
        except NotFoundAnswer:
            raise MemoryNotFound(record.id) from None

    def memory_path(self, memory_id: str) -> str:
        """``/v1/memories/{id}/``."""
        return f"/v1/memories/{segment(memory_id)}/"

    def history(self, memory_id: str, scope: Scope | None) -> list[HistoryEvent]:
        """``GET /v1/memories/{id}/history/``."""
        try:
            entries = self._results(self._get(f"/v1/memories/{segment(memory_id)}/history/"), "history")
        except NotFoundAnswer:
            return []
        return [history_entry_to_event(entry, self.name, fallback_scope=scope) for entry in entries]
