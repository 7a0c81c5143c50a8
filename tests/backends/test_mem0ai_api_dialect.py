"""The ``mem0ai-api`` dialect against the STAND-IN of tonori/mem0ai-api (tests/helpers/mem0ai_api_standin.py,
faithful to the recorded transcripts): its real shapes are read, and where the service cannot keep a
promise memdock refuses instead of damaging data (update, stores its LLM rewrites) or says it cannot
(history after delete, memories without a scope)."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

import memdock
from memdock import BackendUnavailable, Memory, MemoryNotFound, Unsupported
from memdock.models import EventKind
from memdock.urls import make_embedder
from tests.helpers.mem0_standins import Seen, StandIn
from tests.helpers.mem0ai_api_standin import Decision, Mem0aiApiStandIn, mem0ai_api_standin

KEY = "tonori-key-42"


@pytest.fixture
def tonori() -> Iterator[tuple[StandIn, Mem0aiApiStandIn, Memory]]:
    with mem0ai_api_standin(auth_key=KEY) as (service, state), memdock.open(
            f"mem0+http://{service.url}?dialect=mem0ai-api&api_key={KEY}&timeout=5&retries=2") as memory:
        yield service, state, memory


def sent(service: StandIn, method: str, path: str) -> list[Seen]:
    return [s for s in service.seen if (s.method, s.path) == (method, path)]


def test_the_real_shapes_are_read(tonori: tuple[StandIn, Mem0aiApiStandIn, Memory]) -> None:
    """Bare lists, ``text``, scope ids, ``data`` and epoch ``created_at`` inside metadata; raw cosine scores."""
    service, state, memory = tonori
    [added] = memory.add("I like green tea", user_id="u1", agent_id="a1", metadata={"source": "chat"})
    [store] = sent(service, "POST", "/store")
    assert store.headers["authorization"] == f"Bearer {KEY}"
    assert store.body == {"data": "I like green tea", "user_id": "u1", "agent_id": "a1",
                          "metadata": {"source": "chat"}}
    got = memory.get(added.record.id)
    assert (got.text, got.scope, got.metadata) == ("I like green tea", memdock.Scope(user_id="u1", agent_id="a1"),
                                                   {"source": "chat"})
    epoch = state.payloads[added.record.id]["created_at"]
    assert got.created_at == datetime.fromtimestamp(epoch, UTC) == got.updated_at
    memory.add("drives a red hatchback", user_id="u1", agent_id="a1")
    hits = memory.search("green tea", user_id="u1", limit=5)
    x = make_embedder("hash").embed(["green tea"])[0]
    for hit in hits:
        y = state.vectors[hit.record.id]
        raw = sum(p * q for p, q in zip(x, y, strict=True)) / math.sqrt(sum(p * p for p in x) * sum(q * q for q in y))
        assert hit.score == pytest.approx(min(1.0, max(0.0, raw)), abs=1e-9)
    assert hits[0].record.text == "I like green tea"
    search = sent(service, "POST", "/search")[-1].body
    assert search == {"query": "green tea", "user_id": "u1", "limit": 5}


def test_update_is_refused_and_nothing_is_written(tonori: tuple[StandIn, Mem0aiApiStandIn, Memory]) -> None:
    """tonori's update replaces the payload with the text alone (scope, metadata and created_at lost)."""
    service, state, memory = tonori
    record = memory.add("I like green tea", user_id="u1", metadata={"k": 1})[0].record
    before = dict(state.payloads[record.id])
    with pytest.raises(Unsupported, match="lose its metadata, its user_id/agent_id/run_id"):
        memory.update(record.id, text="I like oolong tea")
    with pytest.raises(Unsupported):
        memory.update(record.id, metadata={"k": 2})
    assert not [s for s in service.seen if s.method == "PUT"]
    assert state.payloads[record.id] == before
    assert [r.id for r in memory.list(user_id="u1").items] == [record.id]


