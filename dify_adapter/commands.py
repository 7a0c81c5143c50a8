"""The Dify adapter's ``memdock`` commands: ``serve``, ``mcp``, ``dify package`` and ``openapi``.

A plugin module (entry point ``dify_adapter`` in the ``memdock`` group). Registering the commands only
builds their options; each handler imports FastAPI, uvicorn, PyYAML, the MCP SDK and the server when it
runs, and a missing one is reported in one line naming the extra to install.
"""

from __future__ import annotations

import argparse

from memdock.dify_adapter.mcp_server.options import add_arguments as mcp_arguments
from memdock.dify_adapter.packaging.command import add_arguments as package_arguments
from memdock.dify_adapter.server.options import add_arguments as serve_arguments
from memdock.extras import require_extra
from memdock.hookspecs import AddCommand, hookimpl


@hookimpl
def register_commands(add_command: AddCommand) -> None:
    """Add ``serve``, ``mcp``, the ``dify`` group with ``package``, and ``openapi``."""
    sub = add_command("serve", _serve, "serve the backend over HTTP: native API, Dify External Knowledge, mem0 APIs")
    serve_arguments(sub)

    sub = add_command("mcp", _mcp, "serve the memory tools over the Model Context Protocol (stdio or HTTP)")
    mcp_arguments(sub)

    dify = add_command("dify", None, "the Dify plugin")
    dify_commands = dify.add_subparsers(required=True, metavar="COMMAND")
    sub = dify_commands.add_parser("package", help="build the plugin package (.difypkg)",
                                   description="build the plugin package (.difypkg) with memdock inside")
    sub.set_defaults(handler=_dify_package)
    sub.add_argument("-o", "--output", default="memdock.difypkg", help="where to write it (default memdock.difypkg)")
    package_arguments(sub)

    sub = add_command("openapi", _openapi, "print the server's OpenAPI document (JSON)")
    sub.add_argument("-o", "--output", help="write it to this file instead of stdout")


def _serve(args: argparse.Namespace) -> int:
    """Serve until interrupted (`memdock.dify_adapter.server.serve.run`)."""
    require_extra("server", "memdock serve", "fastapi", "uvicorn")
    from memdock.dify_adapter.server.serve import run

    return run(args)


def _mcp(args: argparse.Namespace) -> int:
    """Serve MCP until the client leaves or an interrupt (`memdock.dify_adapter.mcp_server.run.run`)."""
    require_extra("mcp", "memdock mcp", "mcp")
    if args.transport == "http":
        require_extra("mcp", "memdock mcp --transport http", "uvicorn")
    from memdock.dify_adapter.mcp_server.run import run

    return run(args)


def _dify_package(args: argparse.Namespace) -> int:
    """Write the ``.difypkg`` for ``--backends`` and print its path, size and what it was built for."""
    require_extra("dify", "memdock dify package", "yaml")
    from memdock.dify_adapter.packaging.command import run

    return run(args)


def _openapi(args: argparse.Namespace) -> int:
    """Print (or write to ``--output``) the server's OpenAPI document, built on a throwaway store."""
    require_extra("server", "memdock openapi", "fastapi")
    import json

    from memdock.dify_adapter.server.app import create_app
    from memdock.memory import Memory

    with Memory.open("memory://?embedder=hash") as memory:
        document = json.dumps(create_app(memory).openapi(), indent=2, ensure_ascii=False) + "\n"
    if args.output:
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(document)
    else:
        print(document, end="")
    return 0
