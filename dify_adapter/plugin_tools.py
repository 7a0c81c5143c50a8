"""What the Dify plugin's tools do, without importing `dify_plugin` (which patches the whole process with
gevent): each tool is `run_tool(name, credentials, parameters)`, returning `ToolOutput`s that the thin
`Tool` classes in the plugin folder turn into Dify messages.

Credentials (the provider's settings in Dify): ``backend_url`` (any memdock URL), optional ``api_key``
(a mem0 service's key, or PostgreSQL's password), optional ``default_user_id`` / ``default_agent_id``
(used when a call names no scope id). One `Memory` is opened per backend and reused.

Every tool yields a JSON message and a short text; ``search_memory`` also yields the variable
``memories``, a text block an LLM node can take. Errors (bad JSON, no scope, a missing memory, an
unreachable backend) come back as a JSON ``{"error": {...}}`` and a text starting with ``Error:``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit

from memdock.errors import InvalidInput, MemdockError
from memdock.memory import Memory
from memdock.models import HistoryEvent, MemoryRecord, Scope, WriteResult
from memdock.validation import make_scope

TOOL_NAMES = ("add_memory", "search_memory", "get_all_memories", "get_memory", "update_memory", "delete_memory",
              "delete_all_memories", "get_memory_history")
CREDENTIALS = ("backend_url", "api_key", "default_user_id", "default_agent_id")
SCOPE_PARAMETERS = ("user_id", "agent_id", "run_id")
PARAMETERS: dict[str, tuple[str, ...]] = {
    "add_memory": (*SCOPE_PARAMETERS, "text", "user", "assistant", "metadata"),
    "search_memory": (*SCOPE_PARAMETERS, "query", "top_k", "threshold", "filters"),
    "get_all_memories": (*SCOPE_PARAMETERS, "top_k", "filters"),
    "get_memory": (*SCOPE_PARAMETERS, "memory_id"),
    "update_memory": (*SCOPE_PARAMETERS, "memory_id", "text", "metadata"),
    "delete_memory": (*SCOPE_PARAMETERS, "memory_id"),
    "delete_all_memories": (*SCOPE_PARAMETERS, "filters"),
    "get_memory_history": (*SCOPE_PARAMETERS, "memory_id"),
}
"""The parameters each tool reads (its YAML must declare exactly these)."""


@dataclass(frozen=True)
class ToolOutput:
    """One message: ``json`` (an object), ``text`` (a string) or ``variable`` (`name` = `value`)."""

    kind: Literal["json", "text", "variable"]
    value: Any
    name: str = ""


class CredentialsError(Exception):
    """The provider credentials cannot open a working backend; the message says what is wrong."""


_memories: dict[str, Memory] = {}
_memories_lock = threading.Lock()


def backend_url(credentials: Mapping[str, Any]) -> str:
    """The memdock URL the credentials select, with ``api_key`` placed where that backend reads it."""
    url = str(credentials.get("backend_url") or "").strip()
    if not url:
        raise InvalidInput("backend_url is required (e.g. chroma+http://host:8000 or pgvector://user@host/db)",
                           field="backend_url")
    key = str(credentials.get("api_key") or "").strip()
    if not key:
        return url
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    if parts.scheme.startswith("mem0+"):
        params.setdefault("api_key", key)
    elif parts.scheme in ("pgvector", "postgresql", "postgres"):
        params.setdefault("password", key)
    else:
        raise InvalidInput(f"api_key is not used by {parts.scheme}:// backends; leave it empty", field="api_key")
    return parts._replace(query=urlencode(params)).geturl()


def memory_for(credentials: Mapping[str, Any]) -> Memory:
    """The open Memory for these credentials (opened once per URL and process)."""
    url = backend_url(credentials)
    with _memories_lock:
        if url not in _memories:
            _memories[url] = Memory.open(url)
        return _memories[url]


def validate_credentials(credentials: Mapping[str, Any]) -> None:
    """Open the backend and make a harmless read; `CredentialsError` names what is wrong."""
    try:
        memory = memory_for(credentials)
        memory.count(user_id="memdock-credentials-check")
        default_scope(credentials)
    except MemdockError as exc:
        raise CredentialsError(f"{type(exc).__name__}: {exc}") from None


def default_scope(credentials: Mapping[str, Any]) -> dict[str, str]:
    """The scope ids the credentials give for calls that name none."""
    ids = {"user_id": credentials.get("default_user_id"), "agent_id": credentials.get("default_agent_id")}
    clean = {k: str(v).strip() for k, v in ids.items() if v is not None and str(v).strip()}
    make_scope(None, clean, required=False)
    return clean


def as_messages(tool: Any, outputs: list[ToolOutput]) -> Iterator[Any]:
    """Dify messages for `outputs`, made by a `dify_plugin` Tool's own ``create_*_message`` methods."""
    for output in outputs:
        if output.kind == "json":
            yield tool.create_json_message(output.value)
        elif output.kind == "text":
            yield tool.create_text_message(output.value)
        else:
            yield tool.create_variable_message(output.name, output.value)


