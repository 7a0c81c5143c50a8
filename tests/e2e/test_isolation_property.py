"""Scope isolation as a property over random operations and keys: random sequences of add, search, list,
get, update, delete and history by several users, each with an API key limited to their own scope, through the
native (``/v1``), ``/mem0`` and ``/mem0ai-api`` routes of a real server on 127.0.0.1 (memory:// and embedded
Chroma). No operation ever returns or changes another scope's memory, naming another user's scope answers 403,
and a foreign memory's id answers exactly like a missing one (status and body, the id aside). A model of who
owns which memory is checked against an unrestricted key at the end. ``MEMDOCK_SOAK=1``: ten times the runs.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memdock.memory import Memory
from tests.helpers.hostile import SOAK, scaled
from tests.helpers.memdock_server import memdock_app_server

USERS = ("ann", "bob", "cyd")
KEYS = {user: f"key-of-{user}-0123456789abcdef" for user in USERS}
ADMIN = "admin-key-0123456789abcdef"
TEXTS = ("likes tea", "has a cat", "lives in Oslo", "plays chess")
APIS = ("native", "mem0", "mem0ai")
SENT: Counter[str] = Counter()
"""Requests sent and by-id checks made, per backend (printed when its server stops; docs/reliability.md)."""


@pytest.fixture(scope="module", params=["memory", "chroma"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real server whose keys each hold one user's scope, plus one unrestricted key."""
    folder = tmp_path_factory.mktemp("isolation")
    keys_file = folder / "keys.json"
    keys_file.write_text(json.dumps([{"name": user, "key": KEYS[user], "scopes": [{"user_id": user}]}
                                     for user in USERS] + [{"name": "admin", "key": ADMIN}]))
    url = (f"memory://isolation-{uuid.uuid4().hex[:12]}?embedder=hash" if request.param == "memory"
           else f"chroma://{folder}/db?embedder=hash")
    memory = Memory.open(url)
    try:
        with memdock_app_server(memory, "--keys-file", str(Path(keys_file))) as base:
            yield base
        print(f"isolation [{request.param}]: {SENT['requests']} requests, {SENT['runs']} runs, "
              f"{SENT['foreign']} foreign-id operations compared with missing ids")
        SENT.clear()
    finally:
        memory.close()


class Client:
    """One user's client of every API."""

    def __init__(self, base: str, key: str) -> None:
        self.http = httpx.Client(base_url=base, timeout=60, headers={"Authorization": f"Bearer {key}"},
                                 event_hooks={"request": [lambda _request: SENT.update(["requests"])]})

    def add(self, api: str, user: str, text: str) -> tuple[int, list[str]]:
        if api == "native":
            r = self.http.post("/v1/memories", json={"user_id": user, "text": text})
            return r.status_code, [x["memory"]["id"] for x in r.json()["results"]] if r.status_code == 201 else []
        if api == "mem0":
            r = self.http.post("/mem0/memories", json={"user_id": user, "infer": False,
                                                       "messages": [{"role": "user", "content": text}]})
            return r.status_code, [x["id"] for x in r.json()["results"]] if r.status_code == 200 else []
        r = self.http.post("/mem0ai-api/store", json={"user_id": user, "data": text})
        return r.status_code, [x["id"] for x in r.json().get("data") or []]

    def listed(self, api: str, user: str, search: bool) -> tuple[int, list[str]]:
        if api == "native":
            r = (self.http.post("/v1/search", json={"user_id": user, "query": "tea", "limit": 100}) if search
                 else self.http.get("/v1/memories", params={"user_id": user, "limit": 1000}))
            if r.status_code != 200:
                return r.status_code, []
            return 200, [x["memory"]["id"] for x in r.json()["results"]] if search else [
                x["id"] for x in r.json()["items"]]
        if api == "mem0":
            r = (self.http.post("/mem0/search", json={"query": "tea", "filters": {"user_id": user}, "threshold": 0})
                 if search else self.http.get("/mem0/memories", params={"user_id": user, "top_k": 1000}))
            return r.status_code, [x["id"] for x in r.json()["results"]] if r.status_code == 200 else []
        r = (self.http.post("/mem0ai-api/search", json={"query": "tea", "user_id": user}) if search
             else self.http.get("/mem0ai-api/retrieve", params={"user_id": user, "limit": 1000}))
        return r.status_code, [x["id"] for x in r.json().get("data") or []]

    def by_id(self, api: str, kind: str, memory_id: str) -> httpx.Response:
        routes: dict[str, dict[str, tuple[str, str, dict[str, str] | None]]] = {
            "native": {"get": ("GET", f"/v1/memories/{memory_id}", None),
                       "update": ("PATCH", f"/v1/memories/{memory_id}", {"text": f"new {uuid.uuid4().hex}"}),
                       "delete": ("DELETE", f"/v1/memories/{memory_id}", None),
                       "history": ("GET", f"/v1/memories/{memory_id}/history", None)},
            "mem0": {"get": ("GET", f"/mem0/memories/{memory_id}", None),
                     "update": ("PUT", f"/mem0/memories/{memory_id}", {"text": f"new {uuid.uuid4().hex}"}),
                     "delete": ("DELETE", f"/mem0/memories/{memory_id}", None),
                     "history": ("GET", f"/mem0/memories/{memory_id}/history", None)},
            "mem0ai": {"get": ("GET", f"/mem0ai-api/retrieve/{memory_id}", None),
                       "update": ("PUT", f"/mem0ai-api/update/{memory_id}?data=new+{uuid.uuid4().hex}", None),
                       "delete": ("DELETE", f"/mem0ai-api/delete/{memory_id}", None),
                       "history": ("GET", f"/mem0ai-api/retrieve/{memory_id}", None)},
        }
        method, path, body = routes[api][kind]
        return self.http.request(method, path, json=body)


