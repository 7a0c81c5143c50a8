"""mem0's wire shapes both ways: what the server writes, the mem0 backend reads back unchanged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memdock.errors import MalformedResponse
from memdock.formats.mem0 import (
    add_result_items,
    event_to_history_entry,
    history_entry_to_event,
    item_score,
    item_to_record,
    record_to_item,
)
from memdock.formats.mem0ai_api import mem0ai_api_history, mem0ai_api_item, mem0ai_api_store_results
from memdock.models import EventKind, HistoryEvent, MemoryRecord, Scope, WriteResult
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


# -- server-side rendering: mem0's add results and history roles, tonori's (mem0ai-api) shapes -------------


def _record(metadata: dict[str, Any], **scope: str) -> MemoryRecord:
    created = datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=UTC)
    return MemoryRecord(id="m1", text="I like green tea", scope=Scope(**(scope or {"user_id": "u1"})),
                        metadata=metadata, hash=text_hash("I like green tea"), created_at=created,
                        updated_at=created + timedelta(seconds=5))


def test_add_results_carry_the_role_unless_the_request_was_inferred() -> None:
    added = WriteResult(event=EventKind.ADD, record=_record({"role": "assistant"}))
    assert add_result_items([added]) == [{"id": "m1", "memory": "I like green tea", "event": "ADD",
                                          "actor_id": None, "role": "assistant"}]
    assert add_result_items([added], inferred=True) == [{"id": "m1", "memory": "I like green tea", "event": "ADD"}]
    assert add_result_items([WriteResult(event=EventKind.ADD, record=_record({}))])[0]["role"] is None


@pytest.mark.parametrize(("old", "new", "role"), [
    (None, {"role": "user"}, "user"), ({"role": "user"}, None, "user"), ({"role": "user", "a": 1}, {"a": 1}, None),
    (None, {"role": 5}, None),
])
def test_history_entries_carry_the_memorys_role(old: dict[str, Any] | None, new: dict[str, Any] | None,
                                                role: str | None) -> None:
    event = HistoryEvent(id="e1", memory_id="m1", event=EventKind.UPDATE, old_text="a", new_text="b",
                         old_metadata=old, new_metadata=new, scope=Scope(user_id="u1"),
                         created_at=datetime(2026, 12, 1, tzinfo=UTC))
    assert event_to_history_entry(event)["role"] == role


def test_a_mem0ai_api_item_is_tonoris_shape() -> None:
    item = mem0ai_api_item(_record({"source": "chat", "data": "user key", "created_at": "user key"},
                                   user_id="u1", run_id="r1"), score=0.25)
    assert item == {"id": "m1", "text": "I like green tea", "score": 0.25, "metadata": {
        "source": "chat", "user_id": "u1", "run_id": "r1", "data": "I like green tea", "created_at": 1796126400}}
    assert "score" not in mem0ai_api_item(_record({}))


def test_mem0ai_api_store_results_leave_out_what_did_not_change() -> None:
    record = _record({})
    results = [WriteResult(event=EventKind.ADD, record=record), WriteResult(event=EventKind.NONE, record=record)]
    assert mem0ai_api_store_results(results) == [{"id": "m1", "event": "add", "data": "I like green tea"}]
    assert mem0ai_api_store_results(results[1:]) == []


def test_mem0ai_api_history_is_tonoris_shape() -> None:
    when = datetime(2026, 12, 1, 13, 0, 0, 5, tzinfo=timezone(timedelta(hours=1)))
    events = [HistoryEvent(id=f"e{n}", memory_id="m1", event=kind, old_text=old, new_text=new,
                           scope=Scope(user_id="u1"), created_at=when)
              for n, (kind, old, new) in enumerate([(EventKind.ADD, None, "a"), (EventKind.UPDATE, "a", "b"),
                                                    (EventKind.NONE, "b", "b"), (EventKind.DELETE, "b", None)])]
    assert mem0ai_api_history(events) == [
        {"id": "e0", "memory_id": "m1", "prev_value": None, "new_value": "a", "event": "add",
         "timestamp": "2026-12-01 12:00:00.000005", "is_deleted": 0},
        {"id": "e1", "memory_id": "m1", "prev_value": "a", "new_value": "b", "event": "update",
         "timestamp": "2026-12-01 12:00:00.000005", "is_deleted": 0},
        {"id": "e3", "memory_id": "m1", "prev_value": "b", "new_value": None, "event": "delete",
         "timestamp": "2026-12-01 12:00:00.000005", "is_deleted": 1},
    ]


def test_keys_listed_as_removed_are_hidden_with_the_marker() -> None:
    """A service that merges metadata on update keeps removed keys; the backend lists them under
    `REMOVED_KEYS_MARKER`, and the reader hides them (and the marker), role marker included."""
    from memdock.formats.mem0 import NO_ROLE_MARKER, REMOVED_KEYS_MARKER

    item = {"id": "m1", "memory": "x", "created_at": "2026-01-01T00:00:00Z", "role": "user",
            "metadata": {"a": 1, "b": 2, NO_ROLE_MARKER: True, REMOVED_KEYS_MARKER: ["b", NO_ROLE_MARKER, "gone"]}}
    assert item_to_record(item, "server").metadata == {"a": 1, "role": "user"}
    item["metadata"] = {"a": 1, REMOVED_KEYS_MARKER: []}
    assert item_to_record(item, "server").metadata == {"a": 1, "role": "user"}


@pytest.mark.parametrize("marker", ["b", ["b", 1], {"b": True}])
def test_a_malformed_removed_keys_marker_names_the_field(marker: Any) -> None:
    from memdock.formats.mem0 import REMOVED_KEYS_MARKER

    item = {"id": "m1", "memory": "x", "created_at": "2026-01-01T00:00:00Z", "metadata": {REMOVED_KEYS_MARKER: marker}}
    with pytest.raises(MalformedResponse) as info:
        item_to_record(item, "server")
    assert info.value.field == f"metadata.{REMOVED_KEYS_MARKER}"


@pytest.mark.parametrize(("score", "expected"), [(-0.3, 0.0), (0.4734, 0.4734), (1.2, 1.0)])
def test_item_score_is_the_clamped_cosine(score: float, expected: float) -> None:
    assert item_score({"score": score}, "mem0ai-api") == pytest.approx(expected)


@pytest.mark.parametrize("score", [None, "0.5", True, float("nan")])
def test_a_score_that_is_not_a_number_names_the_given_field(score: Any) -> None:
    with pytest.raises(MalformedResponse) as info:
        item_score({"score": score}, "server", field="score_details.semantic_score")
    assert (info.value.dialect, info.value.field) == ("server", "score_details.semantic_score")
