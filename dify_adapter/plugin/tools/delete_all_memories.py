"""The `delete_all_memories` tool: a thin Dify `Tool` over `memdock.dify_adapter.plugin_logic.tools`."""

from collections.abc import Generator
from typing import Any

from dify_plugin import Tool
from dify_plugin.entities.tool import ToolInvokeMessage

from memdock.dify_adapter.plugin_logic.tools import as_messages, run_tool


class DeleteAllMemoriesTool(Tool):
    """Forget every memory of a user, agent or run (optionally only those matching a filter)."""

    def _invoke(self, tool_parameters: dict[str, Any]) -> Generator[ToolInvokeMessage, None, None]:
        yield from as_messages(self, run_tool("delete_all_memories", self.runtime.credentials, tool_parameters))