def run_tool(name: str, credentials: Mapping[str, Any], parameters: Mapping[str, Any]) -> list[ToolOutput]:
    """Run one tool; memdock errors become error outputs instead of exceptions."""
    if name not in _TOOLS:
        raise ValueError(f"unknown tool {name!r}")
    try:
        memory = memory_for(credentials)
        return _TOOLS[name](memory, _Call(credentials, parameters))
    except MemdockError as exc:
        error = {"type": type(exc).__name__, "message": str(exc), "field": getattr(exc, "field", None)}
        return [ToolOutput("json", {"error": error}), ToolOutput("text", f"Error: {exc}")]


class _Call:
    """The parameters of one call, read with clear errors naming the parameter."""

    def __init__(self, credentials: Mapping[str, Any], parameters: Mapping[str, Any]) -> None:
        self.credentials = credentials
        self.parameters = parameters

    def text(self, name: str) -> str | None:
        value = self.parameters.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if not isinstance(value, str):
            raise InvalidInput("must be a string", field=name)
        return value

    def required(self, name: str) -> str:
        value = self.text(name)
        if value is None:
            raise InvalidInput("is required", field=name)
        return value

    def json_object(self, name: str) -> dict[str, Any] | None:
        raw = self.parameters.get(name)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return None
        if isinstance(raw, Mapping):
            return dict(raw)
        try:
            value = json.loads(raw) if isinstance(raw, str) else raw
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"is not valid JSON ({exc.msg} at position {exc.pos})", field=name) from None
        if not isinstance(value, dict):
            raise InvalidInput("must be a JSON object", field=name)
        return value

    def number(self, name: str, default: float | None) -> float | None:
        value = self.parameters.get(name)
        if value is None or value == "":
            return default
        try:
            return float(value)
        except (TypeError, ValueError):
            raise InvalidInput("must be a number", field=name) from None

    def integer(self, name: str, default: int) -> int:
        value = self.number(name, float(default))
        if value is None or value != int(value):
            raise InvalidInput("must be a whole number", field=name)
        return int(value)

    def scope(self, *, required: bool) -> Scope | None:
        """The call's scope ids, else the credentials' defaults."""
        ids = {name: self.text(name) for name in SCOPE_PARAMETERS}
        if not any(ids.values()):
            ids = {**ids, **default_scope(self.credentials)}
        scope = make_scope(None, ids, required=required)
        return None if scope.is_empty() else scope


def _record(record: MemoryRecord, score: float | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"id": record.id, "memory": record.text, "metadata": record.metadata,
                            **record.scope.ids(), "created_at": record.created_at.isoformat(),
                            "updated_at": record.updated_at.isoformat()}
    if score is not None:
        data["score"] = round(score, 6)
    return data


def _counted(n: int, verb: str) -> str:
    return f"{verb} {n} memor{'y' if n == 1 else 'ies'}"


def _written(result: WriteResult) -> dict[str, Any]:
    return {"event": result.event.value, **_record(result.record)}


def _event(event: HistoryEvent) -> dict[str, Any]:
    return {"id": event.id, "memory_id": event.memory_id, "event": event.event.value, "old_memory": event.old_text,
            "new_memory": event.new_text, "old_metadata": event.old_metadata, "new_metadata": event.new_metadata,
            "created_at": event.created_at.isoformat()}


