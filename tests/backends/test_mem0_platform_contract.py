"""Contract of the ``platform`` dialect (mem0's hosted API, which nobody can run here): every request the
backend sends is pinned (method, path, query, headers, body) against a loopback stand-in answering with the
response shapes mem0 documents for its platform API, and those answers are parsed into memdock records."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

import memdock
from memdock import Memory, MemoryNotFound, Unsupported
from memdock.models import EventKind
from tests.helpers.mem0_standins import Reply, Seen, StandIn, standin

KEY = "platform-key-123"
HEADERS = {"authorization": f"Token {KEY}"}
CREATED = "2024-07-20T01:30:36.275141-07:00"


class PlatformStandIn:
    """A stand-in for the hosted mem0 platform: keeps memories in a dict, answers like the real API."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.history: dict[str, list[dict[str, Any]]] = {}
        self.ids = (f"mem-{n:04d}" for n in itertools.count(1))
        self.adds = 0
        self.fail_add_number: int | None = None

    def __call__(self, seen: Seen) -> Reply:
        if seen.headers.get("authorization") != HEADERS["authorization"]:
            return Reply(status=401, body={"detail": "Invalid API key"})
        route = (seen.method, seen.path)
        if route == ("GET", "/v1/ping/"):
            return Reply(body={"status": "ok", "org_id": "org-1", "project_id": "prj-1", "user_email": "a@b.c"})
        if route == ("POST", "/v3/memories/add/"):
            self.adds += 1
            if self.adds == self.fail_add_number:
                return Reply(status=503, body={"detail": "busy"})
            return Reply(body={"results": [self._store(seen.body, message) for message in seen.body["messages"]]})
        if route == ("POST", "/v3/memories/search/"):
            wanted = self._scope(seen.body["filters"])
            found = [dict(i, score=0.9) for i in self.items.values() if self._in(i, wanted)
                     and seen.body["query"].split()[0] in i["memory"]]
            return Reply(body={"results": found[: seen.body["top_k"]]})
        if route == ("POST", "/v3/memories/"):
            page, size = int(seen.query["page"][0]), int(seen.query["page_size"][0])
            matching = [i for i in self.items.values() if self._in(i, self._scope(seen.body["filters"]))]
            chunk = matching[(page - 1) * size: page * size]
            more = page * size < len(matching)
            return Reply(body={"count": len(matching), "next": f"/v3/memories/?page={page + 1}" if more else None,
                               "previous": None, "results": chunk})
        memory_id = seen.path.split("/")[3] if seen.path.startswith("/v1/memories/") else ""
        if memory_id not in self.items:
            return Reply(status=404, body={"detail": "Memory not found"})
        if seen.method == "GET" and seen.path.endswith("/history/"):
            return Reply(body=self.history[memory_id])
        if seen.method == "GET":
            return Reply(body=self.items[memory_id])
        if seen.method == "PUT":
            item = self.items[memory_id]
            self.history[memory_id].append({
                "id": f"h-{memory_id}-{len(self.history[memory_id])}", "memory_id": memory_id,
                "old_memory": item["memory"], "new_memory": seen.body["text"], "event": "UPDATE",
                "created_at": CREATED, "updated_at": "2024-07-21T10:00:00-07:00", "is_deleted": False})
            item.update(memory=seen.body["text"], metadata=seen.body["metadata"],
                        updated_at="2024-07-21T10:00:00-07:00")
            return Reply(body={"message": "Memory updated successfully!"})
        del self.items[memory_id]
        return Reply(body={"message": "Memory deleted successfully!"})

    def _store(self, body: dict[str, Any], message: dict[str, str]) -> dict[str, Any]:
        memory_id = next(self.ids)
        self.items[memory_id] = {
            "id": memory_id, "memory": message["content"], "user_id": body.get("user_id"),
            "agent_id": body.get("agent_id"), "metadata": body.get("metadata"), "categories": ["misc"],
            "created_at": CREATED, "updated_at": CREATED, "role": message["role"],
        }
        self.history[memory_id] = [{"id": f"h-{memory_id}-0", "memory_id": memory_id, "old_memory": None,
                                    "new_memory": message["content"], "event": "ADD", "created_at": CREATED,
                                    "updated_at": CREATED, "is_deleted": False, "actor_id": None, "role": "user"}]
        return {"id": memory_id, "memory": message["content"], "event": "ADD"}

    @staticmethod
    def _scope(filters: dict[str, Any]) -> dict[str, Any]:
        return {k: v for clause in filters["AND"] for k, v in clause.items()}

    @staticmethod
    def _in(item: dict[str, Any], scope: dict[str, Any]) -> bool:
        return all(item.get(k) == v for k, v in scope.items())


@pytest.fixture
def platform() -> Iterator[tuple[StandIn, PlatformStandIn, Memory]]:
    fake = PlatformStandIn()
    with standin(fake) as service:
        memory = memdock.open(f"mem0+http://{service.url}?dialect=platform&api_key={KEY}&timeout=5")
        yield service, fake, memory
        memory.close()


def requests(service: StandIn, method: str, path: str) -> list[Seen]:
    return [s for s in service.seen if (s.method, s.path) == (method, path)]


def test_open_pings_with_the_token_header(platform: tuple[StandIn, PlatformStandIn, Memory]) -> None:
    service, _, _ = platform
    [ping] = requests(service, "GET", "/v1/ping/")
    assert ping.headers["authorization"] == f"Token {KEY}" and ping.body is None


