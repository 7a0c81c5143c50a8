"""tonori/mem0ai-api (a FastAPI wrapper around mem0 0.0.9), as the real service answers, and what memdock
does where the service cannot keep a promise.

Its shapes: ``{"code": 0, "data": ...}`` envelopes (a refused key is HTTP 200 ``code: 401``), ``data`` a
BARE list; items ``{"id", "text", "metadata", "score"?}`` whose metadata holds the user's keys AND the
service's own (``user_id``/``agent_id``/``run_id``, ``data`` = the text, ``created_at`` = epoch seconds);
search scores are the RAW cosine (-1..1); history entries ``{"id", "memory_id", "prev_value",
"new_value", "event": "add"|"update"|"delete", "timestamp": naive UTC, "is_deleted": 0|1}``.

What memdock does about its gaps:

- **update is refused** (`Unsupported`): ``PUT /update/{id}?data=`` replaces the stored payload with the
  text alone, losing the metadata, the scope ids and ``created_at`` (the memory drops out of its user).
- **get** has no route: the history (``GET /retrieve/{id}``, 404 once deleted) says whether the memory
  lives, then the memory is found in the service's listing (``GET /retrieve?limit=max_items``, unscoped:
  an id alone names no scope).
- **store runs mem0's LLM**, which may answer zero events, several, rewritten texts, or update/delete
  events on other memories: the new memory is the ``add`` event whose text is exactly the one sent (else
  the memory of exactly this text and scope in a listing); memories the call added with other texts are
  deleted again; when none holds the text, `Unsupported` says so. Never another memory's id.
- **history after delete** is gone (the service answers 404): declared (no `HISTORY_AFTER_DELETE`).
- **parallel writes** give sporadic 500s (one SQLite connection shared by threads): no
  `CONCURRENT_WRITES`; reads are retried on a 500, writes never.
- a request without a scope id is never sent (the service would store, search or list every user).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from memdock.backends.mem0.dialects import SHARED_CAPABILITIES, Dialect, Message, segment
from memdock.backends.mem0.transport import NotFoundAnswer
from memdock.errors import BackendUnavailable, MalformedResponse, MemdockError, Unsupported
from memdock.formats.mem0 import MEM0_SCOPE_FIELDS, item_score
from memdock.models import EventKind, HistoryEvent, MemoryRecord, Scope, SearchHit
from memdock.validation import text_hash

DIALECT = "mem0ai-api"
SERVICE_KEYS = ("data", "created_at", "updated_at")
"""Keys mem0 0.0.9 keeps in an item's metadata beside the scope ids (the text and its times)."""
EVENTS = {"add": EventKind.ADD, "update": EventKind.UPDATE, "delete": EventKind.DELETE}
UPDATE_REFUSED = (
    "the mem0ai-api dialect cannot update a memory safely: tonori's PUT /update/{id} replaces the stored "
    "payload with the new text alone, so the memory would lose its metadata, its user_id/agent_id/run_id and "
    "created_at and vanish from its scope; delete it and add the new text instead"
)
GONE = ("mem0ai-api answered 404: its collection is gone (after /reset-all it stays gone until the service "
        "restarts)")
log = logging.getLogger(__name__)


