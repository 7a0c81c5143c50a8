"""The three mem0 HTTP dialects behind one small interface: the paths, payloads and answer shapes of each
(mem0's self-hosted server, tonori's mem0ai-api wrapper, mem0's hosted platform). `Mem0Backend` builds
memdock's protocol on top of `Dialect`.

Methods return raw mem0 items and history entries (read by `memdock.formats.mem0`). Reads are
sent as idempotent (the transport may retry them), writes never are. Scope ids are mem0's three:
``user_id``, ``agent_id``, ``run_id``.
"""

from __future__ import annotations

import contextlib
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from memdock.backends.mem0.transport import NotFoundAnswer, Transport
from memdock.errors import MalformedResponse, Unsupported

ScopeIds = dict[str, str]
Item = dict[str, Any]
Message = tuple[str | None, str]
"""(role, content); a role of None is a text that is not a chat message."""
PLATFORM_PAGE_SIZE = 100


class Dialect(ABC):
    """One mem0 HTTP dialect over a `Transport`. `max_items` is the longest listing asked for at once."""

    name: str
    messages_have_roles: bool = True
    """True when every memory is a chat message with a role (so a role-less text needs a marker)."""

    def __init__(self, transport: Transport, max_items: int) -> None:
        self.transport = transport
        self.max_items = max_items

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

    def _full(self, items: list[Item], scope: ScopeIds) -> list[Item]:
        if len(items) >= self.max_items:
            raise Unsupported(
                f"the scope {scope} holds {self.max_items} or more memories and the {self.name} dialect cannot page "
                "through them; raise max_items if the service allows, or narrow the scope"
            )
        return items

    @abstractmethod
    def check_credentials(self) -> None:
        """A harmless call that fails with `AuthenticationFailed` when the key is refused."""

    @abstractmethod
    def add(self, scope: ScopeIds, messages: list[Message], metadata: dict[str, Any] | None) -> list[str]:
        """Store each message as one memory; the ids the service gave them, in order."""

    @abstractmethod
    def get(self, memory_id: str) -> Item | None:
        """The item, or None when it does not exist."""

    @abstractmethod
    def list_scope(self, scope: ScopeIds) -> list[Item]:
        """Every item in the scope (`Unsupported` when the dialect cannot return them all)."""

    @abstractmethod
    def search(self, query: str, scope: ScopeIds, limit: int) -> list[Item]:
        """At most `limit` items with scores, best first."""

    @abstractmethod
    def update(self, memory_id: str, text: str, metadata: dict[str, Any]) -> None:
        """Replace text and metadata; `NotFoundAnswer` when missing."""

    def delete(self, memory_id: str) -> None:
        """Delete one memory; a missing one is ignored."""
        with contextlib.suppress(NotFoundAnswer):
            self._write("DELETE", self.memory_path(memory_id))

    @abstractmethod
    def memory_path(self, memory_id: str) -> str:
        """The path of one memory."""

    @abstractmethod
    def history(self, memory_id: str) -> list[Item]:
        """History entries, oldest first ([] when there are none)."""


def _segment(memory_id: str) -> str:
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