def comparable(response: httpx.Response, memory_id: str) -> tuple[int, str]:
    """Status and body with the id and the request id taken out (what must not differ between a foreign id
    and a missing one)."""
    body = response.json() if response.content else None
    if isinstance(body, dict):
        body.pop("request_id", None)
    return response.status_code, json.dumps(body, sort_keys=True).replace(memory_id, "<id>")


OPERATION = st.tuples(st.sampled_from(USERS), st.sampled_from(APIS),
                      st.sampled_from(["add", "add", "list", "search", "get", "update", "delete", "history",
                                       "foreign-scope"]),
                      st.sampled_from(TEXTS), st.integers(0, 10_000), st.sampled_from(USERS))


@settings(max_examples=scaled(12), deadline=None, derandomize=not SOAK,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(operations=st.lists(OPERATION, min_size=5, max_size=scaled(25, 4)))
def test_no_operation_crosses_a_scope(server: str, operations: list[tuple[str, str, str, str, int, str]]) -> None:
    clients = {user: Client(server, KEYS[user]) for user in USERS}
    admin = Client(server, ADMIN)
    owner: dict[str, str] = {}  # memory id -> user, for the memories this run created
    for user in USERS:  # start every run from empty scopes
        assert admin.http.delete("/v1/memories", params={"user_id": user}).status_code == 200
    preamble = [(user, api, "add", f"{user} said {api}", 0, user) for user in USERS for api in APIS]
    checked = 0  # by-id operations on another user's memory
    SENT["runs"] += 1
    try:
        for actor, api, kind, text, pick, other in [*preamble, *operations]:
            client = clients[actor]
            if kind == "add":
                status, ids = client.add(api, actor, text)
                assert status in (200, 201)
                for memory_id in ids:
                    assert owner.setdefault(memory_id, actor) == actor
            elif kind in ("list", "search"):
                status, ids = client.listed(api, actor, kind == "search")
                assert status == 200
                assert all(owner.get(memory_id) == actor for memory_id in ids), (ids, owner)
            elif kind == "foreign-scope":
                if other != actor:
                    status, ids = client.listed(api, other, pick % 2 == 0)
                    assert status == 403 and ids == []
                    status, ids = client.add(api, other, text)
                    assert status == 403 and ids == []
            else:
                foreign = sorted(i for i, u in owner.items() if u != actor)
                if not foreign:
                    continue
                target = foreign[pick % len(foreign)]
                before = admin.http.get(f"/v1/memories/{target}")
                missing = str(uuid.uuid4())
                answer = client.by_id(api, kind, target)
                assert comparable(answer, target) == comparable(client.by_id(api, kind, missing), missing)
                assert answer.status_code in (200, 404)
                after = admin.http.get(f"/v1/memories/{target}")
                assert (after.status_code, after.json()) == (before.status_code, before.json())
                checked += 1
                SENT["foreign"] += 1
                mine = sorted(i for i, u in owner.items() if u == actor)
                if mine and kind in ("update", "delete"):  # the owner may do what the stranger may not
                    own = mine[pick % len(mine)]
                    done = client.by_id(api, kind, own)
                    if done.status_code == 200 and kind == "delete":
                        del owner[own]
                    assert done.status_code in (200, 404)
        assert checked or not any(op[2] in ("get", "update", "delete", "history") for op in operations)
        for user in USERS:  # the model: every memory where its owner put it, nothing anywhere else
            status, ids = admin.listed("native", user, False)
            assert status == 200
            assert sorted(ids) == sorted(i for i, u in owner.items() if u == user)
    finally:
        for c in (*clients.values(), admin):
            c.http.close()