class Mem0aiApiDialect(Dialect):
    """tonori/mem0ai-api (see the module docstring)."""

    name = DIALECT
    capabilities = SHARED_CAPABILITIES
    messages_have_roles = False
    reserved_metadata = frozenset(SERVICE_KEYS) | frozenset(MEM0_SCOPE_FIELDS)

    def check_credentials(self) -> None:
        """``GET /authorized``."""
        self._get("/authorized")

    def _listing(self, method: str, path: str, **kwargs: Any) -> list[Any]:
        """A read answering a bare list; its 404 means the service lost its collection (after
        ``/reset-all`` every call answers 404 until the service restarts)."""
        try:
            if method == "GET":
                return self._data_list(self._get(path, **kwargs), "data")
            return self._data_list(self._read_post(path, kwargs), "data")
        except NotFoundAnswer:
            raise BackendUnavailable(GONE) from None

    def _data_list(self, body: Any, what: str) -> list[Any]:
        if not isinstance(body, list):
            raise MalformedResponse("expected a list under data", dialect=self.name, field=what)
        return body

    # -- writes --------------------------------------------------------------------------------------------

    def add(self, scope: Scope, messages: list[Message], metadata: dict[str, Any] | None) -> list[str]:
        """``POST /store {data, ids, metadata}`` once per text (roles stay in metadata); see the module
        docstring for how the events of mem0's LLM are read. If a later text fails, the earlier ones of
        this call stay stored (`Mem0Backend.add` deletes them)."""
        ids = []
        for role, content in messages:
            per_text = dict(metadata or {})
            if role:
                per_text["role"] = role
            ids.append(self._store(scope, content, per_text))
        return ids

    def _store(self, scope: Scope, text: str, metadata: dict[str, Any]) -> str:
        body = {"data": text, **self._ids(scope), "metadata": metadata}
        try:
            answer = self._write("POST", "/store", body)
        except NotFoundAnswer:
            raise BackendUnavailable(GONE) from None
        events = [_event(e) for e in self._data_list(answer, "data")]
        exact = [memory_id for kind, memory_id, data in events if kind == "add" and data == text]
        extra_adds = [memory_id for kind, memory_id, data in events if kind == "add" and data != text] + exact[1:]
        others = [(kind, memory_id) for kind, memory_id, _ in events if kind != "add"]
        if others:
            log.warning("mem0ai-api's LLM also changed other memories while storing one: %s", others)
        try:
            for memory_id in extra_adds:  # memories this call created that are not the text sent
                self.delete(memory_id)
        except MemdockError:
            for memory_id in exact[:1]:  # never leave this text stored behind a failed call
                with contextlib.suppress(MemdockError):
                    self.delete(memory_id)
            raise
        if exact:
            return exact[0]
        holder = next((r for r in self.list_scope(scope) if r.text == text and r.scope == scope), None)
        if holder is not None:
            return holder.id
        raise Unsupported(
            f"mem0ai-api did not store the text as given: its LLM answered {len(events)} event(s) "
            f"({', '.join(kind for kind, _, _ in events) or 'none'}) and no memory of this scope holds the text; "
            "mem0 0.0.9 always infers facts before storing, so this service cannot keep texts verbatim"
        )

    def update(self, record: MemoryRecord, metadata: dict[str, Any]) -> None:
        """Refused: see `UPDATE_REFUSED`."""
        raise Unsupported(UPDATE_REFUSED)

    def memory_path(self, memory_id: str) -> str:
        """``/delete/{id}``."""
        return f"/delete/{segment(memory_id)}"

    # -- reads ---------------------------------------------------------------------------------------------

    def get(self, memory_id: str) -> MemoryRecord | None:
        """The memory, found through its history and the service's listing (see the module docstring)."""
        if not self._entries(memory_id):
            return None
        items = self._listing("GET", "/retrieve", limit=self.max_items)
        for item in items:
            if isinstance(item, Mapping) and item.get("id") == memory_id:
                return item_to_record(item)
        if len(items) >= self.max_items:
            raise Unsupported(
                f"mem0ai-api holds {self.max_items} or more memories and lists no memory by id; memdock cannot "
                "find this one (raise max_items, or read it through a scoped list or search)")
        return None

    def get_many(self, memory_ids: list[str]) -> dict[str, MemoryRecord]:
        """One listing of the whole service for all of them (`get` reads one per id); id by id, as `get`,
        when the listing is cut off at `max_items`."""
        if len(memory_ids) < 2:
            return super().get_many(memory_ids)
        items = self._listing("GET", "/retrieve", limit=self.max_items)
        if len(items) >= self.max_items:
            return super().get_many(memory_ids)
        wanted = set(memory_ids)
        return {item["id"]: item_to_record(item) for item in items
                if isinstance(item, Mapping) and item.get("id") in wanted}

    def list_scope(self, scope: Scope) -> list[MemoryRecord]:
        """``GET /retrieve?ids&limit=max_items``."""
        items = self._listing("GET", "/retrieve", **self._ids(scope), limit=self.max_items)
        return [item_to_record(item) for item in self._full(items, scope)]

    def search(self, query: str, scope: Scope, limit: int) -> list[SearchHit]:
        """``POST /search {query, ids, limit}``; the raw cosine becomes the clamped cosine."""
        return [SearchHit(record=item_to_record(item), score=item_score(item, self.name))
                for item in self._listing("POST", "/search", query=query, **self._ids(scope), limit=limit)]

    def _entries(self, memory_id: str) -> list[Any]:
        """``GET /retrieve/{id}`` (the history); [] when missing or deleted (the service answers 404)."""
        try:
            entries = self._data_list(self._get(f"/retrieve/{segment(memory_id)}"), "data")
        except NotFoundAnswer:
            return []
        if entries and isinstance(entries[-1], Mapping) and entries[-1].get("is_deleted") in (1, True):
            return []
        return entries

    def history(self, memory_id: str, scope: Scope | None) -> list[HistoryEvent]:
        """The service's history of a live memory; [] once deleted (the service forgets it)."""
        entries = self._entries(memory_id)
        if not entries or scope is None:  # no memory to take the scope from: gone
            return []
        return [history_entry_to_event(entry, scope) for entry in entries]