def test_history_of_a_live_memory_and_the_declared_gap_after_delete(
    tonori: tuple[StandIn, Mem0aiApiStandIn, Memory],
) -> None:
    _, _, memory = tonori
    record = memory.add("I like green tea", user_id="u1")[0].record
    [added] = memory.history(record.id)
    assert (added.event, added.new_text, added.scope) == (EventKind.ADD, "I like green tea",
                                                          memdock.Scope(user_id="u1"))
    assert added.created_at.tzinfo is not None
    assert abs((added.created_at - record.created_at).total_seconds()) < 5
    memory.delete(record.id)
    with pytest.raises(MemoryNotFound):  # the service answers 404 once deleted: no HISTORY_AFTER_DELETE
        memory.history(record.id)
    with pytest.raises(MemoryNotFound):
        memory.get(record.id)


def test_get_finds_a_memory_without_knowing_its_scope(tonori: tuple[StandIn, Mem0aiApiStandIn, Memory]) -> None:
    service, _, memory = tonori
    ids = [memory.add(f"fact {n}", user_id=f"user-{n}")[0].record.id for n in range(5)]
    assert [memory.get(i).scope.user_id for i in ids] == [f"user-{n}" for n in range(5)]
    with pytest.raises(MemoryNotFound):
        memory.get(str(uuid.uuid4()))
    listing = sent(service, "GET", "/retrieve")[-1]
    assert listing.query == {"limit": ["1000"]}


def test_a_memory_that_lost_its_scope_is_refused_naming_why(tonori: tuple[StandIn, Mem0aiApiStandIn, Memory]) -> None:
    """A memory updated by another tonori client has no scope ids left: memdock cannot place it."""
    import httpx

    service, _, memory = tonori
    record = memory.add("I like green tea", user_id="u1")[0].record
    httpx.put(f"http://{service.url}/update/{record.id}", params={"data": "I like oolong tea"},
              headers={"Authorization": f"Bearer {KEY}"}).raise_for_status()
    with pytest.raises(Unsupported, match="no user_id, agent_id or run_id"):
        memory.get(record.id)
    assert memory.list(user_id="u1").items == []


def decider(events: Decision) -> Any:
    def decide(text: str, existing: list[dict[str, Any]]) -> Decision:
        return [(kind, target if target != "$first" else existing[0]["id"], data) for kind, target, data in events]

    return decide


@pytest.mark.parametrize(("events", "stored"), [
    ([("add", None, "The user likes tea"), ("add", None, "Likes green tea")], []),
    ([], []),
], ids=["rewritten", "zero-events"])
def test_a_store_the_llm_did_not_keep_verbatim_is_refused_and_undone(events: Decision, stored: list[str]) -> None:
    with mem0ai_api_standin(decide=decider(events)) as (service, state), \
            memdock.open(f"mem0+http://{service.url}?dialect=mem0ai-api") as memory:
        with pytest.raises(Unsupported, match="did not store the text as given"):
            memory.add("I like green tea", user_id="u1")
        assert [p["data"] for p in state.payloads.values()] == stored
        assert memory.count(user_id="u1") == 0


def test_the_new_memory_is_the_add_of_exactly_this_text() -> None:
    """Several events: the add of the text sent is the new memory; the others it added are deleted again;
    changes to other memories are left (and logged), never reported as this memory."""
    extra: Decision = [("add", None, "User enjoys hot drinks"), ("add", None, "I like green tea"),
                       ("delete", "$first", None)]
    with mem0ai_api_standin() as (service, state), \
            memdock.open(f"mem0+http://{service.url}?dialect=mem0ai-api") as memory:
        old = memory.add("I drink coffee", user_id="u1")[0].record
        state.decide = decider(extra)
        [result] = memory.add("I like green tea", user_id="u1")
        assert result.event is EventKind.ADD and result.record.text == "I like green tea"
        assert result.record.id in state.payloads and result.record.id != old.id
        assert sorted(p["data"] for p in state.payloads.values()) == ["I like green tea"]


