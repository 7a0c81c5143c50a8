"""mem0's wire shapes both ways: what the server writes, the mem0 backend reads back unchanged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memdock.errors import MalformedResponse
from memdock.formats.mem0 import (
    event_to_history_entry,
    history_entry_to_event,
    item_score,
    item_to_record,
    record_to_item,
)
from memdock.models import EventKind, HistoryEvent, MemoryRecord, Scope
from memdock.validation import text_hash

IDS = st.text(alphabet="abcdefghij-0123456789", min_size=1, max_size=12)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(min_size=1, max_size=5), inner, max_size=3),
    max_leaves=6,
)
TIMES = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))


@st.composite
def records(draw: st.DrawFn) -> MemoryRecord:
    scope = draw(st.fixed_dictionaries({}, optional={"user_id": IDS, "agent_id": IDS, "run_id": IDS, "app_id": IDS})
                 .filter(bool))
    metadata = draw(st.dictionaries(st.sampled_from(["role", "k", "rating", "tags"]), JSON_VALUES, max_size=4))
    text = draw(st.text(min_size=1, max_size=40).filter(lambda t: t.strip()))
    created = draw(TIMES)
    return MemoryRecord(
        id=draw(IDS), text=text, scope=Scope(**scope), metadata=metadata, hash=text_hash(text), created_at=created,
        updated_at=created + timedelta(seconds=draw(st.integers(0, 1000))),
        expires_at=draw(st.none() | TIMES),
    )


@settings(max_examples=200, deadline=None)
@given(records())
def test_an_item_written_by_the_server_reads_back_as_the_same_record(record: MemoryRecord) -> None:
    assert item_to_record(record_to_item(record), "server") == record


@settings(max_examples=100, deadline=None)
@given(records(), st.sampled_from(list(EventKind)))
def test_a_history_entry_reads_back_as_the_same_event(record: MemoryRecord, kind: EventKind) -> None:
    event = HistoryEvent(id="e1", memory_id=record.id, event=kind, old_text="old", new_text=record.text,
                         old_metadata={"a": 1}, new_metadata=record.metadata, scope=record.scope,
                         created_at=record.created_at)
    assert history_entry_to_event(event_to_history_entry(event), "server") == event


def test_a_string_role_is_promoted_out_of_the_metadata_like_mem0() -> None:
    now = datetime.now(UTC)
    record = MemoryRecord(id="m1", text="hi", scope=Scope(user_id="u"), metadata={"role": "user"}, hash="h",
                          created_at=now, updated_at=now)
    item = record_to_item(record, score=0.5)
    assert item["metadata"] is None and item["role"] == "user" and item["score"] == 0.5
    assert item_to_record(item, "server").metadata == {"role": "user"}


def test_the_reader_takes_real_mem0_items_and_the_request_scope() -> None:
    """An item as mem0's server really sends it (md5 hash, no agent id, null metadata)."""
    item = {"id": "5d74533d", "memory": "I love hiking.", "hash": "4e85c29a11033e57e8679b295ced329b",
            "metadata": None, "created_at": "2026-11-23T22:26:35.180399+00:00", "updated_at": None,
            "user_id": "alice", "role": "user", "score": 1.7}
    record = item_to_record(item, "server", fallback_scope=Scope(user_id="alice", run_id="r1"))
    assert record.scope == Scope(user_id="alice", run_id="r1")
    assert record.hash == text_hash("I love hiking.") and record.updated_at == record.created_at
    assert item_score(item, "server") == 1.0


@pytest.mark.parametrize(("item", "field"), [
    ("not an object", "item"),
    ({"memory": "x", "created_at": "2026-01-01T00:00:00Z"}, "id"),
    ({"id": "a", "memory": 5, "created_at": "2026-01-01T00:00:00Z"}, "memory"),
    ({"id": "a", "memory": "x"}, "created_at"),
    ({"id": "a", "memory": "x", "created_at": "yesterday"}, "created_at"),
    ({"id": "a", "memory": "x", "created_at": "2026-01-01T00:00:00Z", "metadata": [1]}, "metadata"),
    ({"id": "a", "memory": "x", "created_at": "2026-01-01T00:00:00Z", "user_id": 7}, "user_id"),
])
def test_malformed_items_name_the_dialect_and_field(item: Any, field: str) -> None:
    with pytest.raises(MalformedResponse) as info:
        item_to_record(item, "mem0ai-api")
    assert (info.value.dialect, info.value.field) == ("mem0ai-api", field)
    assert "mem0ai-api" in str(info.value)
