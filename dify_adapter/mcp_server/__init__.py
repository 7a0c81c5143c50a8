"""``memdock mcp``: the memory tools over the Model Context Protocol, on the official ``mcp`` SDK
(``pip install 'memdock[mcp]'``).

`options` builds the command's flags (no SDK import); `scope` is the rule that confines every call to the
server's scope; `server` builds the MCP server over an open `Memory` from the tool specs the Dify plugin
uses too; `http` serves it over Streamable HTTP with `memdock serve`'s API keys; `run` is the command.
"""
