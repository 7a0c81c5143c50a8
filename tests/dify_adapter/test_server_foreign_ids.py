"""A foreign memory's id and a missing one are indistinguishable to a scope-limited key, not only in the answer
but in the work the server does for it: the by-id routes of ``/v1``, ``/mem0`` and ``/mem0ai-api`` make the
same backend calls, in the same order and with the same arguments (the id aside), and answer the same status,
headers and body (the id aside). Different backend work is what a timing oracle measures (a foreign id that
answers slower than a missing one tells the key the memory exists), so the test holds the calls equal instead
of timing them.

The backend is a real one (memory:// and embedded Chroma) whose methods are wrapped to record each call
before passing it on (`RecordingBackend`); the requests go through the app in-process (`memdock_client`).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from memdock.backend import Backend
from memdock.memory import Memory
from tests.helpers.memdock_app import MemdockTestClient, memdock_client
from tests.helpers.memdock_server import fresh_backend_url

KEYS = {"alice": "alice-key-0123456789abcdef", "bob": "bob-key-0123456789abcdef"}
PLACEHOLDER = "<id>"
BY_ID_ROUTES: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/v1/memories/{id}", {}),
    ("PATCH", "/v1/memories/{id}", {"json": {"text": "changed by alice"}}),
    ("DELETE", "/v1/memories/{id}", {}),
    ("GET", "/v1/memories/{id}?user_id=bob", {}),
    ("GET", "/v1/memories/{id}/history", {}),
    ("GET", "/mem0/memories/{id}", {}),
    ("PUT", "/mem0/memories/{id}", {"json": {"text": "changed by alice"}}),
    ("PUT", "/mem0/memories/{id}", {"json": {"metadata": {"k": "v"}}}),
    ("DELETE", "/mem0/memories/{id}", {}),
    ("GET", "/mem0/memories/{id}/history", {}),
    ("GET", "/mem0ai-api/retrieve/{id}", {}),
    ("PUT", "/mem0ai-api/update/{id}?data=changed", {}),
    ("DELETE", "/mem0ai-api/delete/{id}", {}),
]
def with_placeholder(value: Any, memory_id: str) -> Any:
    """`value` (a call argument, a body) with every occurrence of `memory_id` written as `PLACEHOLDER`."""
    if isinstance(value, str):
        return value.replace(memory_id, PLACEHOLDER)
    if isinstance(value, list | tuple):
        return [with_placeholder(item, memory_id) for item in value]
    if isinstance(value, dict):
        return {with_placeholder(k, memory_id): with_placeholder(v, memory_id) for k, v in value.items()}
    return repr(value)


class RecordingBackend:
    """Wraps every public operation of a real backend (on the instance, where `Memory` finds them) to append
    ``(name, args, kwargs)`` to `calls` and pass the call on. Only the calls made INTO the backend count:
    one the backend makes of its own while serving another (its clock, `get_many` calling `get`) is its
    own business and is not recorded."""

    def __init__(self, backend: Backend) -> None:
        self.calls: list[tuple[str, Any, Any]] = []
        self._inside = threading.local()
        names = [n for n in dir(Backend) if not n.startswith("_") and callable(getattr(Backend, n))]
        for name in names:
            setattr(backend, name, self._recorded(name, getattr(backend, name)))

    def _recorded(self, name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if getattr(self._inside, "depth", 0) == 0:
                self.calls.append((name, args, kwargs))
            self._inside.depth = getattr(self._inside, "depth", 0) + 1
            try:
                return real(*args, **kwargs)
            finally:
                self._inside.depth -= 1
        return call

    def since(self, start: int, memory_id: str) -> list[Any]:
        """The calls made from index `start` on, with `memory_id` as `PLACEHOLDER`."""
        return [with_placeholder([name, list(args), kwargs], memory_id) for name, args, kwargs in self.calls[start:]]


@pytest.fixture(scope="module", params=["memory", "chroma"])
def served(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MemdockTestClient, Memory, RecordingBackend]]:
    """Alice's client of a server whose keys each hold one user's scope, its Memory and the recorder (each
    test adds the memories it needs)."""
    tmp_path = tmp_path_factory.mktemp("foreign")
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps([{"name": user, "key": key, "scopes": [{"user_id": user}]}
                                for user, key in KEYS.items()]))
    memory = Memory.open(fresh_backend_url(request.param, tmp_path, "foreign"))
    try:
        recorder = RecordingBackend(memory.backend)
        with memdock_client(memory, "--keys-file", str(keys), headers={"X-API-Key": KEYS["alice"]}) as client:
            yield client, memory, recorder
    finally:
        memory.close()


def answer(client: MemdockTestClient, recorder: RecordingBackend, method: str, path: str, memory_id: str,
           options: dict[str, Any]) -> dict[str, Any]:
    """What one request answers and which backend calls it causes, with `memory_id` as `PLACEHOLDER`."""
    start = len(recorder.calls)
    response = client.request(method, path.format(id=memory_id), headers={"X-Request-ID": "one-id"}, **options)
    headers = dict(response.headers.items())
    return {"status": response.status_code, "headers": with_placeholder(headers, memory_id),
            "body": with_placeholder(response.text, memory_id), "calls": recorder.since(start, memory_id)}


@pytest.mark.parametrize(("method", "path", "options"), [
    pytest.param(*route, id=f"{route[0]} {route[1]}{' ' + next(iter(route[2]['json'])) if route[2] else ''}")
    for route in BY_ID_ROUTES])
def test_a_foreign_id_makes_the_same_backend_calls_and_answer_as_a_missing_one(
        served: tuple[MemdockTestClient, Memory, RecordingBackend], method: str, path: str,
        options: dict[str, Any]) -> None:
    client, memory, recorder = served
    token = uuid.uuid4().hex[:8]  # the fixture's store is shared by the tests of one backend
    foreign = memory.add(f"bob's secret {token}", user_id="bob", metadata={"k": "old"})[0].record
    memory.update(foreign.id, text=f"bob's new secret {token}", scope=foreign.scope)  # a history of two events
    before = memory.get(foreign.id)
    missing = str(uuid.uuid4())
    assert len(missing) == len(foreign.id)  # the same length: the headers (content-length) can be compared

    of_foreign = answer(client, recorder, method, path, foreign.id, options)
    of_missing = answer(client, recorder, method, path, missing, options)

    assert of_foreign["calls"], "the route made no backend call at all"
    assert of_foreign == of_missing
    assert of_foreign["status"] in (200, 404)
    assert "secret" not in of_foreign["body"]
    assert memory.get(foreign.id) == before  # the foreign memory is untouched
    assert [e.event.value for e in memory.history(foreign.id)] == ["ADD", "UPDATE"]


def test_the_owner_still_reaches_the_memory_by_the_same_routes(
        served: tuple[MemdockTestClient, Memory, RecordingBackend]) -> None:
    client, memory, _ = served
    own = memory.add("alice's note", user_id="alice", run_id=uuid.uuid4().hex)[0].record
    assert client.get(f"/mem0/memories/{own.id}").json()["memory"] == "alice's note"
    assert [e["event"] for e in client.get(f"/mem0/memories/{own.id}/history").json()] == ["ADD"]
    assert client.get(f"/mem0ai-api/retrieve/{own.id}").json()["code"] == 0
    assert client.put(f"/mem0ai-api/update/{own.id}", params={"data": "alice's new note"}).json() == {
        "code": 0, "data": None}
    assert client.put(f"/mem0/memories/{own.id}", json={"metadata": {"k": "v"}}).status_code == 200
    assert memory.get(own.id).text == "alice's new note"
    assert memory.get(own.id).metadata == {"k": "v"}
    assert client.delete(f"/mem0/memories/{own.id}").status_code == 200
    assert [e["event"] for e in client.get(f"/mem0/memories/{own.id}/history").json()] == [
        "ADD", "UPDATE", "UPDATE", "DELETE"]  # history survives deletion (as mem0's server)
    assert client.get(f"/mem0ai-api/retrieve/{own.id}").status_code == 404  # as tonori, once deleted
