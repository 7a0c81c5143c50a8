"""The `Memory` facade on the ``memory://`` reference backend with a deterministic test embedder."""

from __future__ import annotations

import copy
import math
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

import memdock
from memdock import Memory
from memdock.backends.reference import CAPABILITIES, ReferenceBackend
from memdock.capabilities import Capability
from memdock.errors import (
    BackendUnavailable,
    EmbedderMismatch,
    InvalidFilter,
    InvalidInput,
    MemoryNotFound,
    ScopeRequired,
    Unsupported,
)
from memdock.filters import Filter
from memdock.models import EventKind, MemoryRecord, Scope, SearchHit
from memdock.validation import MAX_JSON_DEPTH, MAX_TEXT_BYTES
from tests.helpers.support import make_test_embedder, other_test_embedder


@pytest.fixture
def mem() -> Iterator[Memory]:
    with Memory.open("memory://", embedder=make_test_embedder()) as memory:
        yield memory


def all_ids(mem: Memory, **scope: Any) -> list[str]:
    return [r.id for r in mem.export(**scope)]


# -- round trip ------------------------------------------------------------------------------------------


def test_add_get_update_delete_round_trip(mem: Memory) -> None:
    [added] = mem.add("I like green tea", user_id="u1", metadata={"topic": "drinks"})
    assert added.event is EventKind.ADD
    record = added.record
    assert uuid.UUID(record.id)
    assert record.text == "I like green tea"
    assert record.scope == Scope(user_id="u1")
    assert record.metadata == {"topic": "drinks"}
    assert record.vector is None
    assert record.created_at.tzinfo is not None and record.created_at == record.updated_at

    fetched = mem.get(record.id)
    assert fetched.model_dump() == record.model_dump()

    updated = mem.update(record.id, text="I like oolong tea", metadata={"topic": "tea"})
    assert updated.event is EventKind.UPDATE
    assert updated.record.text == "I like oolong tea" and updated.record.metadata == {"topic": "tea"}
    assert updated.record.updated_at >= record.updated_at
    assert updated.record.created_at == record.created_at
    again = mem.get(record.id)
    assert again.text == "I like oolong tea" and again.metadata == {"topic": "tea"}
    assert again.hash != record.hash

    deleted = mem.delete(record.id)
    assert deleted.event is EventKind.DELETE and deleted.record.text == "I like oolong tea"
    with pytest.raises(MemoryNotFound):
        mem.get(record.id)
    assert mem.count(user_id="u1") == 0


def test_ids_are_generated_and_distinct(mem: Memory) -> None:
    ids = [mem.add(f"fact number {i}", user_id="u1")[0].record.id for i in range(20)]
    assert len(set(ids)) == 20
    for memory_id in ids:
        assert str(uuid.UUID(memory_id)) == memory_id


def test_update_text_is_re_embedded_and_searchable(mem: Memory) -> None:
    [added] = mem.add("alpha beta gamma", user_id="u1")
    mem.add("delta epsilon zeta", user_id="u1")
    mem.update(added.record.id, text="omega sigma tau")
    hits = mem.search("omega sigma tau", user_id="u1", mode="vector")
    assert hits[0].record.id == added.record.id
    assert hits[0].score == pytest.approx(1.0)


def test_inputs_are_not_mutated(mem: Memory) -> None:
    metadata = {"topic": "drinks", "tags": ["a", "b"], "nested": {"k": [1, 2]}}
    snapshot = copy.deepcopy(metadata)
    messages = [
        {"role": "system", "content": "be nice"},
        {"role": "user", "content": "I like tea"},
        {"role": "assistant", "content": "Noted, you like tea"},
    ]
    messages_snapshot = copy.deepcopy(messages)
    [added] = mem.add("I like green tea", user_id="u1", metadata=metadata)
    mem.add(messages, user_id="u1", metadata=metadata)
    assert metadata == snapshot
    assert messages == messages_snapshot
    scope = Scope(user_id="u2")
    mem.add("x y z", scope=scope, agent_id="a1")
    assert scope == Scope(user_id="u2")

    # the store keeps its own copy: mutating what was passed in or returned changes nothing stored
    metadata["tags"].append("c")  # type: ignore[attr-defined]
    metadata["nested"]["k"].append(3)  # type: ignore[index]
    added.record.metadata["topic"] = "changed"
    assert mem.get(added.record.id).metadata == snapshot

    update_metadata = {"list": [1]}
    mem.update(added.record.id, metadata=update_metadata)
    update_metadata["list"].append(2)
    assert mem.get(added.record.id).metadata == {"list": [1]}


# -- dedup and messages ----------------------------------------------------------------------------------


def test_same_text_same_scope_is_not_stored_twice(mem: Memory) -> None:
    [first] = mem.add("I like green tea", user_id="u1")
    [second] = mem.add("I like green tea", user_id="u1")
    assert second.event is EventKind.NONE
    assert second.record.id == first.record.id
    # white space runs are folded for the dedup key
    [third] = mem.add("I  like green\ttea ", user_id="u1")
    assert third.event is EventKind.NONE and third.record.id == first.record.id
    assert mem.count(user_id="u1") == 1


