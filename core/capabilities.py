"""What a backend may declare it supports. The conformance kit holds a backend to its declaration."""

from __future__ import annotations

from enum import StrEnum


class Capability(StrEnum):
    """One optional ability of a backend. Anything not declared is reported N/A, not assumed."""

    FILTER_EQUALITY = "filter_equality"  # eq, ne, in, nin, exists, and/or/not on metadata
    FILTER_RANGE = "filter_range"  # gt, gte, lt, lte on numbers
    CONTAINS = "contains"  # contains / icontains
    HISTORY = "history"  # ADD / UPDATE / DELETE events per memory
    TTL = "ttl"  # expires_at honoured: expired memories are invisible
    PERSISTENCE = "persistence"  # data survives close() and reopening the same URL
    SERVER_SIDE_EMBEDDING = "server_side_embedding"  # backend embeds text itself; core sends no vectors
    NESTED_METADATA = "nested_metadata"  # metadata values may be lists and objects
    CONCURRENT_WRITES = "concurrent_writes"  # safe to call from several threads at once
    UPDATE = "update"  # update replaces text and metadata in place, keeping id, scope and created_at
    HISTORY_AFTER_DELETE = "history_after_delete"  # with HISTORY: a deleted memory's events stay readable
    KEYWORD_SEARCH = "keyword_search"  # search modes "keyword" and "hybrid" (memdock.search_modes); default hybrid
