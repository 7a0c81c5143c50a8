"""The MCP server over one open `Memory`: the memory tools (`memdock.dify_adapter.plugin_logic.tool_specs`,
the same the Dify plugin offers, run by the same `plugin_logic.tools.perform`) and, when the server has a
fixed scope, the resource ``memdock://memories`` (that scope's memories, JSON).

Each tool lists its input schema (without the scope ids unless calls may choose them) and the schema of
its structured output (the tool's JSON result). A failed call is a tool error (``isError``) whose text is
``Error: <the typed error's message>`` and whose structured content is ``{"error": {type, message,
field}}``; the session goes on. Backend calls run in worker threads, so a slow backend never blocks the
event loop. Over HTTP, the caller's API key is read from the request of each call (`keys`).
"""

from __future__ import annotations

import json
import logging
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import anyio.to_thread
import mcp_types as types
from mcp.server import Server
from mcp.server.context import ServerRequestContext

from memdock.dify_adapter.auth import SERVER_FORMS, ApiKey, CredentialError, KeyRing, authenticate_request
from memdock.dify_adapter.mcp_server.scope import ScopePolicy
from memdock.dify_adapter.plugin_logic.tool_specs import SPECS_BY_NAME, TOOL_SPECS, input_schema, success_schema
from memdock.dify_adapter.plugin_logic.tools import ToolCall, ToolOutput, error_object, perform
from memdock.errors import AuthenticationFailed, InvalidInput, MemdockError
from memdock.memory import Memory

MEMORIES_URI = "memdock://memories"
RESOURCE_LIMIT = 1000
INSTRUCTIONS = ("Long-term memory. search_memory before answering questions about the user; add_memory to "
                "store a lasting fact (one sentence). Scores run from 0 to 1, higher is closer.")

log = logging.getLogger(__name__)


def memdock_version() -> str:
    """The installed memdock version ("unknown" when run from an uninstalled tree)."""
    try:
        return version("memdock")
    except PackageNotFoundError:
        return "unknown"


def tool_list(policy: ScopePolicy) -> list[types.Tool]:
    """The tools as MCP lists them under `policy`."""
    return [types.Tool(name=spec.name, description=spec.description,
                       input_schema=input_schema(spec, scope_arguments=policy.allow_arguments),
                       output_schema=success_schema(spec))
            for spec in TOOL_SPECS]


def tool_result(outputs: list[ToolOutput]) -> types.CallToolResult:
    """A successful call's result: its JSON as structured content (and as text, for clients that read only
    text), then its short summary."""
    data = next(o.value for o in outputs if o.kind == "json")
    texts = [o.value for o in outputs if o.kind == "text"]
    content: list[types.ContentBlock] = [types.TextContent(text=json.dumps(data, ensure_ascii=False)),
                                         *(types.TextContent(text=t) for t in texts)]
    return types.CallToolResult(content=content, structured_content=data)


def tool_error(exc: MemdockError) -> types.CallToolResult:
    """A failed call's result: a tool error with the typed error's message."""
    return types.CallToolResult(content=[types.TextContent(text=f"Error: {exc}")],
                                structured_content={"error": error_object(exc)}, is_error=True)


def create_server(memory: Memory, policy: ScopePolicy, keys: KeyRing | None = None) -> Server[Any]:
    """The MCP server over `memory`, confined by `policy`; over HTTP, `keys` are the accepted API keys
    (a call whose request presents none of them is refused, and a restricted key confines it further)."""
    ring = keys or KeyRing()

    def caller_key(ctx: ServerRequestContext[Any]) -> ApiKey | None:
        request = ctx.request
        if request is None or ring.is_open():
            return None
        headers = getattr(request, "headers", {})
        try:
            return authenticate_request(ring, headers.get("authorization"), headers.get("x-api-key"), SERVER_FORMS)
        except CredentialError as exc:
            raise AuthenticationFailed(str(exc)) from None

    async def list_tools(ctx: ServerRequestContext[Any],
                         params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tool_list(policy))

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        try:
            if params.name not in SPECS_BY_NAME:
                raise InvalidInput(f"unknown tool {params.name!r}", field="name")
            call = ToolCall(params.arguments or {}, policy.rule(caller_key(ctx)))
            outputs = await anyio.to_thread.run_sync(perform, params.name, memory, call)
        except MemdockError as exc:
            return tool_error(exc)
        except Exception as exc:  # a bug must not end the session; its text may hold memory, so log the type
            log.error("memdock mcp: %s failed with %s", params.name, type(exc).__name__)
            return tool_error(MemdockError(f"internal error ({type(exc).__name__})"))
        return tool_result(outputs)

    async def list_resources(ctx: ServerRequestContext[Any],
                             params: types.PaginatedRequestParams | None) -> types.ListResourcesResult:
        if policy.fixed.is_empty():
            return types.ListResourcesResult(resources=[])
        scope = ", ".join(f"{k}={v}" for k, v in policy.fixed.ids().items())
        return types.ListResourcesResult(resources=[types.Resource(
            uri=MEMORIES_URI, name="memories", mime_type="application/json",
            description=f"The memories of {scope} (up to {RESOURCE_LIMIT}, oldest first), as get_all_memories "
            "returns them")])

    async def read_resource(ctx: ServerRequestContext[Any],
                            params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        if str(params.uri) != MEMORIES_URI or policy.fixed.is_empty():
            raise InvalidInput(f"unknown resource {params.uri!r}", field="uri")
        call = ToolCall({"top_k": RESOURCE_LIMIT}, policy.rule(caller_key(ctx)))
        outputs = await anyio.to_thread.run_sync(perform, "get_all_memories", memory, call)
        data = next(o.value for o in outputs if o.kind == "json")
        return types.ReadResourceResult(contents=[types.TextResourceContents(
            uri=MEMORIES_URI, mime_type="application/json", text=json.dumps(data, ensure_ascii=False))])

    return Server(
        "memdock", version=memdock_version(), instructions=INSTRUCTIONS,
        on_list_tools=list_tools, on_call_tool=call_tool,
        on_list_resources=list_resources, on_read_resource=read_resource,
    )
