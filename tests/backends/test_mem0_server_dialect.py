"""The ``server`` dialect against the STAND-IN of mem0's self-hosted server (tests/helpers/mem0_server_standin.py,
faithful to the recorded transcripts): what the client sends so that memdock's contracts hold on a server
that filters with a hidden threshold, blends BM25 into its scores and MERGES metadata on ``PUT``."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import memdock
from memdock import Memory, MemoryNotFound
from memdock.models import EventKind
from memdock.urls import make_embedder
from tests.helpers.mem0_server_standin import Mem0ServerStandIn, mem0_server_standin
from tests.helpers.mem0_standins import Seen, StandIn


@pytest.fixture
def server() -> Iterator[tuple[StandIn, Mem0ServerStandIn, Memory]]:
    with mem0_server_standin() as (service, state), memdock.open(
            f"mem0+http://{service.url}?dialect=server") as memory:
        yield service, state, memory


def sent(service: StandIn, method: str, path: str) -> list[Seen]:
    return [s for s in service.seen if (s.method, s.path) == (method, path)]


def cosine(a: str, b: str) -> float:
    x, y = make_embedder("hash").embed([a, b])
    return sum(p * q for p, q in zip(x, y, strict=True)) / math.sqrt(sum(p * p for p in x) * sum(q * q for q in y))


def test_a_metadata_update_reads_back_exactly_what_was_written(
    server: tuple[StandIn, Mem0ServerStandIn, Memory],
) -> None:
    """The server merges metadata on PUT (keys are never removed; the stand-in does the same); through
    memdock, an update replaces the metadata: a key removed stays removed, in get, list, search and filters."""
    service, state, memory = server
    user = f"u-{uuid.uuid4().hex[:8]}"
    record = memory.add("likes green tea", user_id=user, metadata={"a": 1, "b": 2, "nested": {"x": [1]}})[0].record
    memory.update(record.id, metadata={"a": 1})
    assert memory.get(record.id).metadata == {"a": 1}
    assert state.payloads[record.id]["b"] == 2, "the stand-in merged, as the real server does"
    assert [r.metadata for r in memory.list(user_id=user).items] == [{"a": 1}]
    assert [h.record.metadata for h in memory.search("green tea", user_id=user)] == [{"a": 1}]
    assert memory.count(user_id=user, filter={"b": "*"}) == 0
    memory.update(record.id, metadata={"b": 3})
    assert memory.get(record.id).metadata == {"b": 3}, "a removed key can come back"
    memory.update(record.id, text="likes oolong tea", metadata={})
    got = memory.get(record.id)
    assert (got.text, got.metadata) == ("likes oolong tea", {})
    [put] = sent(service, "PUT", f"/memories/{record.id}")[-1:]
    assert put.body["text"] == "likes oolong tea"
    assert sorted(put.body["metadata"]["memdock_removed_keys"]) == ["a", "b", "nested"]


def test_update_keeps_the_role_and_history_keeps_it_too(server: tuple[StandIn, Mem0ServerStandIn, Memory]) -> None:
    _, state, memory = server
    [said] = memory.add([{"role": "assistant", "content": "Noted, Oslo it is."}], user_id="u-role")
    memory.update(said.record.id, metadata={"role": "assistant", "k": 1})
    assert memory.get(said.record.id).metadata == {"role": "assistant", "k": 1}
    memory.update(said.record.id, metadata={"k": 2})
    assert memory.get(said.record.id).metadata == {"k": 2}, "a role removed by memdock reads back removed"
    memory.update(said.record.id, metadata={"role": "user"})
    assert memory.get(said.record.id).metadata == {"role": "user"}
    assert state.payloads[said.record.id]["role"] == "user"
    assert {e["role"] for e in state.history[said.record.id]} <= {"assistant", "user"}


def test_search_sends_threshold_zero_and_reports_the_semantic_score(
    server: tuple[StandIn, Mem0ServerStandIn, Memory],
) -> None:
    """Without ``threshold: 0`` the server drops candidates under 0.1; its ``score`` blends BM25 in whenever
    a keyword matches (an identical text then scores far from 1). memdock reports the cosine."""
    service, _, memory = server
    user = f"u-{uuid.uuid4().hex[:8]}"
    texts = ["green tea in the morning", "black coffee after lunch", "drives a red hatchback"]
    for text in texts:
        memory.add(text, user_id=user)
    hits = memory.search("green tea in the morning", user_id=user, limit=10)
    search = sent(service, "POST", "/search")[-1].body
    assert (search["threshold"], search["explain"], search["filters"]) == (0, True, {"user_id": user})
    assert sorted(h.record.text for h in hits) == sorted(texts), "nothing dropped by the hidden threshold"
    for hit in hits:
        assert hit.score == pytest.approx(max(0.0, cosine("green tea in the morning", hit.record.text)), abs=1e-9)
    assert hits[0].score == pytest.approx(1.0)
    blended = httpx.post(f"http://{service.url}/search", json={"query": "green tea in the morning",
                                                               "filters": {"user_id": user}}).json()["results"]
    assert blended[0]["score"] < 0.9, "the server's own score is not the cosine"


def test_missing_and_non_uuid_ids(server: tuple[StandIn, Mem0ServerStandIn, Memory]) -> None:
    """A missing id is 200 ``null`` on the server (memdock: MemoryNotFound); a non-UUID id would be a 502,
    so it is missing without asking."""
    service, _, memory = server
    with pytest.raises(MemoryNotFound):
        memory.get(str(uuid.uuid4()))
    asked = len(service.seen)
    for call in (lambda: memory.get("not-a-uuid"), lambda: memory.history("not-a-uuid"),
                 lambda: memory.delete("not-a-uuid")):
        with pytest.raises(MemoryNotFound):
            call()
    assert len(service.seen) == asked
    assert httpx.get(f"http://{service.url}/memories/not-a-uuid").status_code == 502


def test_history_survives_deletion(server: tuple[StandIn, Mem0ServerStandIn, Memory]) -> None:
    _, _, memory = server
    record = memory.add("likes jasmine tea", user_id="u-history")[0].record
    memory.update(record.id, text="likes oolong tea")
    memory.delete(record.id)
    events = memory.history(record.id)
    assert [e.event for e in events] == [EventKind.ADD, EventKind.UPDATE, EventKind.DELETE]
    assert (events[1].old_text, events[1].new_text) == ("likes jasmine tea", "likes oolong tea")


def test_messages_go_in_one_request_with_their_roles(server: tuple[StandIn, Mem0ServerStandIn, Memory]) -> None:
    service, _, memory = server
    results = memory.add([{"role": "user", "content": "I live in Oslo"}, {"role": "assistant", "content": "Noted"}],
                         user_id="u-chat", metadata={"src": "chat"})
    [add] = sent(service, "POST", "/memories")
    body: dict[str, Any] = add.body
    assert body == {"messages": [{"role": "user", "content": "I live in Oslo"},
                                 {"role": "assistant", "content": "Noted"}],
                    "user_id": "u-chat", "metadata": {"src": "chat"}, "infer": False}
    assert [memory.get(r.record.id).metadata for r in results] == [{"src": "chat", "role": "user"},
                                                                   {"src": "chat", "role": "assistant"}]


def test_a_listing_never_asks_the_server_for_more_than_it_lists() -> None:
    """mem0's server refuses ``top_k`` above 1000 on ``GET /memories`` (a 422, the stand-in does the same)
    and has no paging: with a larger `max_items` a list still asks for 1000, and a scope of 1000 memories
    or more is refused with `Unsupported` naming the server's limit, never read in part."""
    with mem0_server_standin() as (service, state), memdock.open(
            f"mem0+http://{service.url}?dialect=server&max_items=5000") as memory:
        memory.add([{"role": "user", "content": f"fact {n}"} for n in range(3)], user_id="few")
        assert sorted(r.text for r in memory.list(user_id="few").items) == ["fact 0", "fact 1", "fact 2"]
        listings = [s for s in sent(service, "GET", "/memories") if s.query["user_id"] == ["few"]]
        assert {s.query["top_k"][0] for s in listings} == {"1000"}
        httpx.post(f"http://{service.url}/memories", json={  # straight to the service: no duplicate checks
            "messages": [{"role": "user", "content": f"fact {n}"} for n in range(1000)], "user_id": "many",
            "infer": False}).raise_for_status()
        with pytest.raises(memdock.Unsupported, match="at most 1000 memories of a scope"):
            memory.count(user_id="many")
        assert sum(1 for p in state.payloads.values() if p["user_id"] == "many") == 1000


