"""memdock: a pluggable memory layer for AI agents.

``memdock.open(url)`` returns a `Memory`; the protocol's vocabulary is re-exported here
(`Scope`, `MemoryRecord`, `Filter`, `SearchHit`, `Capability`, the typed errors, `Backend`).
"""

from memdock.backend import Backend, BackendSettings, BackendURL
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
)
from memdock.filters import And, Comparison, Exists, Filter, Not, Or, evaluate, parse_mem0_filter
from memdock.memory import Memory
from memdock.models import EventKind, HistoryEvent, MemoryRecord, Page, Scope, SearchHit, WriteResult

open = Memory.open

__all__ = [
    "And", "AuthenticationFailed", "Backend", "BackendSettings", "BackendURL",
    "BackendUnavailable", "Capability", "Comparison", "Embedder", "EmbedderMismatch", "EmbedderSpec",
    "EventKind", "Exists", "Filter", "HistoryEvent", "InvalidFilter", "InvalidInput", "MalformedResponse",
    "MemdockError", "Memory", "MemoryNotFound", "MemoryRecord", "Not", "Or", "Page", "Scope", "ScopeRequired",
    "SearchHit", "Unsupported", "WriteResult", "evaluate", "open", "parse_mem0_filter",
]