def test_add_sends_v3_add_with_infer_false_and_reads_the_memory_back(
    platform: tuple[StandIn, PlatformStandIn, Memory],
) -> None:
    service, _, memory = platform
    [result] = memory.add("likes jazz", user_id="u1", agent_id="a1", metadata={"k": 1})
    [search] = requests(service, "POST", "/v3/memories/search/")
    assert search.body == {"query": "likes jazz", "filters": {"AND": [{"user_id": "u1"}, {"agent_id": "a1"}]},
                           "top_k": 10}
    [add] = requests(service, "POST", "/v3/memories/add/")
    assert add.headers["authorization"] == f"Token {KEY}" and add.headers["content-type"] == "application/json"
    assert add.body == {"messages": [{"role": "user", "content": "likes jazz"}], "user_id": "u1", "agent_id": "a1",
                        "metadata": {"k": 1, "memdock_no_role": True}, "infer": False}
    assert requests(service, "GET", "/v1/memories/mem-0001/")
    record = result.record
    assert (record.id, record.text, record.metadata) == ("mem-0001", "likes jazz", {"k": 1})
    assert record.created_at.isoformat() == "2024-07-20T08:30:36.275141+00:00"


def test_messages_go_in_one_request_with_their_roles(platform: tuple[StandIn, PlatformStandIn, Memory]) -> None:
    service, _, memory = platform
    results = memory.add([{"role": "user", "content": "I live in Oslo"}, {"role": "assistant", "content": "Noted"}],
                         user_id="u1", metadata={"src": "chat"})
    [add] = requests(service, "POST", "/v3/memories/add/")
    assert add.body["messages"] == [{"role": "user", "content": "I live in Oslo"},
                                    {"role": "assistant", "content": "Noted"}]
    assert add.body["metadata"] == {"src": "chat"}
    assert [r.record.metadata for r in results] == [{"src": "chat", "role": "user"},
                                                    {"src": "chat", "role": "assistant"}]


def test_list_follows_pages_and_count_filters_here(platform: tuple[StandIn, PlatformStandIn, Memory]) -> None:
    service, _, memory = platform
    memory.add([{"role": "user", "content": f"fact {n}"} for n in range(130)], user_id="u1", metadata={"n": 1})
    page = memory.list(user_id="u1", limit=200)
    assert len(page.items) == 130 and page.next_cursor is None
    lists = requests(service, "POST", "/v3/memories/")
    assert [(s.query["page"], s.query["page_size"]) for s in lists] == [(["1"], ["100"]), (["2"], ["100"])]
    assert lists[0].body == {"filters": {"AND": [{"user_id": "u1"}]}}
    assert memory.count(user_id="u1", filter={"n": {"gte": 1}}) == 130
    assert memory.count(user_id="u1", filter={"n": {"gt": 1}}) == 0


def test_get_update_history_and_delete_use_the_v1_routes(platform: tuple[StandIn, PlatformStandIn, Memory]) -> None:
    service, _, memory = platform
    memory_id = memory.add("plays go", user_id="u1")[0].record.id
    updated = memory.update(memory_id, text="plays go and chess", metadata={"level": 3})
    assert updated.event is EventKind.UPDATE
    [put] = requests(service, "PUT", f"/v1/memories/{memory_id}/")
    assert put.body == {"text": "plays go and chess", "metadata": {"level": 3, "memdock_no_role": True}}
    got = memory.get(memory_id)
    assert (got.text, got.metadata) == ("plays go and chess", {"level": 3})
    assert got.updated_at > got.created_at
    added, changed = memory.history(memory_id)
    assert (added.event, added.new_text) == (EventKind.ADD, "plays go")
    assert (changed.event, changed.old_text, changed.new_text) == (EventKind.UPDATE, "plays go", "plays go and chess")
    assert changed.created_at.isoformat() == "2024-07-21T17:00:00+00:00"
    assert requests(service, "GET", f"/v1/memories/{memory_id}/history/")
    memory.delete(memory_id)
    assert requests(service, "DELETE", f"/v1/memories/{memory_id}/")
    with pytest.raises(MemoryNotFound):
        memory.get(memory_id)


def test_search_pushes_the_scope_and_filters_here(platform: tuple[StandIn, PlatformStandIn, Memory]) -> None:
    service, _, memory = platform
    memory.add("tea in the morning", user_id="u1", metadata={"hot": True})
    memory.add("tea iced", user_id="u1", metadata={"hot": False})
    hits = memory.search("tea", user_id="u1", filter={"hot": True}, limit=5)
    assert [h.record.text for h in hits] == ["tea in the morning"] and hits[0].score == 0.9
    last = requests(service, "POST", "/v3/memories/search/")[-1]
    assert last.body == {"query": "tea", "filters": {"AND": [{"user_id": "u1"}]}, "top_k": 1000}


def test_a_failed_batch_is_not_left_half_written(platform: tuple[StandIn, PlatformStandIn, Memory]) -> None:
    """Messages with different metadata need two requests; when the second fails, the first is undone."""
    from memdock.backends.mem0.backend import Mem0Backend
    from memdock.errors import BackendUnavailable
    from memdock.models import MemoryRecord, Scope

    service, fake, memory = platform
    backend = memory.backend
    assert isinstance(backend, Mem0Backend)
    now = memdock.models.utcnow()
    records = [MemoryRecord(id=f"local-{n}", text=f"text {n}", scope=Scope(user_id="u1"), metadata={"n": n},
                            hash=f"h{n}", created_at=now, updated_at=now) for n in range(2)]
    fake.fail_add_number = fake.adds + 2
    with pytest.raises(BackendUnavailable):
        backend.add(records)
    assert fake.items == {}
    assert requests(service, "DELETE", "/v1/memories/mem-0001/")


def test_app_id_is_refused(platform: tuple[StandIn, PlatformStandIn, Memory]) -> None:
    _, _, memory = platform
    with pytest.raises(Unsupported, match="app_id"):
        memory.add("x", app_id="app1")
