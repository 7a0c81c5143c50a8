"""Keyset cursors shared by backends: records are ordered by (created_at, id) and a cursor names the
last record of the previous page, so deleting records between pages never repeats or skips another."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from datetime import datetime

from memdock.errors import InvalidInput
from memdock.models import MemoryRecord, Page


def sort_key(record: MemoryRecord) -> tuple[str, str]:
    """The listing order: creation time (UTC ISO, so it sorts as text), then id."""
    return (record.created_at.isoformat(), record.id)


def encode_cursor(record: MemoryRecord) -> str:
    """An opaque cursor pointing just after `record`."""
    raw = json.dumps(list(sort_key(record))).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    """The (created_at iso, id) position a cursor names; raises `InvalidInput` (field ``cursor``)."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, memory_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        datetime.fromisoformat(created)
        if not isinstance(memory_id, str):
            raise ValueError("id")
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError):
        raise InvalidInput("malformed cursor", field="cursor") from None
    return (str(created), memory_id)


def page_of(records: Iterable[MemoryRecord], limit: int, cursor: str | None) -> Page:
    """One page from records in any order: sorts them, starts after `cursor`, takes `limit`."""
    ordered = sorted(records, key=sort_key)
    if cursor is not None:
        position = decode_cursor(cursor)
        ordered = [record for record in ordered if sort_key(record) > position]
    items = ordered[:limit]
    next_cursor = encode_cursor(items[-1]) if len(ordered) > limit and items else None
    return Page(items=items, next_cursor=next_cursor)
