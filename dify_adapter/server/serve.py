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
    API_NAMES,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MOUNTS,
    ServerConfig,
    parse_mount,
)
from memdock.errors import InvalidInput
from memdock.models import SCOPE_FIELDS

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


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def build_config(args: argparse.Namespace) -> ServerConfig:
    """The server configuration from parsed arguments; `InvalidInput` names a bad option."""
    if not 1024 <= args.max_body_bytes <= 64 * 1024 * 1024:
        raise InvalidInput("must be from 1024 to 67108864", field="max_body_bytes")
    keys = KeyRing.from_sources(args.api_key, args.keys_file)
    if keys.is_open() and not is_loopback(args.host):
        raise InvalidInput(
            f"refusing to listen on {args.host} without an API key: set MEMDOCK_API_KEYS, --api-key or --keys-file",
            field="host",
        )
    default_field = None if args.knowledge_default == "none" else args.knowledge_default
    knowledge = (KnowledgeMap.from_file(args.knowledge_map, default_field) if args.knowledge_map
                 else KnowledgeMap(default_field=default_field))
    mounts = dict(DEFAULT_MOUNTS)
    for spec in args.mount:
        parse_mount(spec, mounts)
    return ServerConfig(keys=keys, knowledge=knowledge, mounts=mounts, max_body_bytes=args.max_body_bytes,
                        allow_reset=args.allow_reset)


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
