"""``memdock mcp``: open the backend and serve the memory tools over stdio or Streamable HTTP until the
client leaves (stdio) or the process is interrupted (http). Configuration errors raise before anything is
opened or bound. Over stdio nothing but the protocol goes to stdout; messages go to stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys

from memdock.dify_adapter.auth import KeyRing
from memdock.dify_adapter.mcp_server.scope import ScopePolicy
from memdock.scopes import SCOPE_FIELDS


def policy_of(args: argparse.Namespace) -> ScopePolicy:
    """The scope policy the options give."""
    ids = {name: getattr(args, name, None) for name in SCOPE_FIELDS}
    return ScopePolicy.from_ids({k: v for k, v in ids.items() if v is not None},
                                allow_arguments=args.allow_scope_arguments)


def run(args: argparse.Namespace) -> int:
    """Serve until the client or an interrupt ends it; returns the exit status."""
    import anyio

    from memdock.memory import Memory

    policy = policy_of(args)
    logging.basicConfig(level=args.log_level.upper(), format="%(message)s", stream=sys.stderr)
    if args.transport == "stdio":
        from mcp.server.stdio import stdio_server

        from memdock.dify_adapter.mcp_server.server import create_server

        with Memory.open(args.url) as memory:
            server = create_server(memory, policy)

            async def serve() -> None:
                async with stdio_server() as (read, write):
                    await server.run(read, write, server.create_initialization_options())

            anyio.run(serve)
        return 0

    import uvicorn

    from memdock.dify_adapter.mcp_server.http import create_http_app
    from memdock.dify_adapter.server.serve import check_bind

    keys = KeyRing.from_sources(args.api_key, args.keys_file)
    check_bind(args.host, keys)
    with Memory.open(args.url) as memory:
        app = create_http_app(memory, policy, keys, host=args.host, path=args.path)
        print(f"memdock mcp serving {memory.name} on http://{args.host}:{args.port}{args.path} "
              f"({'open: no API key' if keys.is_open() else f'{len(keys.keys)} API key(s)'})",
              file=sys.stderr, flush=True)
        uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_level=args.log_level,
                    server_header=False)
    return 0