class ServerDialect(Dialect):
    """mem0's self-hosted REST server (``X-API-Key``)."""

    name = "server"

    def check_credentials(self) -> None:
        """List a scope nobody uses."""
        self._get("/memories", user_id="memdock-credential-check", top_k=1)

    def add(self, scope: ScopeIds, messages: list[Message], metadata: dict[str, Any] | None) -> list[str]:
        """``POST /memories`` with ``infer: false`` (no LLM; each message stored verbatim)."""
        body = {"messages": _chat(messages), **scope, "metadata": metadata, "infer": False}
        return _ids_from(self._results(self._write("POST", "/memories", body), "results"), len(messages), self.name)

    def get(self, memory_id: str) -> Item | None:
        """``GET /memories/{id}``: null when missing. mem0 ids are UUIDs; other ids cannot exist there (the
        real server answers them with a 502), so they are missing without asking."""
        try:
            uuid.UUID(memory_id)
        except ValueError:
            return None
        body = self._get(f"/memories/{_segment(memory_id)}")
        if body is not None and not isinstance(body, Mapping):
            raise MalformedResponse("expected an object or null", dialect=self.name, field="item")
        return dict(body) if body is not None else None

    def list_scope(self, scope: ScopeIds) -> list[Item]:
        """``GET /memories?ids&top_k=max_items``."""
        return self._full(self._results(self._get("/memories", **scope, top_k=self.max_items), "results"), scope)

    def search(self, query: str, scope: ScopeIds, limit: int) -> list[Item]:
        """``POST /search`` with the scope inside ``filters``."""
        return self._results(self._read_post("/search", {"query": query, "filters": scope, "top_k": limit}),
                             "results")

    def update(self, memory_id: str, text: str, metadata: dict[str, Any]) -> None:
        """``PUT /memories/{id}``."""
        self._write("PUT", self.memory_path(memory_id), {"text": text, "metadata": metadata})

    def memory_path(self, memory_id: str) -> str:
        """``/memories/{id}``."""
        return f"/memories/{_segment(memory_id)}"

    def history(self, memory_id: str) -> list[Item]:
        """``GET /memories/{id}/history`` (a bare list)."""
        return self._results(self._get(f"/memories/{_segment(memory_id)}/history"), "history")


class Mem0aiApiDialect(Dialect):
    """tonori/mem0ai-api: ``{"code", "data"}`` envelopes, ``Authorization: Bearer``, no get by id."""

    name = "mem0ai-api"
    messages_have_roles = False

    def check_credentials(self) -> None:
        """``GET /authorized``."""
        self._get("/authorized")

    def add(self, scope: ScopeIds, messages: list[Message], metadata: dict[str, Any] | None) -> list[str]:
        """``POST /store`` once per text (the dialect stores one text per call; roles stay in metadata)."""
        ids = []
        for role, content in messages:
            per_text = dict(metadata or {})
            if role:
                per_text["role"] = role
            body = {"data": content, **scope, "metadata": per_text or None}
            ids += _ids_from(self._results(self._write("POST", "/store", body), "data.results")[:1], 1, self.name)
        return ids

    def get(self, memory_id: str) -> Item | None:
        """No route returns one memory: read its history (which memdock's server stamps with the scope
        ids), then find it in a listing of that scope."""
        try:
            entries = self.history(memory_id)
        except NotFoundAnswer:
            return None
        if not entries or entries[-1].get("is_deleted") is True:
            return None
        scope = {k: entries[-1][k] for k in ("user_id", "agent_id", "run_id") if isinstance(entries[-1].get(k), str)}
        if not scope:
            raise Unsupported(
                "this mem0ai-api service keeps no scope in its history, so a memory cannot be read by id alone; "
                "read it through a scoped listing or search"
            )
        for item in self.list_scope(scope):
            if item.get("id") == memory_id:
                return item
        return None

    def list_scope(self, scope: ScopeIds) -> list[Item]:
        """``GET /retrieve?ids&limit=max_items``."""
        return self._full(self._results(self._get("/retrieve", **scope, limit=self.max_items), "data.results"),
                          scope)

    def search(self, query: str, scope: ScopeIds, limit: int) -> list[Item]:
        """``POST /search`` with top-level scope ids."""
        return self._results(self._read_post("/search", {"query": query, **scope, "limit": limit}), "data.results")

    def update(self, memory_id: str, text: str, metadata: dict[str, Any]) -> None:
        """``PUT /update/{id}?data=TEXT`` with the metadata as memdock's JSON-body extension; a service that
        ignores the extension is caught by re-reading the memory."""
        self._write("PUT", f"/update/{_segment(memory_id)}", {"metadata": metadata}, data=text)
        stored = self.get(memory_id)
        if stored is not None and (stored.get("metadata") or {}) != _without_role(metadata):
            raise Unsupported("this mem0ai-api service cannot update metadata (only text)")

    def memory_path(self, memory_id: str) -> str:
        """``/delete/{id}``."""
        return f"/delete/{_segment(memory_id)}"

    def history(self, memory_id: str) -> list[Item]:
        """``GET /retrieve/{id}`` (in this dialect, the history, not the memory)."""
        return self._results(self._get(f"/retrieve/{_segment(memory_id)}"), "data")


