"""The options of ``memdock serve`` and the defaults they share with `ServerConfig`. Nothing here
imports the server, so building the ``memdock`` parser stays cheap."""

from __future__ import annotations

import argparse

from memdock.scopes import SCOPE_FIELDS

API_NAMES: tuple[str, ...] = ("native", "retrieval", "mem0-server", "mem0ai-api", "mcp")
DEFAULT_MOUNTS: dict[str, str | None] = {
    "native": "/v1",
    "retrieval": "",  # Dify appends /retrieval to the registered base URL: http://host:8765/retrieval
    "mem0-server": "/mem0",
    "mem0ai-api": "/mem0ai-api",
    "mcp": None,  # off unless --mount mcp=/mcp (needs memdock[mcp]): MCP's Streamable HTTP at /mcp/
}
DEFAULT_MAX_BODY_BYTES = 1024 * 1024


DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``serve`` subcommand's options (``--url`` is the global one)."""
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default 8765)")
    parser.add_argument("--api-key", action="append", default=[], metavar="KEY",
                        help="accept this key (repeatable; prefer MEMDOCK_API_KEYS or --keys-file)")
    parser.add_argument("--keys-file", help="JSON list of keys, optionally limited to scopes and knowledge ids")
    parser.add_argument("--knowledge-map", metavar="FILE",
                        help='JSON {knowledge_id: {"scope": {...}, "filter": {...}}} for the External Knowledge API')
    parser.add_argument("--knowledge-default", default="user_id", choices=[*SCOPE_FIELDS, "none"],
                        help="scope id an unmapped knowledge_id names (default user_id; none = mapped ids only)")
    parser.add_argument("--mount", action="append", default=[], metavar="API=PREFIX",
                        help=f"move an API ({', '.join(API_NAMES)}) to PREFIX, or turn it off with API=off; "
                        f"defaults: {', '.join(f'{k}={v or '/'}' for k, v in DEFAULT_MOUNTS.items())}")
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    parser.add_argument("--allow-reset", action="store_true",
                        help="enable the mem0 routes that delete every memory of every scope")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