def test_zero_events_but_the_text_is_there_finds_it() -> None:
    """The LLM answered nothing yet the scope holds exactly this text (it was stored by a racing call)."""
    with mem0ai_api_standin() as (service, state), \
            memdock.open(f"mem0+http://{service.url}?dialect=mem0ai-api") as memory:
        def racing(text: str, existing: list[dict[str, Any]]) -> Decision:
            state.decide = lambda *_: []
            return [("add", None, text)]

        state.decide = racing
        first = memory.add("I like green tea", user_id="u1")[0].record
        backend = memory.backend
        [again] = backend.add([first.model_copy(update={"id": "local"})])
        assert again.id == first.id


def test_a_500_on_a_read_is_retried_and_a_write_never(tonori: tuple[StandIn, Mem0aiApiStandIn, Memory]) -> None:
    """Parallel writes make the real service answer sporadic plain-text 500s."""
    service, state, memory = tonori
    record = memory.add("I like green tea", user_id="u1")[0].record
    state.fail_next_reads = 2
    assert memory.get(record.id).text == "I like green tea"
    state.fail_next_writes = 1
    stores = len(sent(service, "POST", "/store"))
    with pytest.raises(BackendUnavailable):
        memory.add("I like black coffee", user_id="u1")
    assert len(sent(service, "POST", "/store")) == stores + 1
    assert memory.count(user_id="u1") == 1


def test_a_request_without_a_scope_id_is_never_sent(tonori: tuple[StandIn, Mem0aiApiStandIn, Memory]) -> None:
    """tonori would store, search and list every user without one."""
    service, _, memory = tonori
    before = len(service.seen)
    for call in (lambda: memory.add("x", app_id="app"), lambda: memory.search("x", app_id="app"),
                 lambda: memory.list(app_id="app")):
        with pytest.raises(Unsupported, match="app_id"):
            call()
    with pytest.raises(memdock.ScopeRequired):
        memory.add("x")
    assert len(service.seen) == before


def test_after_a_reset_of_the_service_stores_are_unavailable(tonori: tuple[StandIn, Mem0aiApiStandIn, Memory]) -> None:
    import httpx

    service, _, memory = tonori
    reset = httpx.delete(f"http://{service.url}/reset-all", headers={"Authorization": f"Bearer {KEY}"})
    assert reset.status_code == 204
    with pytest.raises(BackendUnavailable):
        memory.search("x", user_id="u1")
    with pytest.raises(BackendUnavailable, match="collection is gone"):
        memory.backend.add([memdock.models.MemoryRecord(
            id="x", text="after reset", scope=memdock.Scope(user_id="u1"), metadata={}, hash="h",
            created_at=datetime.now(UTC), updated_at=datetime.now(UTC))])


def test_a_recorded_tonori_item_and_history_entry_are_read() -> None:
    from memdock.backends.mem0.mem0ai_api import history_entry_to_event, item_to_record

    item = {"id": "6078edc4-481c-4047-974f-edab550cdd6d", "text": "I like green tea", "score": 0.47335788822761393,
            "metadata": {"source": "chat", "user_id": "u1-TAG", "data": "I like green tea", "created_at": 1796115016}}
    record = item_to_record(item)
    assert (record.scope, record.metadata) == (memdock.Scope(user_id="u1-TAG"), {"source": "chat"})
    assert record.created_at == datetime.fromtimestamp(1796115016, UTC) == record.updated_at
    entry = {"id": "h1", "memory_id": record.id, "prev_value": "I like green tea", "new_value": "I like oolong tea",
             "event": "update", "timestamp": "2026-12-01 10:11:12.123456", "is_deleted": 0}
    event = history_entry_to_event(entry, record.scope)
    assert (event.event, event.old_text, event.new_text) == (EventKind.UPDATE, "I like green tea", "I like oolong tea")
    assert event.created_at == datetime(2026, 12, 1, 10, 11, 12, 123456, tzinfo=UTC)