def test_dedup_result_carries_no_vector(mem: Memory) -> None:
    """Callers never see vectors (`memory._public`); the NONE result of a duplicate must not leak one."""
    mem.add("I like green tea", user_id="u1")
    [again] = mem.add("I like green tea", user_id="u1")
    assert again.event is EventKind.NONE
    assert again.record.vector is None
    twice = [{"role": "user", "content": "twice"}, {"role": "user", "content": "twice"}]
    batch = mem.add(twice, user_id="u1")
    assert [r.record.vector for r in batch] == [None, None]


def test_same_text_other_scope_is_a_new_record(mem: Memory) -> None:
    [first] = mem.add("I like green tea", user_id="u1")
    [other_user] = mem.add("I like green tea", user_id="u2")
    [narrower] = mem.add("I like green tea", user_id="u1", agent_id="a1")
    assert other_user.event is EventKind.ADD and narrower.event is EventKind.ADD
    assert len({first.record.id, other_user.record.id, narrower.record.id}) == 3
    assert mem.count(user_id="u1") == 2
    assert mem.count(user_id="u2") == 1


def test_duplicates_within_one_batch_are_stored_once(mem: Memory) -> None:
    results = mem.add(
        [{"role": "user", "content": "same words"}, {"role": "user", "content": "same words"}], user_id="u1"
    )
    assert [r.event for r in results] == [EventKind.ADD, EventKind.NONE]
    assert results[0].record.id == results[1].record.id
    assert mem.count(user_id="u1") == 1


def test_messages_store_one_memory_per_non_system_message(mem: Memory) -> None:
    results = mem.add(
        [
            {"role": "system", "content": "You are a helpful assistant"},
            {"role": "user", "content": "My name is Ada"},
            {"role": "assistant", "content": "Nice to meet you, Ada"},
        ],
        user_id="u1",
        metadata={"source": "chat"},
    )
    assert [r.event for r in results] == [EventKind.ADD, EventKind.ADD]
    assert [(r.record.text, r.record.metadata) for r in results] == [
        ("My name is Ada", {"source": "chat", "role": "user"}),
        ("Nice to meet you, Ada", {"source": "chat", "role": "assistant"}),
    ]
    stored = {r.text: r.metadata["role"] for r in mem.export(user_id="u1")}
    assert stored == {"My name is Ada": "user", "Nice to meet you, Ada": "assistant"}


def test_only_system_messages_is_invalid(mem: Memory) -> None:
    with pytest.raises(InvalidInput) as info:
        mem.add([{"role": "system", "content": "x"}], user_id="u1")
    assert info.value.field == "messages"
    assert mem.count(user_id="u1") == 0


# -- scope -----------------------------------------------------------------------------------------------


def test_writes_need_a_scope(mem: Memory) -> None:
    with pytest.raises(ScopeRequired) as info:
        mem.add("no owner")
    assert info.value.field == "scope"
    with pytest.raises(ScopeRequired):
        mem.add("no owner", scope=Scope())
    with pytest.raises(ScopeRequired):
        mem.add("no owner", user_id=None, agent_id=None)


@pytest.mark.parametrize("operation", ["search", "list", "count", "delete_all", "export"])
def test_scoped_reads_need_a_scope(mem: Memory, operation: str) -> None:
    mem.add("something", user_id="u1")
    call: dict[str, Any] = {
        "search": lambda: mem.search("something"),
        "list": lambda: mem.list(),
        "count": lambda: mem.count(),
        "delete_all": lambda: mem.delete_all(),
        "export": lambda: mem.export(),
    }
    with pytest.raises(ScopeRequired):
        call[operation]()
    assert mem.count(user_id="u1") == 1


def test_get_update_delete_history_are_confined_to_a_given_scope(mem: Memory) -> None:
    [added] = mem.add("secret of u1", user_id="u1", agent_id="a1")
    memory_id = added.record.id
    other = Scope(user_id="u2")
    with pytest.raises(MemoryNotFound):
        mem.get(memory_id, scope=other)
    with pytest.raises(MemoryNotFound):
        mem.update(memory_id, text="hijacked", scope=other)
    with pytest.raises(MemoryNotFound):
        mem.delete(memory_id, scope=other)
    with pytest.raises(MemoryNotFound):
        mem.history(memory_id, scope=other)
    with pytest.raises(MemoryNotFound):
        mem.get(memory_id, scope=Scope(user_id="u1", agent_id="a2"))
    assert mem.get(memory_id).text == "secret of u1"
    assert [e.event for e in mem.history(memory_id)] == [EventKind.ADD]

    # the owner (or a wider scope that contains the record) sees it
    assert mem.get(memory_id, scope=Scope(user_id="u1")).id == memory_id
    assert mem.get(memory_id, scope=Scope(agent_id="a1")).id == memory_id
    assert mem.update(memory_id, text="updated by owner", scope=Scope(user_id="u1")).event is EventKind.UPDATE
    assert len(mem.history(memory_id, scope=Scope(user_id="u1"))) == 2
    mem.delete(memory_id, scope=Scope(user_id="u1", agent_id="a1"))
    assert [e.event for e in mem.history(memory_id, scope=Scope(user_id="u1"))][-1] is EventKind.DELETE
    with pytest.raises(MemoryNotFound):
        mem.history(memory_id, scope=other)