def _add(memory: Memory, call: _Call) -> list[ToolOutput]:
    scope = call.scope(required=True)
    text, user, assistant = call.text("text"), call.text("user"), call.text("assistant")
    if text is not None and (user or assistant):
        raise InvalidInput("give text, or a user/assistant message pair, not both", field="text")
    data: Any = text
    if text is None:
        messages = [{"role": role, "content": content} for role, content in (("user", user), ("assistant", assistant))
                    if content is not None]
        if not messages:
            raise InvalidInput("give text, or user and/or assistant messages", field="text")
        data = messages
    results = memory.add(data, scope=scope, metadata=call.json_object("metadata"))
    stored = sum(1 for r in results if r.event.value == "ADD")
    summary = f"Stored {stored} memor{'y' if stored == 1 else 'ies'}" + (
        f", {len(results) - stored} already known" if stored < len(results) else "")
    return [ToolOutput("json", {"results": [_written(r) for r in results]}), ToolOutput("text", summary)]


def _search(memory: Memory, call: _Call) -> list[ToolOutput]:
    hits = memory.search(call.required("query"), scope=call.scope(required=True), filter=call.json_object("filters"),
                         limit=call.integer("top_k", 5), threshold=call.number("threshold", None))
    block = "\n".join(f"- {h.record.text}" for h in hits)
    return [
        ToolOutput("json", {"results": [_record(h.record, h.score) for h in hits]}),
        ToolOutput("text", _counted(len(hits), "Found") + (f":\n{block}" if hits else ".")),
        ToolOutput("variable", block, name="memories"),
    ]


def _get_all(memory: Memory, call: _Call) -> list[ToolOutput]:
    limit = call.integer("top_k", 100)
    page = memory.list(scope=call.scope(required=True), filter=call.json_object("filters"), limit=limit)
    more = page.next_cursor is not None
    items = [_record(r) for r in page.items]
    text = f"{len(items)} memor{'y' if len(items) == 1 else 'ies'}" + (" (more exist; raise top_k)" if more else "")
    return [ToolOutput("json", {"memories": items, "count": len(items), "more": more}), ToolOutput("text", text)]


def _get(memory: Memory, call: _Call) -> list[ToolOutput]:
    record = memory.get(call.required("memory_id"), scope=call.scope(required=False))
    return [ToolOutput("json", _record(record)), ToolOutput("text", record.text)]


def _update(memory: Memory, call: _Call) -> list[ToolOutput]:
    result = memory.update(call.required("memory_id"), text=call.text("text"), metadata=call.json_object("metadata"),
                           scope=call.scope(required=False))
    return [ToolOutput("json", _written(result)), ToolOutput("text", f"{result.event.value} {result.record.id}")]


def _delete(memory: Memory, call: _Call) -> list[ToolOutput]:
    result = memory.delete(call.required("memory_id"), scope=call.scope(required=False))
    return [ToolOutput("json", _written(result)), ToolOutput("text", f"Deleted {result.record.id}")]


def _delete_all(memory: Memory, call: _Call) -> list[ToolOutput]:
    deleted = memory.delete_all(scope=call.scope(required=True), filter=call.json_object("filters"))
    return [ToolOutput("json", {"deleted": deleted}), ToolOutput("text", f"Deleted {deleted} memories")]


def _history(memory: Memory, call: _Call) -> list[ToolOutput]:
    events = memory.history(call.required("memory_id"), scope=call.scope(required=False))
    lines = "\n".join(f"{e.created_at.isoformat()} {e.event.value}: {e.old_text!r} -> {e.new_text!r}" for e in events)
    return [ToolOutput("json", {"history": [_event(e) for e in events]}), ToolOutput("text", lines)]


_TOOLS: dict[str, Callable[[Memory, _Call], list[ToolOutput]]] = {
    "add_memory": _add, "search_memory": _search, "get_all_memories": _get_all, "get_memory": _get,
    "update_memory": _update, "delete_memory": _delete, "delete_all_memories": _delete_all,
    "get_memory_history": _history,
}
