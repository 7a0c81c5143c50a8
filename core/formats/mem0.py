"""mem0's JSON shapes, both ways: memdock records and history events as mem0 items (for the server's
mem0-compatible routes) and mem0 items back into memdock records (for the ``mem0+http`` backend).

Keeping both directions here keeps them symmetric: an item written by `record_to_item` is read back by
`item_to_record` into an equal record (except the hash, which the reader recomputes with memdock's own
`text_hash`, because mem0 hashes differently). No web framework is imported.

The item shape, as mem0's server answers it:
``{"id", "memory", "hash", "metadata" (null when empty), "created_at", "updated_at", "user_id"?,
"agent_id"?, "run_id"?, "role"?, "score"? }``. mem0 promotes a message's ``role`` out of the metadata
to the item; memdock keeps it in ``metadata["role"]``, so the writer promotes a string ``role`` and the
reader puts it back. memdock's extensions, which mem0 clients ignore: ``app_id`` and ``expires_at``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from memdock.errors import MalformedResponse
from memdock.models import SCOPE_FIELDS, EventKind, HistoryEvent, MemoryRecord, Scope, WriteResult
from memdock.validation import text_hash

MEM0_SCOPE_FIELDS: tuple[str, ...] = ("user_id", "agent_id", "run_id")
"""The scope ids mem0 knows. memdock's ``app_id`` travels as an extension field."""

NO_ROLE_MARKER = "memdock_no_role"
"""Metadata key the mem0 backend adds (value True) when it stores a memdock text that has no role through
a dialect where every memory is a chat message with a role. Readers drop the marker and the role;
memdock's own server strips it on arrival."""

REMOVED_KEYS_MARKER = "memdock_removed_keys"
"""Metadata key (a list of key names) the mem0 backend writes on a service whose update MERGES metadata
(mem0's server never removes a key): the keys listed are ones memdock's metadata no longer has. Readers
drop the listed keys and the marker, so a memory reads back with exactly the metadata last written."""


# -- memdock -> mem0 (the server side) -----------------------------------------------------------------


def record_to_item(record: MemoryRecord, score: float | None = None) -> dict[str, Any]:
    """A memdock record as a mem0 item; `score` is added for search results."""
    metadata = dict(record.metadata)
    role = metadata.get("role")
    if isinstance(role, str):
        del metadata["role"]
    item: dict[str, Any] = {
        "id": record.id,
        "memory": record.text,
        "hash": record.hash,
        "metadata": metadata or None,
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
        **record.scope.ids(),
    }
    if isinstance(role, str):
        item["role"] = role
    if record.expires_at is not None:
        item["expires_at"] = record.expires_at.isoformat()
        item["expiration_date"] = record.expires_at.date().isoformat()
    if score is not None:
        item["score"] = score
    return item


def add_result_items(results: Sequence[WriteResult], *, inferred: bool = False) -> list[dict[str, Any]]:
    """What mem0's add answers per stored message: ``{"id", "memory", "event", "actor_id", "role"}``; with
    `inferred` (a request that did not say ``infer: false``) only ``{"id", "memory", "event"}``, as mem0's
    LLM path answers."""
    items = []
    for result in results:
        item: dict[str, Any] = {"id": result.record.id, "memory": result.record.text, "event": result.event.value}
        if not inferred:
            item["actor_id"] = None
            item["role"] = _role(result.record.metadata)
        items.append(item)
    return items


def _role(metadata: Mapping[str, Any] | None) -> str | None:
    """The message role memdock keeps in ``metadata["role"]`` (None when absent or not a string)."""
    role = (metadata or {}).get("role")
    return role if isinstance(role, str) else None


def event_to_history_entry(event: HistoryEvent) -> dict[str, Any]:
    """A memdock history event as a mem0 history entry (plus memdock's scope and metadata extensions); its
    ``role`` is the memory's message role, as mem0 keeps it in every entry."""
    return {
        "id": event.id,
        "memory_id": event.memory_id,
        "old_memory": event.old_text,
        "new_memory": event.new_text,
        "event": event.event.value,
        "created_at": event.created_at.isoformat(),
        "updated_at": event.created_at.isoformat(),
        "is_deleted": event.event is EventKind.DELETE,
        "actor_id": None,
        "role": _role(event.old_metadata if event.new_metadata is None else event.new_metadata),
        "old_metadata": event.old_metadata,
        "new_metadata": event.new_metadata,
        **event.scope.ids(),
    }


# -- mem0 -> memdock (the client side) -----------------------------------------------------------------