def test_search_list_count_delete_all_are_confined(mem: Memory) -> None:
    mem.add("I like green tea", user_id="u1")
    mem.add("I like coffee", user_id="u1", agent_id="a1")
    mem.add("I like green tea", user_id="u2")
    mem.add("I like juice", agent_id="a1")

    assert {h.record.scope.user_id for h in mem.search("green tea", user_id="u2")} == {"u2"}
    assert all(h.record.scope.user_id == "u1" for h in mem.search("green tea", user_id="u1"))
    assert len(mem.search("green tea", user_id="u1")) == 2
    assert len(mem.search("juice", agent_id="a1")) == 2
    assert [r.text for r in mem.list(user_id="u1", agent_id="a1").items] == ["I like coffee"]
    assert mem.count(user_id="u1") == 2
    assert mem.count(user_id="u2") == 1
    assert mem.count(agent_id="a1") == 2
    assert mem.count(user_id="nobody") == 0
    assert mem.list(user_id="nobody").items == []
    assert mem.search("tea", user_id="nobody") == []

    assert mem.delete_all(user_id="u1", agent_id="a1") == 1
    assert mem.count(user_id="u1") == 1
    assert mem.delete_all(user_id="u1") == 1
    assert mem.count(user_id="u1") == 0
    assert mem.count(user_id="u2") == 1
    assert mem.count(agent_id="a1") == 1


def test_delete_all_with_a_filter(mem: Memory) -> None:
    for i in range(5):
        mem.add(f"rated memory {i}", user_id="u1", metadata={"rating": i})
    mem.add("rated elsewhere", user_id="u2", metadata={"rating": 4})
    assert mem.delete_all(user_id="u1", filter={"rating": {"gte": 3}}) == 2
    assert sorted(r.metadata["rating"] for r in mem.export(user_id="u1")) == [0, 1, 2]
    assert mem.count(user_id="u2") == 1


def test_filters_reach_search_list_and_count(mem: Memory) -> None:
    for i in range(6):
        mem.add(f"note {i}", user_id="u1", metadata={"rating": i, "kind": "even" if i % 2 == 0 else "odd"})
    where = {"AND": [{"kind": "even"}, {"rating": {"gte": 2}}]}
    assert mem.count(user_id="u1", filter=where) == 2
    assert {r.metadata["rating"] for r in mem.list(user_id="u1", filter=where).items} == {2, 4}
    assert {h.record.metadata["rating"] for h in mem.search("note", user_id="u1", filter=where)} == {2, 4}
    assert mem.count(user_id="u1", filter={"user_id": "u2"}) == 0


# -- search ----------------------------------------------------------------------------------------------

TEXTS = [
    "I like green tea in the morning",
    "My car is a red hatchback",
    "I play chess on Sundays",
    "The cat sleeps on the sofa",
    "Green tea and jasmine are my favourite drinks",
    "I work as a software engineer",
]


@pytest.fixture
def filled(mem: Memory) -> Memory:
    for text in TEXTS:
        mem.add(text, user_id="u1")
    return mem


def test_exact_text_scores_highest(filled: Memory) -> None:
    for text in TEXTS:
        hits = filled.search(text, user_id="u1", limit=len(TEXTS), mode="vector")
        assert hits[0].record.text == text
        assert hits[0].score == pytest.approx(1.0)
        assert all(h.score <= hits[0].score for h in hits)


def test_scores_are_in_unit_interval_and_descending(filled: Memory) -> None:
    hits = filled.search("green tea", user_id="u1", limit=100)
    assert len(hits) == len(TEXTS)
    scores = [h.score for h in hits]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores == sorted(scores, reverse=True)
    assert all(h.record.vector is None for h in hits)
    assert all(isinstance(h, SearchHit) for h in hits)


def test_higher_threshold_gives_a_subset(filled: Memory) -> None:
    previous: set[str] | None = None
    for threshold in (0.0, 0.3, 0.5, 0.6, 0.75, 0.9, 1.0):
        hits = filled.search("green tea", user_id="u1", limit=100, threshold=threshold, mode="vector")
        assert all(h.score >= threshold for h in hits)
        ids = {h.record.id for h in hits}
        if previous is not None:
            assert ids <= previous
        previous = ids
    assert len(filled.search("green tea", user_id="u1", threshold=0.0, limit=100)) == len(TEXTS)
    exact = filled.search(TEXTS[0], user_id="u1", threshold=0.999, mode="vector")
    assert [h.record.text for h in exact] == [TEXTS[0]]


@pytest.mark.parametrize("limit", [1, 2, 5, 1000])
def test_search_limit(filled: Memory, limit: int) -> None:
    hits = filled.search("tea", user_id="u1", limit=limit)
    assert len(hits) == min(limit, len(TEXTS))
    full = filled.search("tea", user_id="u1", limit=1000)
    assert [h.record.id for h in hits] == [h.record.id for h in full[:limit]]


# -- listing ---------------------------------------------------------------------------------------------


