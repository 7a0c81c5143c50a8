"""``memdock serve``: open the backend, build the app, run uvicorn.

Safe by default: it binds 127.0.0.1, and refuses to listen on any other address unless at least one API
key is configured (``--api-key``, ``MEMDOCK_API_KEYS`` or ``--keys-file``). Keys given as flags are
visible in the process list; prefer the environment variable or the keys file outside a laptop.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys

from memdock.dify_adapter.auth import KeyRing
from memdock.dify_adapter.external_knowledge import KnowledgeMap
from memdock.dify_adapter.server.config import (
    DEFAULT_MOUNTS,
    ServerConfig,
    parse_mount,
)
from memdock.errors import InvalidInput


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, keys: KeyRing) -> None:
    """`InvalidInput` (field ``host``) when asked to listen beyond loopback without any API key (the rule
    of every memdock server: ``serve`` and ``mcp --transport http``)."""
    if keys.is_open() and not is_loopback(host):
        raise InvalidInput(
            f"refusing to listen on {host} without an API key: set MEMDOCK_API_KEYS, --api-key or --keys-file",
            field="host",
        )


def build_config(args: argparse.Namespace) -> ServerConfig:
    """The server configuration from parsed arguments; `InvalidInput` names a bad option."""
    if not 1024 <= args.max_body_bytes <= 64 * 1024 * 1024:
        raise InvalidInput("must be from 1024 to 67108864", field="max_body_bytes")
    keys = KeyRing.from_sources(args.api_key, args.keys_file)
    check_bind(args.host, keys)
    default_field = None if args.knowledge_default == "none" else args.knowledge_default
    knowledge = (KnowledgeMap.from_file(args.knowledge_map, default_field) if args.knowledge_map
                 else KnowledgeMap(default_field=default_field))
    mounts = dict(DEFAULT_MOUNTS)
    for spec in args.mount:
        parse_mount(spec, mounts)
    return ServerConfig(keys=keys, knowledge=knowledge, mounts=mounts, max_body_bytes=args.max_body_bytes,
                        allow_reset=args.allow_reset, host=args.host)


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted. Configuration errors raise before anything is opened or bound."""
    import uvicorn

    from memdock.dify_adapter.server.app import create_app
    from memdock.memory import Memory

    config = build_config(args)
    logging.basicConfig(level=args.log_level.upper(), format="%(message)s", stream=sys.stderr)
    memory = Memory.open(args.url)
    app = create_app(memory, config, close_memory=True)
    print(f"memdock serving {memory.name} on http://{args.host}:{args.port} "
          f"({'open: no API key' if config.keys.is_open() else f'{len(config.keys.keys)} API key(s)'})",
          file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_level=args.log_level,
                server_header=False)
    return 0