def _without_role(metadata: dict[str, Any]) -> dict[str, Any]:
    """Metadata as a mem0 item shows it: a string role is promoted out of it."""
    return {k: v for k, v in metadata.items() if not (k == "role" and isinstance(v, str))}


class PlatformDialect(Dialect):
    """mem0's hosted platform (what ``mem0.MemoryClient`` speaks): ``Authorization: Token``, v3 routes."""

    name = "platform"

    @staticmethod
    def _filters(scope: ScopeIds) -> dict[str, Any]:
        return {"AND": [{key: value} for key, value in scope.items()]}

    def check_credentials(self) -> None:
        """``GET /v1/ping/``."""
        self._get("/v1/ping/")

    def add(self, scope: ScopeIds, messages: list[Message], metadata: dict[str, Any] | None) -> list[str]:
        """``POST /v3/memories/add/`` with ``infer: false`` (answered synchronously with the ids)."""
        body = {"messages": _chat(messages), **scope, "metadata": metadata, "infer": False}
        return _ids_from(self._results(self._write("POST", "/v3/memories/add/", body), "results"), len(messages),
                         self.name)

    def get(self, memory_id: str) -> Item | None:
        """``GET /v1/memories/{id}/``; 404 when missing."""
        try:
            body = self._get(self.memory_path(memory_id))
        except NotFoundAnswer:
            return None
        if not isinstance(body, Mapping):
            raise MalformedResponse("expected an object", dialect=self.name, field="item")
        return dict(body)

    def list_scope(self, scope: ScopeIds) -> list[Item]:
        """``POST /v3/memories/?page=N&page_size=100`` ``{filters}``, following ``next`` to the end."""
        items: list[Item] = []
        page = 1
        while True:
            body = self._read_post("/v3/memories/", {"filters": self._filters(scope)}, page=page,
                                   page_size=PLATFORM_PAGE_SIZE)
            items += self._results(body, "results")
            if not isinstance(body, Mapping) or not body.get("next"):
                return items
            page += 1

    def search(self, query: str, scope: ScopeIds, limit: int) -> list[Item]:
        """``POST /v3/memories/search/`` ``{query, filters, top_k}``."""
        body = {"query": query, "filters": self._filters(scope), "top_k": limit}
        return self._results(self._read_post("/v3/memories/search/", body), "results")

    def update(self, memory_id: str, text: str, metadata: dict[str, Any]) -> None:
        """``PUT /v1/memories/{id}/``."""
        self._write("PUT", self.memory_path(memory_id), {"text": text, "metadata": metadata})

    def memory_path(self, memory_id: str) -> str:
        """``/v1/memories/{id}/``."""
        return f"/v1/memories/{_segment(memory_id)}/"

    def history(self, memory_id: str) -> list[Item]:
        """``GET /v1/memories/{id}/history/``."""
        try:
            return self._results(self._get(f"/v1/memories/{_segment(memory_id)}/history/"), "history")
        except NotFoundAnswer:
            return []


DIALECTS: dict[str, type[Dialect]] = {"server": ServerDialect, "mem0ai-api": Mem0aiApiDialect,
                                      "platform": PlatformDialect}
AUTH_HEADERS = {"server": ("X-API-Key", "{key}"), "mem0ai-api": ("Authorization", "Bearer {key}"),
                "platform": ("Authorization", "Token {key}")}