def _event(value: Any) -> tuple[str, str, Any]:
    """(event, id, data) of one store event."""
    if not isinstance(value, Mapping):
        raise MalformedResponse("must be an object", dialect=DIALECT, field="data[]")
    kind, memory_id = value.get("event"), value.get("id")
    if kind not in EVENTS or not isinstance(memory_id, str) or not memory_id:
        raise MalformedResponse(f"unknown store event {kind!r} (or no id)", dialect=DIALECT, field="data[].event")
    return str(kind), memory_id, value.get("data")


def item_to_record(item: Any) -> MemoryRecord:
    """A tonori item as a memdock record: the scope ids and the service's keys come out of ``metadata``;
    ``created_at`` is epoch seconds (``updated_at`` too, after tonori's own update, which drops
    ``created_at``). A memory without any scope id (stored unscoped, or updated by tonori) cannot be
    placed in a memdock scope: `Unsupported`."""
    if not isinstance(item, Mapping):
        raise MalformedResponse(f"must be an object, got {type(item).__name__}", dialect=DIALECT, field="item")
    memory_id, text = item.get("id"), item.get("text")
    if not isinstance(memory_id, str) or not memory_id:
        raise MalformedResponse("must be a non-empty string", dialect=DIALECT, field="id")
    if not isinstance(text, str) or not text:
        raise MalformedResponse("must be a non-empty string", dialect=DIALECT, field="text")
    raw = item.get("metadata")
    if raw is not None and not isinstance(raw, Mapping):
        raise MalformedResponse("must be an object or null", dialect=DIALECT, field="metadata")
    metadata = dict(raw or {})
    ids = {}
    for name in MEM0_SCOPE_FIELDS:
        value = metadata.pop(name, None)
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            raise MalformedResponse("must be a non-empty string", dialect=DIALECT, field=f"metadata.{name}")
        ids[name] = value
    metadata.pop("data", None)
    created = _epoch(metadata.pop("created_at", None), "metadata.created_at")
    updated = _epoch(metadata.pop("updated_at", None), "metadata.updated_at")
    if not ids:
        raise Unsupported(f"mem0ai-api memory {memory_id} has no user_id, agent_id or run_id (stored unscoped, "
                          "or updated through tonori's own update, which drops them): memdock cannot scope it")
    if created is None:
        if updated is None:
            raise MalformedResponse("is missing", dialect=DIALECT, field="metadata.created_at")
        created = updated
    return MemoryRecord(id=memory_id, text=text, scope=Scope(**ids), metadata=metadata, hash=text_hash(text),
                        created_at=created, updated_at=max(updated or created, created))


def history_entry_to_event(entry: Any, scope: Scope) -> HistoryEvent:
    """A tonori history entry as a memdock event (the entry carries no scope: `scope` is the memory's)."""
    if not isinstance(entry, Mapping):
        raise MalformedResponse("must be an object", dialect=DIALECT, field="history")
    kind = entry.get("event")
    if kind not in EVENTS:
        raise MalformedResponse(f"unknown event {kind!r}", dialect=DIALECT, field="history.event")
    values = {}
    for key in ("id", "memory_id"):
        value = entry.get(key)
        if not isinstance(value, str) or not value:
            raise MalformedResponse("must be a non-empty string", dialect=DIALECT, field=f"history.{key}")
        values[key] = value
    for key in ("prev_value", "new_value"):
        if entry.get(key) is not None and not isinstance(entry.get(key), str):
            raise MalformedResponse("must be a string or null", dialect=DIALECT, field=f"history.{key}")
    return HistoryEvent(id=values["id"], memory_id=values["memory_id"], event=EVENTS[str(kind)],
                        old_text=entry.get("prev_value"), new_text=entry.get("new_value"), scope=scope,
                        created_at=_naive_utc(entry.get("timestamp")))


def _epoch(value: Any, field: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedResponse("must be epoch seconds", dialect=DIALECT, field=field)
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise MalformedResponse(f"not a time: {value!r}", dialect=DIALECT, field=field) from None


def _naive_utc(value: Any) -> datetime:
    """mem0 0.0.9 stamps history with ``datetime.utcnow()``: a naive UTC time (``YYYY-MM-DD hh:mm:ss.f``)."""
    if not isinstance(value, str):
        raise MalformedResponse("must be a time string", dialect=DIALECT, field="history.timestamp")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise MalformedResponse(f"not a time: {value[:40]!r}", dialect=DIALECT, field="history.timestamp") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)

