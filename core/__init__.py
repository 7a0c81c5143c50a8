"""memdock: a pluggable memory layer for AI agents.

``memdock.open(url)`` returns a `Memory`; the protocol's vocabulary is re-exported here
(`Scope`, `MemoryRecord`, `Filter`, `SearchHit`, `Capability`, the typed errors, `Backend`).
The names whose modules build pydantic models are imported on first use (PEP 562), so that
``import memdock`` and ``memdock --help`` stay cheap; ``from memdock import Memory`` works as usual.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from memdock.capabilities import Capability
from memdock.embedding import Embedder, EmbedderSpec
from memdock.errors import (
    AuthenticationFailed,
    BackendUnavailable,
    EmbedderMismatch,
    InvalidFilter,
    InvalidInput,
    MalformedResponse,
    MemdockError,
    MemoryNotFound,
    ScopeRequired,
    Unsupported,
    WriteConflict,
)

if TYPE_CHECKING:
    from memdock.backend import Backend, BackendSettings, BackendURL
    from memdock.filters import And, Comparison, Exists, Filter, Not, Or, evaluate, parse_mem0_filter
    from memdock.memory import Memory
    from memdock.models import EventKind, HistoryEvent, MemoryRecord, Page, Scope, SearchHit, WriteResult

    open = Memory.open

_LAZY = {
    **dict.fromkeys(("Backend", "BackendSettings", "BackendURL"), "memdock.backend"),
    **dict.fromkeys(("And", "Comparison", "Exists", "Filter", "Not", "Or", "evaluate", "parse_mem0_filter"),
                    "memdock.filters"),
    "Memory": "memdock.memory",
    **dict.fromkeys(("EventKind", "HistoryEvent", "MemoryRecord", "Page", "Scope", "SearchHit", "WriteResult"),
                    "memdock.models"),
}
"""Re-exported name -> the module that defines it (imported when the name is first used)."""


def __getattr__(name: str) -> Any:
    """Import a lazily re-exported name (``open`` is ``Memory.open``) and keep it in the module."""
    if name == "open":
        value: Any = importlib.import_module("memdock.memory").Memory.open
    elif name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    else:
        raise AttributeError(f"module 'memdock' has no attribute {name!r}")
    globals()[name] = value
    return value


__all__ = [
    "And", "AuthenticationFailed", "Backend", "BackendSettings", "BackendURL",
    "BackendUnavailable", "Capability", "Comparison", "Embedder", "EmbedderMismatch", "EmbedderSpec",
    "EventKind", "Exists", "Filter", "HistoryEvent", "InvalidFilter", "InvalidInput", "MalformedResponse",
    "MemdockError", "Memory", "MemoryNotFound", "MemoryRecord", "Not", "Or", "Page", "Scope", "ScopeRequired",
    "SearchHit", "Unsupported", "WriteConflict", "WriteResult", "evaluate", "open", "parse_mem0_filter",
]
