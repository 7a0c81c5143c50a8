"""What each memory tool is, for every front end that offers it: its name, the description a model reads,
its parameters and the JSON schema of what it returns. The Dify plugin (its tool YAML files, which a test
holds equal to these) and the MCP server (`memdock.dify_adapter.mcp_server`) both describe their tools from
here; `memdock.dify_adapter.plugin_logic.tools` runs them.

A parameter's `kind` says how it is read (`memdock.dify_adapter.plugin_logic.tools.ToolCall`): ``string``,
``number``, ``integer`` (Dify sends both as a number) or ``json`` (an object; Dify sends it as a JSON
string). The scope parameters (``user_id``, ``agent_id``, ``run_id``) are on every tool; a front end that
fixes the scope itself leaves them out (`input_schema(spec, scope_arguments=False)`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

ParamKind = Literal["string", "number", "integer", "json"]


@dataclass(frozen=True)
class Param:
    """One tool parameter: `description` is what a model reads; `minimum`/`maximum`/`default` bound numbers."""

    name: str
    kind: ParamKind
    description: str
    required: bool = False
    default: float | None = None
    minimum: float | None = None
    maximum: float | None = None
    options: tuple[str, ...] = ()  # a string parameter that takes one of these values (Dify: a select)


@dataclass(frozen=True)
class ToolSpec:
    """One tool. `output_schema` describes its JSON result (Dify's ``output_schema``, whose ``error``
    property is present only on failures); `dify_only` names the properties only Dify's variables carry."""

    name: str
    description: str
    params: tuple[Param, ...]
    output_schema: dict[str, Any]
    dify_only: tuple[str, ...] = ()


SCOPE_PARAMS = (
    Param("user_id", "string", "The id of the user the memories belong to."),
    Param("agent_id", "string", "The id of the agent the memories belong to (optional)."),
    Param("run_id", "string", "The id of the run or session (optional)."),
)
SCOPE_NAMES = tuple(p.name for p in SCOPE_PARAMS)

_MEMORY_ID = Param("memory_id", "string", "The id of the memory, as returned by other memory tools.", required=True)
_FILTERS = Param("filters", "json", "Optional JSON filter on metadata fields, mem0 style.")
_METADATA = Param("metadata", "json", "Optional JSON object of extra fields to store with the memory.")
_EVENT = {"type": "string", "enum": ["ADD", "UPDATE", "DELETE", "NONE"],
          "description": "ADD, UPDATE, DELETE, or NONE (nothing changed)."}
_RECORD: dict[str, Any] = {
    "id": {"type": "string", "description": "The memory's id."},
    "memory": {"type": "string", "description": "The memory's text."},
    "metadata": {"type": "object", "description": "Its metadata fields."},
    "user_id": {"type": "string", "description": "The user it belongs to (when set)."},
    "agent_id": {"type": "string", "description": "The agent it belongs to (when set)."},
    "run_id": {"type": "string", "description": "The run or session it belongs to (when set)."},
    "created_at": {"type": "string", "description": "When it was stored (ISO 8601)."},
    "updated_at": {"type": "string", "description": "When it last changed (ISO 8601)."},
}
_RECORD_REQUIRED = ["id", "memory", "metadata", "created_at", "updated_at"]
_WRITTEN: dict[str, Any] = {"event": _EVENT, **_RECORD}
_ERROR: dict[str, Any] = {
    "type": "object",
    "properties": {
        "type": {"type": "string", "description": "The error's kind, e.g. InvalidInput or MemoryNotFound."},
        "message": {"type": "string", "description": "What went wrong."},
        "field": {"anyOf": [{"type": "string"}, {"type": "null"}],
                  "description": "The parameter or field at fault, or null."},
    },
    "required": ["type", "message"],
    "description": "Present only when the call failed: what went wrong, and the parameter at fault.",
}
_SCORED: dict[str, Any] = {**_RECORD, "score": {
    "type": "number",
    "description": "Relevance from 0 to 1: in vector mode the cosine (clamped at 0), in keyword mode the share of the "
                   "query's weighted words the memory holds, in hybrid mode the mean of the two."}}
_HISTORY_EVENT: dict[str, Any] = {
    "id": {"type": "string", "description": "The event's id."},
    "memory_id": {"type": "string", "description": "The memory's id."},
    "event": _EVENT,
    "old_memory": {"anyOf": [{"type": "string"}, {"type": "null"}], "description": "The text before (null for ADD)."},
    "new_memory": {"anyOf": [{"type": "string"}, {"type": "null"}],
                   "description": "The text after (null for DELETE)."},
    "old_metadata": {"anyOf": [{"type": "object"}, {"type": "null"}], "description": "The metadata before, or null."},
    "new_metadata": {"anyOf": [{"type": "object"}, {"type": "null"}], "description": "The metadata after, or null."},
    "created_at": {"type": "string", "description": "When it happened (ISO 8601)."},
}


