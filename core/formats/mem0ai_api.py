"""tonori/mem0ai-api's JSON shapes, written from memdock records and events (for the server's
``/mem0ai-api`` routes). No web framework is imported.

The shapes are the ones the real service answers (tonori/mem0ai-api, a FastAPI wrapper around mem0 0.0.9),
which differ from mem0's later server:

- item: ``{"id", "text", "metadata": {<user keys>, "user_id"?, "agent_id"?, "run_id"?, "data": <text>,
  "created_at": <epoch seconds, int>}, "score"?}``; no ``memory``, ``hash`` or ``updated_at``. The scope ids,
  the text and the creation time live INSIDE ``metadata``, as mem0 0.0.9 keeps them in its payload; the
  reserved keys ``data`` and ``created_at`` win over user keys of the same name. memdock's ``app_id``, which
  tonori does not know, travels in ``metadata`` too when it is set;
- store result: ``{"id", "event": "add"|"update"|"delete", "data": <text>}``, one per change;
- history entry: ``{"id", "memory_id", "prev_value", "new_value", "event": "add"|"update"|"delete",
  "timestamp": "YYYY-MM-DD hh:mm:ss.ffffff" (naive; memdock writes UTC), "is_deleted": 0|1}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from memdock.models import EventKind, HistoryEvent, MemoryRecord, WriteResult

EVENT_NAMES: dict[EventKind, str] = {EventKind.ADD: "add", EventKind.UPDATE: "update", EventKind.DELETE: "delete"}
"""mem0 0.0.9's lowercase event names. memdock's NONE (nothing changed) has none: mem0 0.0.9 reports no
event when its LLM decides nothing is new, so a NONE is left out of store results and history."""


def epoch_seconds(when: datetime) -> int:
    """`when` as whole Unix seconds (mem0 0.0.9's ``created_at``)."""
    return int(when.timestamp())


def naive_timestamp(when: datetime) -> str:
    """`when` in UTC as ``YYYY-MM-DD hh:mm:ss.ffffff`` without a zone (mem0 0.0.9's history ``timestamp``)."""
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def mem0ai_api_item(record: MemoryRecord, score: float | None = None) -> dict[str, Any]:
    """A memdock record as a mem0ai-api item; `score` (memdock's score) is added for search results only."""
    metadata: dict[str, Any] = {
        **record.metadata,
        **record.scope.ids(),
        "data": record.text,
        "created_at": epoch_seconds(record.created_at),
    }
    item: dict[str, Any] = {"id": record.id, "text": record.text, "metadata": metadata}
    if score is not None:
        item["score"] = score
    return item


def mem0ai_api_store_results(results: Sequence[WriteResult]) -> list[dict[str, Any]]:
    """What ``POST /store`` answers in ``data``: ``{"id", "event", "data"}`` per change, NONE left out
    (so storing a text its scope already holds answers ``[]``, as mem0 0.0.9 does when nothing is new)."""
    return [
        {"id": result.record.id, "event": EVENT_NAMES[result.event], "data": result.record.text}
        for result in results
        if result.event in EVENT_NAMES
    ]


def mem0ai_api_history(events: Sequence[HistoryEvent]) -> list[dict[str, Any]]:
    """A memory's history as mem0ai-api entries, oldest first (NONE events left out)."""
    return [
        {
            "id": event.id,
            "memory_id": event.memory_id,
            "prev_value": event.old_text,
            "new_value": event.new_text,
            "event": EVENT_NAMES[event.event],
            "timestamp": naive_timestamp(event.created_at),
            "is_deleted": 1 if event.event is EventKind.DELETE else 0,
        }
        for event in events
        if event.event in EVENT_NAMES
    ]
