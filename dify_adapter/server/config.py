"""What `memdock serve` is configured with: the backend, the keys, the knowledge map, the mount points
of each API and the safety limits. Built by `serve` from flags and environment, or by tests directly."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from memdock.dify_adapter.auth import KeyRing
from memdock.dify_adapter.external_knowledge import KnowledgeMap
from memdock.dify_adapter.server.options import API_NAMES, DEFAULT_HOST, DEFAULT_MAX_BODY_BYTES, DEFAULT_MOUNTS
from memdock.errors import InvalidInput

__all__ = ["API_NAMES", "DEFAULT_MAX_BODY_BYTES", "DEFAULT_MOUNTS", "ServerConfig", "parse_mount"]

@dataclass(frozen=True)
class ServerConfig:
    """Everything the app needs besides the open `Memory`.

    `mounts` maps each API name to its path prefix ("" = the root) or None (not served).
    `allow_reset` enables the mem0 routes that delete every memory of every scope (off by default).
    `host` is the address the server listens on (the MCP API checks request Host headers against it).
    """

    keys: KeyRing = field(default_factory=KeyRing)
    knowledge: KnowledgeMap = field(default_factory=KnowledgeMap)
    mounts: Mapping[str, str | None] = field(default_factory=lambda: dict(DEFAULT_MOUNTS))
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    allow_reset: bool = False
    host: str = DEFAULT_HOST


def parse_mount(spec: str, mounts: dict[str, str | None]) -> None:
    """Apply one ``--mount NAME=/prefix`` (or ``NAME=off``) to `mounts`; `InvalidInput` names the problem."""
    name, sep, prefix = spec.partition("=")
    name = name.strip()
    if not sep or name not in API_NAMES:
        raise InvalidInput(f"expected NAME=/prefix or NAME=off with NAME in {', '.join(API_NAMES)}", field="mount")
    prefix = prefix.strip()
    if prefix.lower() == "off":
        mounts[name] = None
        return
    if prefix in ("", "/"):
        mounts[name] = ""
        return
    if not prefix.startswith("/") or prefix.endswith("/") or "//" in prefix or any(c in prefix for c in "?#{} "):
        raise InvalidInput(f"{prefix!r} is not a path prefix like /mem0", field="mount")
    mounts[name] = prefix