def _output(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": {**properties, "error": _ERROR}}


def _array(properties: dict[str, Any], required: list[str], description: str) -> dict[str, Any]:
    return {"type": "array", "items": {"type": "object", "properties": properties, "required": required},
            "description": description}


TOOL_SPECS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "add_memory",
        "Store a memory: either `text`, or the `user` message and/or the `assistant` reply. "
        "Needs a user_id, agent_id or run_id.",
        (*SCOPE_PARAMS,
         Param("text", "string", "The fact to remember, as one sentence."),
         Param("user", "string", "The user's message to remember (use with assistant instead of text)."),
         Param("assistant", "string", "The assistant's reply to remember (optional)."),
         _METADATA),
        _output({"results": _array(_WRITTEN, ["event", *_RECORD_REQUIRED],
                                   "The memories stored (ADD) or already known (NONE).")}),
    ),
    ToolSpec(
        "search_memory",
        "Search stored memories by meaning and words. Returns the best matches first, with scores between 0 and 1.",
        (Param("query", "string", "What to look for in memory.", required=True),
         *SCOPE_PARAMS,
         Param("top_k", "integer", "How many memories to return.", default=5, minimum=1, maximum=100),
         Param("threshold", "number", "Minimum score from 0 to 1.", minimum=0, maximum=1),
         _FILTERS,
         Param("mode", "string", "What to rank by: hybrid (meaning and words; the default where the store has keyword "
               "search), vector (meaning only) or keyword (words only).", options=("hybrid", "vector", "keyword"))),
        _output({
            "results": _array(_SCORED, [*_RECORD_REQUIRED, "score"], "The hits, best first."),
            "memories": {"type": "string",
                         "description": "The hits' texts, one '- text' line each, for an LLM prompt."},
        }),
        dify_only=("memories",),
    ),
    ToolSpec(
        "get_all_memories",
        "List stored memories of a scope, oldest first.",
        (*SCOPE_PARAMS,
         Param("top_k", "integer", "How many memories to return.", default=100, minimum=1, maximum=1000),
         _FILTERS),
        _output({
            "memories": _array(_RECORD, _RECORD_REQUIRED, "The memories, oldest first."),
            "count": {"type": "number", "description": "How many were listed."},
            "more": {"type": "boolean", "description": "Whether more exist beyond top_k."},
        }),
    ),
    ToolSpec("get_memory", "Read one memory by id.", (_MEMORY_ID, *SCOPE_PARAMS), _output(_RECORD)),
    ToolSpec(
        "update_memory",
        "Change a memory's text and/or metadata.",
        (_MEMORY_ID, Param("text", "string", "The new text of the memory."), _METADATA, *SCOPE_PARAMS),
        _output(_WRITTEN),
    ),
    ToolSpec("delete_memory", "Delete one memory by id.", (_MEMORY_ID, *SCOPE_PARAMS), _output(_WRITTEN)),
    ToolSpec(
        "delete_all_memories",
        "Delete all memories of a scope. Needs a user_id, agent_id or run_id.",
        (*SCOPE_PARAMS, _FILTERS),
        _output({"deleted": {"type": "number", "description": "How many memories were deleted."}}),
    ),
    ToolSpec(
        "get_memory_history",
        "List the ADD/UPDATE/DELETE events of one memory.",
        (_MEMORY_ID, *SCOPE_PARAMS),
        _output({"history": _array(_HISTORY_EVENT, ["id", "memory_id", "event", "created_at"],
                                   "Its events, oldest first.")}),
    ),
)
"""Every tool, in the order the Dify provider YAML lists them."""

SPECS_BY_NAME = {spec.name: spec for spec in TOOL_SPECS}


def input_schema(spec: ToolSpec, *, scope_arguments: bool = True) -> dict[str, Any]:
    """The JSON schema of the tool's arguments (without the scope ids unless `scope_arguments`)."""
    properties: dict[str, Any] = {}
    for param in spec.params:
        if param.name in SCOPE_NAMES and not scope_arguments:
            continue
        schema: dict[str, Any] = {"type": "object" if param.kind == "json" else param.kind,
                                  "description": param.description}
        for key, value in (("default", param.default), ("minimum", param.minimum), ("maximum", param.maximum)):
            if value is not None:
                schema[key] = int(value) if param.kind == "integer" else value
        if param.options:
            schema["enum"] = list(param.options)
        properties[param.name] = schema
    required = [p.name for p in spec.params if p.required and p.name in properties]
    return {"type": "object", "properties": properties, "required": required}


def success_schema(spec: ToolSpec) -> dict[str, Any]:
    """The JSON schema of a successful result alone: the output schema without ``error`` and the
    Dify-only properties (a front end with its own error channel, like MCP, reports failures there)."""
    dropped = {"error", *spec.dify_only}
    properties = {k: v for k, v in spec.output_schema["properties"].items() if k not in dropped}
    return {"type": "object", "properties": properties}