def pages(mem: Memory, limit: int, **scope: Any) -> list[list[str]]:
    result: list[list[str]] = []
    cursor: str | None = None
    while True:
        page = mem.list(limit=limit, cursor=cursor, **scope)
        result.append([r.id for r in page.items])
        if page.next_cursor is None:
            return result
        cursor = page.next_cursor


@pytest.fixture
def many(mem: Memory) -> tuple[Memory, list[str]]:
    ids = [mem.add(f"memory number {i}", user_id="u1")[0].record.id for i in range(23)]
    batch = mem.add([{"role": "user", "content": f"batched {i}"} for i in range(5)], user_id="u1")
    ids += [r.record.id for r in batch]
    mem.add("belongs to someone else", user_id="u2")
    return mem, ids


@pytest.mark.parametrize("limit", [1, 4, 7, 28, 100])
def test_list_pages_are_stable_complete_and_disjoint(many: tuple[Memory, list[str]], limit: int) -> None:
    mem, ids = many
    first = pages(mem, limit, user_id="u1")
    flat = [i for page in first for i in page]
    assert len(flat) == len(set(flat)) == len(ids) == mem.count(user_id="u1")
    assert set(flat) == set(ids)
    assert all(0 < len(page) <= limit for page in first)
    assert pages(mem, limit, user_id="u1") == first  # stable
    records = mem.export(user_id="u1")
    assert [r.id for r in records] == flat
    keys = [(r.created_at, r.id) for r in records]
    assert keys == sorted(keys)  # oldest first, ties by id


def test_cursor_survives_deleting_the_previous_page(many: tuple[Memory, list[str]]) -> None:
    mem, _ = many
    full = [r.id for r in mem.export(user_id="u1")]
    page1 = mem.list(user_id="u1", limit=5)
    assert [r.id for r in page1.items] == full[:5]
    assert page1.next_cursor is not None
    for record in page1.items:  # including the record the cursor points after
        mem.delete(record.id)
    page2 = mem.list(user_id="u1", limit=5, cursor=page1.next_cursor)
    assert [r.id for r in page2.items] == full[5:10]
    mem.delete(full[12])  # a record of a later page goes away: it is skipped, nothing else is
    assert page2.next_cursor is not None
    rest: list[str] = []
    cursor: str | None = page2.next_cursor
    while cursor is not None:
        page = mem.list(user_id="u1", limit=5, cursor=cursor)
        rest += [r.id for r in page.items]
        cursor = page.next_cursor
    assert rest == full[10:12] + full[13:]


@pytest.mark.parametrize("cursor", ["garbage", "!!!", "", "bm90IGpzb24", "WzEsMiwzXQ", "eyJhIjogMX0", "W10"])
def test_malformed_cursor(mem: Memory, cursor: str) -> None:
    mem.add("something", user_id="u1")
    with pytest.raises(InvalidInput) as info:
        mem.list(user_id="u1", cursor=cursor)
    assert info.value.field == "cursor"


def test_non_string_cursor(mem: Memory) -> None:
    with pytest.raises(InvalidInput) as info:
        mem.list(user_id="u1", cursor=5)  # type: ignore[arg-type]
    assert info.value.field == "cursor"


# -- history ---------------------------------------------------------------------------------------------


def test_history_records_add_update_delete(mem: Memory) -> None:
    [added] = mem.add("likes jasmine tea", user_id="u1", metadata={"v": 1})
    memory_id = added.record.id
    mem.update(memory_id, text="likes oolong tea", metadata={"v": 2})
    mem.update(memory_id, metadata={"v": 3})
    mem.delete(memory_id)
    events = mem.history(memory_id)
    assert [e.event for e in events] == [EventKind.ADD, EventKind.UPDATE, EventKind.UPDATE, EventKind.DELETE]
    assert all(e.memory_id == memory_id for e in events)
    assert all(e.scope == Scope(user_id="u1") for e in events)
    assert (events[0].old_text, events[0].new_text) == (None, "likes jasmine tea")
    assert events[0].new_metadata == {"v": 1}
    assert (events[1].old_text, events[1].new_text) == ("likes jasmine tea", "likes oolong tea")
    assert (events[1].old_metadata, events[1].new_metadata) == ({"v": 1}, {"v": 2})
    assert (events[2].old_text, events[2].new_text) == ("likes oolong tea", "likes oolong tea")
    assert (events[3].old_text, events[3].new_text) == ("likes oolong tea", None)
    times = [e.created_at for e in events]
    assert times == sorted(times)
    assert len({e.id for e in events}) == 4


def test_history_after_delete_all(mem: Memory) -> None:
    [added] = mem.add("doomed", user_id="u1")
    assert mem.delete_all(user_id="u1") == 1
    assert [e.event for e in mem.history(added.record.id)] == [EventKind.ADD, EventKind.DELETE]


def test_no_change_update_is_none_and_leaves_no_history(mem: Memory) -> None:
    [added] = mem.add("stable", user_id="u1", metadata={"a": 1})
    memory_id = added.record.id
    assert mem.update(memory_id, text="stable").event is EventKind.NONE
    assert mem.update(memory_id, metadata={"a": 1}).event is EventKind.NONE
    result = mem.update(memory_id, text="stable", metadata={"a": 1})
    assert result.event is EventKind.NONE
    assert result.record.updated_at == added.record.updated_at
    assert [e.event for e in mem.history(memory_id)] == [EventKind.ADD]