def searches(service: StandIn, since: int) -> list[int]:
    """The ``top_k`` of every ``POST /search`` after request number `since`."""
    return [s.body["top_k"] for s in service.seen[since:] if (s.method, s.path) == ("POST", "/search")]


def store_directly(service: StandIn, user: str, texts: list[str]) -> None:
    """Memories stored straight through the service (no memdock duplicate checks)."""
    httpx.post(f"http://{service.url}/memories", json={
        "messages": [{"role": "user", "content": t} for t in texts], "user_id": user, "infer": False,
    }).raise_for_status()


def test_the_duplicate_check_asks_a_small_search_when_it_is_enough(
    server: tuple[StandIn, Mem0ServerStandIn, Memory],
) -> None:
    """Adding to a scope of many memories asks the server for 20 results, not for `max_items` (1000 items
    to read per add): a stored copy of the text scores at least 1 / max_possible_score in the server's
    blend, above the last of these results, so it would be among them."""
    service, state, memory = server
    user = f"u-{uuid.uuid4().hex[:8]}"
    store_directly(service, user, [f"note {n}: {uuid.uuid4().hex}" for n in range(60)])
    existing = state.payloads[next(i for i, p in state.payloads.items() if p["user_id"] == user)]["data"]
    before = len(service.seen)
    again = memory.add(existing, user_id=user)[0]
    assert again.event == "NONE" and again.record.text == existing
    assert searches(service, before) == [20]
    before = len(service.seen)
    assert memory.add("a brand new note", user_id=user)[0].event == "ADD"
    assert searches(service, before) == [20]
    assert memory.count(user_id=user) == 61


def test_a_crowded_neighbourhood_falls_back_to_the_wide_search(
    server: tuple[StandIn, Mem0ServerStandIn, Memory],
) -> None:
    """When even the 20th result blends as high as a stored copy could, a copy might rank below it: the
    check then asks for `max_items` candidates, and still finds the copy."""
    service, state, memory = server
    user = f"u-{uuid.uuid4().hex[:8]}"
    base = "alice likes green tea in the morning with honey and lemon at home before work every day"
    store_directly(service, user, [f"{base} {n}" for n in range(40)] + [base])
    before = len(service.seen)
    again = memory.add(base, user_id=user)[0]
    [small, wide] = [s for s in service.seen[before:] if (s.method, s.path) == ("POST", "/search")]
    assert (small.body["top_k"], wide.body["top_k"]) == (20, 1000)
    lowest = min(state._search(small).body["results"], key=lambda r: r["score"])
    assert lowest["score"] >= 0.99 / lowest["score_details"]["max_possible_score"], "the crowded case"
    assert again.event == "NONE" and memory.count(user_id=user) == 41
