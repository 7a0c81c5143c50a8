"""What the Dify plugin's tools do, without importing `dify_plugin` (which patches the whole process with
gevent): each tool is `run_tool(name, credentials, parameters)`, returning `ToolOutput`s that the thin
`Tool` classes in the plugin folder turn into Dify messages with `as_messages`.

Credentials (the provider's settings in Dify): ``backend_url`` (any memdock URL), optional ``api_key``
(a mem0 service's key, or PostgreSQL's password; see `memdock.dify_adapter.plugin_logic.backend`), optional
``default_user_id`` / ``default_agent_id`` (used when a call names no scope id). One `Memory` is opened per
backend and process, and reused.

Parameters (strings unless noted; the tool YAML files declare exactly the ones each tool reads):
``user_id``, ``agent_id``, ``run_id`` on every tool; ``text`` or a ``user``/``assistant`` pair and
``metadata`` (JSON object) for ``add_memory``; ``query``, ``top_k`` (number), ``threshold`` (number) and
``filters`` (JSON object, mem0 style) for ``search_memory``; ``memory_id`` for the tools on one memory.

Every tool yields a JSON message, a short text and one variable per top-level field of that JSON (a
later workflow node can pick only variables, which each tool YAML's ``output_schema`` declares);
``search_memory`` also yields the variable ``memories``, a text block an LLM node can take. memdock's
errors (bad JSON, no scope, a missing memory, an unreachable backend) never escape: they come back as JSON
``{"error": {"type", "message", "field"}}`` (and the variable ``error``) and a text starting with ``Error:``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from memdock.dify_adapter.plugin_logic.backend import CredentialsError, check_backend, open_memory
from memdock.dify_adapter.plugin_logic.tool_specs import SCOPE_NAMES, TOOL_SPECS
from memdock.errors import InvalidInput, MemdockError
from memdock.memory import Memory
from memdock.models import HistoryEvent, MemoryRecord, Scope, WriteResult
from memdock.search_modes import check_mode
from memdock.validation import make_scope

SCOPE_PARAMETERS = SCOPE_NAMES


@dataclass(frozen=True)
class ToolOutput:
    """One message: ``json`` (an object), ``text`` (a string) or ``variable`` (`name` = `value`)."""

    kind: Literal["json", "text", "variable"]
    value: Any
    name: str = ""


def memory_for(credentials: Mapping[str, Any]) -> Memory:
    """The open Memory the credentials select (opened once per URL and key, per process)."""
    return open_memory(credentials.get("backend_url"), credentials.get("api_key"))


def validate_credentials(credentials: Mapping[str, Any]) -> None:
    """Open the backend, make a harmless read and check the default scope ids. `CredentialsError` says
    which credential is wrong and how (unknown scheme, unreachable server, refused key, bad id)."""
    check_backend(credentials.get("backend_url"), credentials.get("api_key"))
    try:
        default_scope(credentials)
    except InvalidInput as exc:
        raise CredentialsError(f"Default scope: {exc}") from None


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
        outputs = perform(name, memory, ToolCall(parameters, lambda call, required: _dify_scope(
            call, credentials, required=required)))
    except MemdockError as exc:
        outputs = error_outputs(exc)
    return with_field_variables(outputs)


def perform(name: str, memory: Memory, call: ToolCall) -> list[ToolOutput]:
    """Run tool `name` on `memory` with the parameters and scope rule of `call`: its JSON output (shaped as
    the tool spec's output schema says) and a short text. Raises memdock's typed errors (and `KeyError`
    for an unknown tool); every front end shapes them with `error_outputs` or its own error channel."""
    return _TOOLS[name](memory, call)


def error_object(exc: MemdockError) -> dict[str, Any]:
    """The ``error`` JSON of a failed call: the error's type name, its message and the field at fault."""
    return {"type": type(exc).__name__, "message": str(exc), "field": getattr(exc, "field", None)}


def error_outputs(exc: MemdockError) -> list[ToolOutput]:
    """A failed call's outputs: JSON ``{"error": ...}`` and a text starting with ``Error:``."""
    return [ToolOutput("json", {"error": error_object(exc)}), ToolOutput("text", f"Error: {exc}")]


def with_field_variables(outputs: list[ToolOutput]) -> list[ToolOutput]:
    """`outputs` followed by a variable for each top-level field of its JSON objects (unless a variable of
    that name is already there): Dify's tool node exposes variables, not JSON fields, to later nodes."""
    named = {output.name for output in outputs if output.kind == "variable"}
    fields = [ToolOutput("variable", value, name=key) for output in outputs if output.kind == "json"
              for key, value in output.value.items() if key not in named]
    return [*outputs, *fields]


ScopeRule = Callable[["ToolCall", bool], Scope | None]
"""How a front end turns a call into its scope: ``rule(call, required)``, raising `ScopeRequired` when
`required` and no id is given, or a typed error when the call names ids it may not use."""


class ToolCall:
    """The parameters of one call, read with clear errors naming the parameter, and the front end's rule
    for its scope (`scope`)."""

    def __init__(self, parameters: Mapping[str, Any], scope_rule: ScopeRule) -> None:
        self.parameters = parameters
        self.scope_rule = scope_rule

    def text(self, name: str) -> str | None:
        """A string parameter, or None when absent or blank; `InvalidInput` when not a string."""
        value = self.parameters.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if not isinstance(value, str):
            raise InvalidInput("must be a string", field=name)
        return value

    def required(self, name: str) -> str:
        """A string parameter that must be there."""
        value = self.text(name)
        if value is None:
            raise InvalidInput("is required", field=name)
        return value

    def json_object(self, name: str) -> dict[str, Any] | None:
        """An object parameter, given as an object or as a JSON string; None when absent or blank."""
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
        """A finite number (or a string holding one); `default` when absent or blank."""
        value = self.parameters.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            return default
        try:
            number = None if isinstance(value, bool) else float(value)
        except (TypeError, ValueError):
            number = None
        if number is None or not math.isfinite(number):
            raise InvalidInput("must be a number", field=name)
        return number

    def integer(self, name: str, default: int) -> int:
        """A whole number; `default` when absent or blank."""
        value = self.number(name, float(default))
        if value is None or value != int(value):
            raise InvalidInput("must be a whole number", field=name)
        return int(value)

    def scope_ids(self) -> dict[str, str | None]:
        """The scope ids the call names (None for each it does not)."""
        return {name: self.text(name) for name in SCOPE_PARAMETERS}

    def scope(self, *, required: bool) -> Scope | None:
        """The call's scope by the front end's rule (None for no scope, allowed only when not `required`)."""
        return self.scope_rule(self, required)


def _dify_scope(call: ToolCall, credentials: Mapping[str, Any], *, required: bool) -> Scope | None:
    """Dify's rule: the call's scope ids, else the credentials' defaults."""
    ids = call.scope_ids()
    if not any(ids.values()):
        ids = {**ids, **default_scope(credentials)}
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


def _add(memory: Memory, call: ToolCall) -> list[ToolOutput]:
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
    summary = _counted(stored, "Stored") + (f", {len(results) - stored} already known" if stored < len(results) else "")
    return [ToolOutput("json", {"results": [_written(r) for r in results]}), ToolOutput("text", summary)]


def _search(memory: Memory, call: ToolCall) -> list[ToolOutput]:
    hits = memory.search(call.required("query"), scope=call.scope(required=True), filter=call.json_object("filters"),
                         limit=call.integer("top_k", 5), threshold=call.number("threshold", None),
                         mode=check_mode(call.text("mode")))
    block = "\n".join(f"- {h.record.text}" for h in hits)
    return [
        ToolOutput("json", {"results": [_record(h.record, h.score) for h in hits]}),
        ToolOutput("text", _counted(len(hits), "Found") + (f":\n{block}" if hits else ".")),
        ToolOutput("variable", block, name="memories"),
    ]


def _get_all(memory: Memory, call: ToolCall) -> list[ToolOutput]:
    limit = call.integer("top_k", 100)
    page = memory.list(scope=call.scope(required=True), filter=call.json_object("filters"), limit=limit)
    more = page.next_cursor is not None
    items = [_record(r) for r in page.items]
    text = _counted(len(items), "Listed") + (" (more exist; raise top_k)" if more else "")
    return [ToolOutput("json", {"memories": items, "count": len(items), "more": more}), ToolOutput("text", text)]


def _get(memory: Memory, call: ToolCall) -> list[ToolOutput]:
    record = memory.get(call.required("memory_id"), scope=call.scope(required=False))
    return [ToolOutput("json", _record(record)), ToolOutput("text", record.text)]


def _update(memory: Memory, call: ToolCall) -> list[ToolOutput]:
    result = memory.update(call.required("memory_id"), text=call.text("text"), metadata=call.json_object("metadata"),
                           scope=call.scope(required=False))
    return [ToolOutput("json", _written(result)), ToolOutput("text", f"{result.event.value} {result.record.id}")]


def _delete(memory: Memory, call: ToolCall) -> list[ToolOutput]:
    result = memory.delete(call.required("memory_id"), scope=call.scope(required=False))
    return [ToolOutput("json", _written(result)), ToolOutput("text", f"Deleted {result.record.id}")]


def _delete_all(memory: Memory, call: ToolCall) -> list[ToolOutput]:
    deleted = memory.delete_all(scope=call.scope(required=True), filter=call.json_object("filters"))
    return [ToolOutput("json", {"deleted": deleted}), ToolOutput("text", _counted(deleted, "Deleted"))]


def _history(memory: Memory, call: ToolCall) -> list[ToolOutput]:
    events = memory.history(call.required("memory_id"), scope=call.scope(required=False))
    lines = "\n".join(f"{e.created_at.isoformat()} {e.event.value}: {e.old_text!r} -> {e.new_text!r}" for e in events)
    return [ToolOutput("json", {"history": [_event(e) for e in events]}),
            ToolOutput("text", lines or "No history recorded")]


_TOOLS: dict[str, Callable[[Memory, ToolCall], list[ToolOutput]]] = {
    "add_memory": _add, "search_memory": _search, "get_all_memories": _get_all, "get_memory": _get,
    "update_memory": _update, "delete_memory": _delete, "delete_all_memories": _delete_all,
    "get_memory_history": _history,
}

TOOL_NAMES = tuple(spec.name for spec in TOOL_SPECS)
"""The tools, in the order the provider YAML lists them (`tool_specs.TOOL_SPECS`)."""
assert set(TOOL_NAMES) == set(_TOOLS), "every tool spec has a runner and every runner a spec"