@pytest.mark.parametrize(("item", "field"), [
    ("not an object", "item"),
    ({"text": "x", "metadata": {"user_id": "u"}}, "id"),
    ({"id": "a", "memory": "x", "metadata": {"user_id": "u", "created_at": 1}}, "text"),
    ({"id": "a", "text": "x", "metadata": [1]}, "metadata"),
    ({"id": "a", "text": "x", "metadata": {"user_id": 7, "created_at": 1}}, "metadata.user_id"),
    ({"id": "a", "text": "x", "metadata": {"user_id": "u", "created_at": "2026-01-01"}}, "metadata.created_at"),
    ({"id": "a", "text": "x", "metadata": {"user_id": "u"}}, "metadata.created_at"),
])
def test_malformed_tonori_items_name_the_field(item: Any, field: str) -> None:
    from memdock.backends.mem0.mem0ai_api import item_to_record
    from memdock.errors import MalformedResponse

    with pytest.raises(MalformedResponse) as info:
        item_to_record(item)
    assert (info.value.dialect, info.value.field) == ("mem0ai-api", field)


@pytest.mark.parametrize(("change", "field"), [
    ({"event": "ADD"}, "history.event"), ({"timestamp": None}, "history.timestamp"),
    ({"timestamp": "yesterday"}, "history.timestamp"), ({"memory_id": ""}, "history.memory_id"),
    ({"new_value": 5}, "history.new_value"),
])
def test_malformed_tonori_history_entries_name_the_field(change: dict[str, Any], field: str) -> None:
    from memdock.backends.mem0.mem0ai_api import history_entry_to_event
    from memdock.errors import MalformedResponse

    entry = {"id": "h1", "memory_id": "m1", "prev_value": None, "new_value": "x", "event": "add",
             "timestamp": "2026-12-01 10:11:12.1", "is_deleted": 0, **change}
    with pytest.raises(MalformedResponse) as info:
        history_entry_to_event(entry, memdock.Scope(user_id="u"))
    assert info.value.field == field


def test_a_batch_is_read_back_and_fetched_with_one_listing(tonori: tuple[StandIn, Mem0aiApiStandIn, Memory]) -> None:
    """tonori lists no memory by id: `get` reads the whole listing, so a batch reads it once, not once
    per memory (a 10,000-memory migration would read 10,000 listings of 10,000)."""
    service, _, memory = tonori
    before = len(sent(service, "GET", "/retrieve"))
    added = memory.add([{"role": "user", "content": f"fact {n}"} for n in range(5)], user_id="u1")
    assert len(sent(service, "GET", "/retrieve")) - before == 1
    ids = [r.record.id for r in added]
    assert [r.record.created_at for r in added] == [memory.get(i).created_at for i in ids], "as the service keeps"
    before = len(sent(service, "GET", "/retrieve"))
    found = memory.backend.get_many([*ids, "00000000-0000-4000-8000-000000000000"])
    assert sorted(r.id for r in found) == sorted(ids) and len(sent(service, "GET", "/retrieve")) - before == 1


def test_histories_of_a_batch_read_the_listing_once(tonori: tuple[StandIn, Mem0aiApiStandIn, Memory]) -> None:
    """`Memory.histories` (migration and verification) takes each memory's scope from ONE listing, then
    asks each history (``GET /retrieve/{id}``): not one whole listing per memory. A deleted memory has none."""
    service, _, memory = tonori
    ids = [r.record.id for r in memory.add([{"role": "user", "content": f"fact {n}"} for n in range(6)],
                                           user_id="u1", agent_id="a1")]
    memory.delete(ids[-1])
    before = len(service.seen)
    events = memory.histories(ids)
    asked = [s.path for s in service.seen[before:] if s.method == "GET"]
    assert asked.count("/retrieve") == 1
    assert sorted(p for p in asked if p != "/retrieve") == sorted(f"/retrieve/{i}" for i in ids)
    assert [[(e.event, e.new_text, e.scope) for e in events[i]] for i in ids[:-1]] == [
        [(EventKind.ADD, f"fact {n}", memdock.Scope(user_id="u1", agent_id="a1"))] for n in range(5)]
    assert events[ids[-1]] == []
