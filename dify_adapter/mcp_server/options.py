"""The options of ``memdock mcp``. Nothing here imports the MCP SDK, so building the parser stays cheap."""

from __future__ import annotations

import argparse

from memdock.scopes import SCOPE_FIELDS

TRANSPORTS = ("stdio", "http")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8766
DEFAULT_PATH = "/mcp"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``mcp`` subcommand's options (``--url`` is the global one)."""
    parser.add_argument("--transport", choices=TRANSPORTS, default="stdio",
                        help="stdio (a client starts memdock mcp) or http (Streamable HTTP; default stdio)")
    for name in SCOPE_FIELDS:
        flag = name.replace("_", "-")
        parser.add_argument(f"--{flag}", dest=name, metavar=name.split("_")[0].upper(),
                            help=f"the {name} every call is confined to")
    parser.add_argument("--allow-scope-arguments", action="store_true",
                        help="let each call name scope ids the options above leave open (never change them)")
    parser.add_argument("--host", default=DEFAULT_HOST, help="http: address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"http: port (default {DEFAULT_PORT})")
    parser.add_argument("--path", default=DEFAULT_PATH, help=f"http: the endpoint's path (default {DEFAULT_PATH})")
    parser.add_argument("--api-key", action="append", default=[], metavar="KEY",
                        help="http: accept this key (repeatable; prefer MEMDOCK_API_KEYS or --keys-file)")
    parser.add_argument("--keys-file", help="http: JSON list of keys, optionally limited to scopes")
    parser.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