def item_to_record(item: Any, dialect: str, fallback_scope: Scope | None = None) -> MemoryRecord:
    """Read a mem0 item. Scope ids missing from the item come from `fallback_scope` (the scope the
    request was made in). Raises `MalformedResponse` naming the dialect and the field."""
    data = _mapping(item, dialect, "item")
    memory_id = _required_str(data, "id", dialect)
    text = _required_str(data, "memory", dialect)
    metadata = _without_removed_keys(_metadata(data.get("metadata"), dialect), dialect)
    role = None if metadata.pop(NO_ROLE_MARKER, None) is True else data.get("role")
    if role is not None:
        if not isinstance(role, str):
            raise MalformedResponse("must be a string or null", dialect=dialect, field="role")
        metadata["role"] = role
    created = _time(data.get("created_at"), dialect, "created_at")
    if created is None:
        raise MalformedResponse("is missing", dialect=dialect, field="created_at")
    updated = _time(data.get("updated_at"), dialect, "updated_at") or created
    return MemoryRecord(
        id=memory_id,
        text=text,
        scope=_scope(data, dialect, fallback_scope),
        metadata=metadata,
        hash=text_hash(text),
        created_at=created,
        updated_at=max(updated, created),
        expires_at=_time(data.get("expires_at"), dialect, "expires_at"),
    )


def item_score(item: Any, dialect: str, field: str = "score") -> float:
    """The similarity (a cosine) of a search result item, clamped to [0, 1]; `field` names the value
    in errors (the caller may pass a nested value as ``{"score": value}``)."""
    score = _mapping(item, dialect, "item").get("score")
    if isinstance(score, bool) or not isinstance(score, int | float) or score != score:
        raise MalformedResponse("must be a number", dialect=dialect, field=field)
    return min(1.0, max(0.0, float(score)))


def history_entry_to_event(entry: Any, dialect: str, fallback_scope: Scope | None = None) -> HistoryEvent:
    """Read a mem0 history entry. mem0 stamps an entry's time in ``updated_at`` (its ``created_at`` is the
    memory's creation), so the event time is ``updated_at`` when present."""
    data = _mapping(entry, dialect, "history")
    kind = data.get("event")
    if kind not in ("ADD", "UPDATE", "DELETE", "NONE"):
        raise MalformedResponse(f"unknown event {kind!r}", dialect=dialect, field="history.event")
    when = _time(data.get("updated_at"), dialect, "history.updated_at") or _time(
        data.get("created_at"), dialect, "history.created_at"
    )
    if when is None:
        raise MalformedResponse("has no time", dialect=dialect, field="history.created_at")
    return HistoryEvent(
        id=_required_str(data, "id", dialect, prefix="history."),
        memory_id=_required_str(data, "memory_id", dialect, prefix="history."),
        event=EventKind(kind),
        old_text=_optional_str(data, "old_memory", dialect),
        new_text=_optional_str(data, "new_memory", dialect),
        old_metadata=_optional_metadata(data.get("old_metadata"), dialect, "history.old_metadata"),
        new_metadata=_optional_metadata(data.get("new_metadata"), dialect, "history.new_metadata"),
        scope=_scope(data, dialect, fallback_scope),
        created_at=when,
    )


def _mapping(value: Any, dialect: str, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise MalformedResponse(f"must be an object, got {type(value).__name__}", dialect=dialect, field=field)
    return value


def _required_str(data: Mapping[str, Any], key: str, dialect: str, prefix: str = "") -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedResponse("must be a non-empty string", dialect=dialect, field=prefix + key)
    return value


def _optional_str(data: Mapping[str, Any], key: str, dialect: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise MalformedResponse("must be a string or null", dialect=dialect, field=f"history.{key}")
    return value


def _metadata(value: Any, dialect: str) -> dict[str, Any]:
    if value is None:
        return {}
    return dict(_mapping(value, dialect, "metadata"))


def _without_removed_keys(metadata: dict[str, Any], dialect: str) -> dict[str, Any]:
    """Drop `REMOVED_KEYS_MARKER` and the keys it lists."""
    removed = metadata.pop(REMOVED_KEYS_MARKER, [])
    if not isinstance(removed, list) or not all(isinstance(key, str) for key in removed):
        raise MalformedResponse("must be a list of key names", dialect=dialect,
                                field=f"metadata.{REMOVED_KEYS_MARKER}")
    for key in removed:
        metadata.pop(key, None)
    return metadata


def _optional_metadata(value: Any, dialect: str, field: str) -> dict[str, Any] | None:
    return None if value is None else dict(_mapping(value, dialect, field))


def _time(value: Any, dialect: str, field: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedResponse("must be an ISO-8601 string", dialect=dialect, field=field)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise MalformedResponse(f"not an ISO-8601 time: {value[:40]!r}", dialect=dialect, field=field) from None
    return parsed


def _scope(data: Mapping[str, Any], dialect: str, fallback: Scope | None) -> Scope:
    ids = fallback.ids() if fallback is not None else {}
    for name in SCOPE_FIELDS:
        value = data.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise MalformedResponse("must be a string or null", dialect=dialect, field=name)
        ids[name] = value
    try:
        return Scope(**ids)
    except ValueError as exc:
        raise MalformedResponse(str(exc).splitlines()[0], dialect=dialect, field="scope") from None