@pytest.mark.parametrize("operation", ["get", "update", "delete", "history"])
def test_unknown_id_is_not_found(mem: Memory, operation: str) -> None:
    mem.add("something", user_id="u1")
    missing = str(uuid.uuid4())
    calls: dict[str, Any] = {
        "get": lambda: mem.get(missing),
        "update": lambda: mem.update(missing, text="x"),
        "delete": lambda: mem.delete(missing),
        "history": lambda: mem.history(missing),
    }
    with pytest.raises(MemoryNotFound) as info:
        calls[operation]()
    assert info.value.memory_id == missing


def test_deleting_twice_is_not_found(mem: Memory) -> None:
    [added] = mem.add("once", user_id="u1")
    mem.delete(added.record.id)
    with pytest.raises(MemoryNotFound):
        mem.delete(added.record.id)


# -- bad input -------------------------------------------------------------------------------------------

def add_fine(mem: Memory, **kwargs: Any) -> Any:
    return mem.add("fine", user_id="u1", **kwargs)


def nested(depth: int) -> dict[str, Any]:
    """``{"a": {"a": ... {}}}`` with `depth` objects, the outermost included."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def nested_list(depth: int) -> list[Any]:
    """``[[...[]]]`` with `depth` lists."""
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


BAD_INPUTS: list[tuple[str, str, Any]] = [
    ("empty text", "text", lambda m: m.add("", user_id="u1")),
    ("blank text", "text", lambda m: m.add("  \n\t", user_id="u1")),
    ("oversize text", "text", lambda m: m.add("x" * (MAX_TEXT_BYTES + 1), user_id="u1")),
    ("oversize multibyte text", "text", lambda m: m.add("é" * (MAX_TEXT_BYTES // 2 + 1), user_id="u1")),
    ("non-string update text", "text", lambda m: m.update(m.export(user_id="u1")[0].id, text=123)),
    ("empty update text", "text", lambda m: m.update(m.export(user_id="u1")[0].id, text="")),
    ("metadata not a dict", "metadata", lambda m: m.add("fine text", user_id="u1", metadata=["a"])),
    ("metadata a string", "metadata", lambda m: m.add("fine text", user_id="u1", metadata="a=1")),
    ("metadata key user_id", "metadata.user_id", lambda m: add_fine(m, metadata={"user_id": "u2"})),
    ("metadata key agent_id", "metadata.agent_id", lambda m: add_fine(m, metadata={"agent_id": "a"})),
    ("NaN in metadata", "metadata.score", lambda m: add_fine(m, metadata={"score": math.nan})),
    ("inf nested", "metadata.x[1]", lambda m: add_fine(m, metadata={"x": [1, math.inf]})),
    ("metadata nested 33 deep", "metadata" + ".a" * 32, lambda m: add_fine(m, metadata=nested(33))),
    ("metadata nested deep in a list", "metadata.l" + "[0]" * 31,
     lambda m: add_fine(m, metadata={"l": nested_list(32)})),
    ("5000-digit int in metadata", "metadata.n", lambda m: add_fine(m, metadata={"n": 10**5000})),
    ("int beyond 64 bits", "metadata.n", lambda m: add_fine(m, metadata={"n": 2**63})),
    ("non-JSON metadata", "metadata.when", lambda m: add_fine(m, metadata={"when": datetime.now()})),
    ("update metadata key", "metadata.run_id",
     lambda m: m.update(m.export(user_id="u1")[0].id, metadata={"run_id": "r"})),
    ("search limit 0", "limit", lambda m: m.search("q", user_id="u1", limit=0)),
    ("search limit bool", "limit", lambda m: m.search("q", user_id="u1", limit=True)),
    ("list limit 0", "limit", lambda m: m.list(user_id="u1", limit=0)),
    ("list limit too big", "limit", lambda m: m.list(user_id="u1", limit=10**6)),
    ("threshold 2", "threshold", lambda m: m.search("q", user_id="u1", threshold=2)),
    ("threshold negative", "threshold", lambda m: m.search("q", user_id="u1", threshold=-0.1)),
    ("threshold string", "threshold", lambda m: m.search("q", user_id="u1", threshold="0.5")),
    ("empty query", "query", lambda m: m.search("", user_id="u1")),
    ("scope id int", "user_id", lambda m: m.add("fine text", user_id=5)),
    ("scope id empty", "agent_id", lambda m: m.add("fine text", agent_id=" ")),
    ("scope id control char", "run_id", lambda m: m.add("fine text", run_id="a\nb")),
    ("scope id too long", "app_id", lambda m: m.add("fine text", app_id="x" * 1000)),
    ("scope id int on read", "user_id", lambda m: m.count(user_id=5)),
    ("message bad role", "messages[1].role",
     lambda m: m.add([{"role": "user", "content": "ok"}, {"role": "robot", "content": "x"}], user_id="u1")),
    ("message empty content", "messages[1].content",
     lambda m: m.add([{"role": "user", "content": "ok"}, {"role": "user", "content": ""}], user_id="u1")),
    ("empty messages", "messages", lambda m: m.add([], user_id="u1")),
    ("NUL in text", "text", lambda m: m.add("nul\x00byte", user_id="u1")),
    ("lone surrogate in text", "text", lambda m: m.add("half \ud800 pair", user_id="u1")),
    ("NUL in metadata value", "metadata.k", lambda m: add_fine(m, metadata={"k": "a\x00"})),
    ("lone surrogate in metadata key", "metadata", lambda m: add_fine(m, metadata={"\udfff": 1})),
    ("lone surrogate in scope id", "user_id", lambda m: m.add("fine text", user_id="u\ud800")),
    ("naive expires_at", "expires_at", lambda m: add_fine(m, expires_at=datetime(2030, 1, 1))),
    ("expires_at past year 9999 in UTC", "expires_at",
     lambda m: add_fine(m, expires_at=datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-14))))),
    ("update nothing", "text", lambda m: m.update(m.export(user_id="u1")[0].id)),
    ("empty memory id", "memory_id", lambda m: m.get("")),
    ("bad filter", "color", lambda m: m.count(user_id="u1", filter={"color": {"regex": "x"}})),
]


def test_metadata_at_the_limits_is_stored(mem: Memory) -> None:
    deepest = {"deep": nested(MAX_JSON_DEPTH - 1), "big": 2**63 - 1, "small": -(2**63), "past_float": 2**53 + 1}
    [result] = mem.add("deep but allowed", user_id="u1", metadata=deepest)
    assert mem.get(result.record.id).metadata == deepest  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("field", "call"), [(f, c) for _, f, c in BAD_INPUTS], ids=[n for n, _, _ in BAD_INPUTS]
)
def test_bad_input_names_the_field_and_stores_nothing(mem: Memory, field: str, call: Any) -> None:
    [seed] = mem.add("seed memory", user_id="u1", metadata={"k": "v"})
    before = mem.export(user_id="u1")
    history_before = mem.history(seed.record.id)
    with pytest.raises(InvalidInput) as info:
        call(mem)
    assert info.value.field == field, str(info.value)
    assert mem.export(user_id="u1") == before
    assert mem.count(user_id="u1") == 1
    assert mem.history(seed.record.id) == history_before


def test_non_string_text_on_add_is_invalid_input(mem: Memory) -> None:
    for bad in (123, None, 4.5, {"text": "x"}):
        with pytest.raises(InvalidInput) as info:
            mem.add(bad, user_id="u1")  # type: ignore[arg-type]
        assert info.value.field in ("data", "text")
    assert mem.count(user_id="u1") == 0


def test_ordering_filter_against_a_stored_string_raises_through_memory(mem: Memory) -> None:
    mem.add("rated", user_id="u1", metadata={"rating": "five"})
    with pytest.raises(InvalidFilter):
        mem.count(user_id="u1", filter={"rating": {"gt": 1}})
    with pytest.raises(InvalidFilter):
        mem.search("rated", user_id="u1", filter={"rating": {"gt": 1}})
    # records outside the scope are never evaluated
    assert mem.count(user_id="u2", filter={"rating": {"gt": 1}}) == 0


# -- TTL -------------------------------------------------------------------------------------------------


def test_expired_records_are_invisible(mem: Memory) -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    future = datetime.now(UTC) + timedelta(days=1)
    [gone] = mem.add("ephemeral green tea", user_id="u1", expires_at=past)
    [kept] = mem.add("lasting green tea", user_id="u1", expires_at=future)
    with pytest.raises(MemoryNotFound):
        mem.get(gone.record.id)
    assert mem.get(kept.record.id).expires_at == future
    assert [h.record.id for h in mem.search("ephemeral green tea", user_id="u1")] == [kept.record.id]
    assert [r.id for r in mem.list(user_id="u1").items] == [kept.record.id]
    assert mem.count(user_id="u1") == 1
    assert mem.delete_all(user_id="u1") == 1
    # an expired text does not block storing it again
    assert mem.add("ephemeral green tea", user_id="u1")[0].event is EventKind.ADD


def test_expires_at_is_stored_in_utc(mem: Memory) -> None:
    """memdock stores only aware UTC datetimes (models.utcnow); an aware non-UTC expiry is converted."""
    plus_five = timezone(timedelta(hours=5))
    when = datetime(2099, 1, 1, 12, tzinfo=plus_five)
    [added] = mem.add("expires later", user_id="u1", expires_at=when)
    stored = mem.get(added.record.id).expires_at
    assert stored == when
    assert stored is not None and stored.utcoffset() == timedelta(0)


# -- backend faults --------------------------------------------------------------------------------------


class ExplodingBackend(ReferenceBackend):
    def search(
        self, vector: Sequence[float] | None, text: str, scope: Scope, where: Filter | None, limit: int
    ) -> list[SearchHit]:
        raise RuntimeError("disk on fire")

    def count(self, scope: Scope, where: Filter | None) -> int:
        raise OSError("connection reset")


def test_raw_backend_exception_becomes_backend_unavailable() -> None:
    embedder = make_test_embedder()
    mem = Memory(ExplodingBackend(ReferenceBackend.Settings(), embedder), embedder, name="exploding")
    mem.add("still writable", user_id="u1")
    with pytest.raises(BackendUnavailable) as info:
        mem.search("anything", user_id="u1", mode="vector")
    assert "disk on fire" in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError)
    with pytest.raises(BackendUnavailable):
        mem.count(user_id="u1")


class NoHistoryBackend(ReferenceBackend):
    capabilities = CAPABILITIES - {Capability.HISTORY}


def test_history_on_a_backend_without_history_is_unsupported() -> None:
    embedder = make_test_embedder()
    mem = Memory(NoHistoryBackend(ReferenceBackend.Settings(), embedder), embedder)
    [added] = mem.add("no history here", user_id="u1")
    with pytest.raises(Unsupported):
        mem.history(added.record.id)


class NoTTLBackend(ReferenceBackend):
    capabilities = CAPABILITIES - {Capability.TTL}


def test_expires_at_on_a_backend_without_ttl_is_refused_and_stores_nothing() -> None:
    embedder = make_test_embedder()
    mem = Memory(NoTTLBackend(ReferenceBackend.Settings(), embedder), embedder)
    with pytest.raises(Unsupported, match="expires_at"):
        mem.add("would never expire", user_id="u1", expires_at=datetime.now(UTC) + timedelta(days=1))
    assert mem.count(user_id="u1") == 0


class ServerAssignedIdsBackend(ReferenceBackend):
    """A store that assigns its own ids and creation times, as a remote service does."""

    def add(self, records: Sequence[MemoryRecord]) -> list[MemoryRecord]:
        stored = [r.model_copy(update={"id": f"srv-{r.hash[:12]}"}) for r in records]
        super().add(stored)
        return stored


def test_ids_assigned_by_the_backend_are_what_add_reports_and_history_records() -> None:
    embedder = make_test_embedder()
    mem = Memory(ServerAssignedIdsBackend(ReferenceBackend.Settings(), embedder), embedder)
    results = mem.add([{"role": "user", "content": "one"}, {"role": "assistant", "content": "two"}], user_id="u1")
    ids = [r.record.id for r in results]
    assert all(i.startswith("srv-") for i in ids)
    assert [mem.get(i).text for i in ids] == ["one", "two"]
    assert [e.event for e in mem.history(ids[0])] == [EventKind.ADD]


def test_a_text_repeated_in_one_import_answers_with_the_id_the_backend_assigned() -> None:
    embedder = make_test_embedder()
    mem = Memory(ServerAssignedIdsBackend(ReferenceBackend.Settings(), embedder), embedder)
    now = datetime.now(UTC)
    records = [MemoryRecord(id=f"given-{n}", text=text, scope=Scope(user_id="u1"), hash="", created_at=now,
                            updated_at=now) for n, text in enumerate(["same", "other", "same"])]
    results = mem.import_(records)
    assert [r.event for r in results] == [EventKind.ADD, EventKind.ADD, EventKind.NONE]
    assert results[2].record.id == results[0].record.id and results[0].record.id.startswith("srv-")
    with pytest.raises(InvalidInput, match="already in this batch") as info:
        mem.import_([records[1].model_copy(update={"id": "x", "text": "third"}),
                     records[1].model_copy(update={"id": "y", "text": "third"})], on_conflict="fail")
    assert info.value.field == "records[1].id" and mem.count(user_id="u1") == 2


# -- URLs and shared stores ------------------------------------------------------------------------------


def test_named_store_is_shared_and_bare_store_is_private() -> None:
    name = f"shared-{uuid.uuid4().hex[:12]}"
    first = Memory.open(f"memory://{name}", embedder=make_test_embedder())
    second = Memory.open(f"memory://{name}", embedder=make_test_embedder())
    [added] = first.add("shared fact", user_id="u1")
    assert second.get(added.record.id).text == "shared fact"
    assert second.count(user_id="u1") == 1

    private_a = Memory.open("memory://", embedder=make_test_embedder())
    private_b = Memory.open("memory://", embedder=make_test_embedder())
    private_a.add("private fact", user_id="u1")
    assert private_b.count(user_id="u1") == 0
    assert first.count(user_id="u1") == 1
    other = Memory.open(f"memory://{name}-other", embedder=make_test_embedder())
    assert other.count(user_id="u1") == 0


def test_different_embedder_on_a_named_store_is_refused() -> None:
    name = f"mismatch-{uuid.uuid4().hex[:12]}"
    Memory.open(f"memory://{name}", embedder=make_test_embedder()).add("written", user_id="u1")
    with pytest.raises(EmbedderMismatch) as info:
        Memory.open(f"memory://{name}", embedder=other_test_embedder())
    assert info.value.field == "embedder"
    # the same identity is still welcome
    assert Memory.open(f"memory://{name}", embedder=make_test_embedder()).count(user_id="u1") == 1


def test_unknown_scheme_lists_installed_schemes() -> None:
    with pytest.raises(InvalidInput) as info:
        Memory.open("nosuchdb://host/x", embedder=make_test_embedder())
    assert info.value.field == "url"
    assert "nosuchdb" in str(info.value)
    assert "memory" in str(info.value)


def test_url_without_scheme_is_invalid() -> None:
    with pytest.raises(InvalidInput) as info:
        Memory.open("just-a-path", embedder=make_test_embedder())
    assert info.value.field == "url"


def test_unknown_query_parameter_is_named() -> None:
    with pytest.raises(InvalidInput) as info:
        Memory.open("memory://x?foo=1", embedder=make_test_embedder())
    assert info.value.field == "foo"


def test_memory_url_takes_no_path() -> None:
    with pytest.raises(InvalidInput) as info:
        Memory.open("memory://x/some/path", embedder=make_test_embedder())
    assert info.value.field == "path"


def test_export_then_import_moves_memories_between_stores_keeping_ids() -> None:
    source = memdock.open("memory://", embedder=make_test_embedder())
    source.add("I like green tea", user_id="u1", metadata={"n": 1})
    source.add("I drive a red car", user_id="u1", agent_id="a1")
    exported = source.export(user_id="u1")
    target = memdock.open("memory://", embedder=make_test_embedder())
    results = target.import_(exported)
    assert [r.event.value for r in results] == ["ADD", "ADD"]
    assert {r.id for r in target.export(user_id="u1")} == {r.id for r in exported}
    assert target.get(exported[0].id).metadata == {"n": 1}
    assert target.search("green tea", user_id="u1")[0].record.id == exported[0].id
    assert [r.event.value for r in target.import_(exported)] == ["NONE", "NONE"]


def test_import_refuses_a_blank_id_naming_the_record_and_stores_nothing() -> None:
    """An id "" was stored, and then only delete_all could remove it."""
    source = memdock.open("memory://", embedder=make_test_embedder())
    source.add("kept fine", user_id="u1")
    source.add("blank id", user_id="u1")
    good, bad = source.export(user_id="u1")
    target = memdock.open("memory://", embedder=make_test_embedder())
    for blank in ("", "  "):
        with pytest.raises(InvalidInput) as info:
            target.import_([good, bad.model_copy(update={"id": blank})])
        assert info.value.field == "records[1].id"
    assert target.count(user_id="u1") == 0


def test_conflicting_scope_arguments_are_refused() -> None:
    memory = memdock.open("memory://", embedder=make_test_embedder())
    with pytest.raises(InvalidInput) as info:
        memory.add("x", scope=Scope(user_id="a"), user_id="b")
    assert info.value.field == "user_id"
    assert memory.count(user_id="a") == 0 and memory.count(user_id="b") == 0


def test_bytes_are_not_taken_for_a_message_list() -> None:
    memory = memdock.open("memory://", embedder=make_test_embedder())
    with pytest.raises(InvalidInput) as info:
        memory.add(b"hello", user_id="u1")  # type: ignore[arg-type]
    assert info.value.field == "data"


class _HistoryDownBackend(ReferenceBackend):
    """A reference backend whose history store fails, as a database that drops mid-write would."""

    def record_history(self, events: Sequence[Any]) -> None:
        raise ConnectionError("history table unreachable")


def test_add_whose_history_write_fails_leaves_nothing_stored() -> None:
    memory = Memory(_HistoryDownBackend(ReferenceBackend.Settings(), make_test_embedder()), make_test_embedder())
    with pytest.raises(BackendUnavailable):
        memory.add([{"role": "user", "content": "one"}, {"role": "assistant", "content": "two"}], user_id="u1")
    assert memory.count(user_id="u1") == 0


def test_reset_deletes_every_scope_and_its_history(mem: Memory) -> None:
    [first] = mem.add("fact of u1", user_id="u1")
    mem.add("fact of u2", user_id="u2", metadata={"k": 1})
    mem.reset()
    assert mem.count(user_id="u1") == 0 and mem.count(user_id="u2") == 0
    with pytest.raises(MemoryNotFound):
        mem.history(first.record.id)
    assert mem.add("fact of u1", user_id="u1")[0].event is EventKind.ADD


def test_a_repeated_query_is_embedded_once_and_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import memdock.memory as memory_module

    monkeypatch.setattr(memory_module, "QUERY_CACHE_SIZE", 2)
    embedder = make_test_embedder()
    embedded: list[str] = []
    real_embed = embedder.embed

    def counting(texts: list[str]) -> list[list[float]]:
        embedded.extend(texts)
        return real_embed(texts)

    monkeypatch.setattr(embedder, "embed", counting)
    with Memory.open("memory://", embedder=embedder) as memory:
        memory.add("green tea in the morning", user_id="u1")
        embedded.clear()
        first = memory.search("tea", user_id="u1")
        again = memory.search("tea", user_id="u2")
        assert embedded == ["tea"] and [h.score for h in first] == [h.score for h in memory.search("tea", user_id="u1")]
        assert again == []
        memory.search("coffee", user_id="u1")
        memory.search("milk", user_id="u1")  # "tea" is now the oldest of three: evicted
        memory.search("tea", user_id="u1")
        assert embedded == ["tea", "coffee", "milk", "tea"]
