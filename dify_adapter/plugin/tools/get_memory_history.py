"""The `get_memory_history` tool: a thin Dify `Tool` over `memdock.dify_adapter.plugin_logic.tools`."""

from collections.abc import Generator
from typing import Any

from dify_plugin import Tool
from dify_plugin.entities.tool import ToolInvokeMessage

from memdock.dify_adapter.plugin_logic.tools import as_messages, run_tool


class GetMemoryHistoryTool(Tool):
    """How a memory was added, changed and deleted."""

    def _invoke(self, tool_parameters: dict[str, Any]) -> Generator[ToolInvokeMessage, None, None]:
        yield from as_messages(self, run_tool("get_memory_history", self.runtime.credentials, tool_parameters))
