"""The native API (/v1) of the memdock server app, in-process, for memory:// and embedded Chroma, including the
routes a ``memdock+http://`` client backend uses (info, import, lookup, reset)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.memdock_app import MemdockTestClient, memdock_client
from tests.helpers.memdock_server import fresh_backend_url
from tests.helpers.paths import REPO


@pytest.fixture(scope="module", params=["memory", "chroma"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MemdockTestClient]:
    """A server app per backend for this module."""
    url = fresh_backend_url(request.param, tmp_path_factory.mktemp("native"), "native")
    with memdock_client(url) as app_client:
        yield app_client


@pytest.fixture
def client(server: MemdockTestClient) -> httpx.Client:
    return server


def unique(name: str) -> str:
    return f"{name}-{datetime.now(UTC).timestamp()}"


def add(client: httpx.Client, text: str, **fields: Any) -> dict[str, Any]:
    response = client.post("/v1/memories", json={"text": text, **fields})
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()["results"][0]
    return result


def test_healthz_answers_without_auth(client: httpx.Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json()["status"] == "ok"
    assert response.headers["x-request-id"]


def test_add_get_update_history_delete_round_trip(client: httpx.Client) -> None:
    user = unique("u")
    added = add(client, "I like green tea", user_id=user, metadata={"source": "chat", "n": 1})
    assert added["event"] == "ADD"
    memory_id = added["memory"]["id"]
    got = client.get(f"/v1/memories/{memory_id}").json()
    assert (got["text"], got["user_id"], got["metadata"]) == ("I like green tea", user, {"source": "chat", "n": 1})

    again = add(client, "I like green tea", user_id=user)
    assert (again["event"], again["memory"]["id"]) == ("NONE", memory_id)

    changed = client.patch(f"/v1/memories/{memory_id}", json={"text": "I like oolong tea", "metadata": {"n": 2}})
    assert changed.status_code == 200 and changed.json()["event"] == "UPDATE"
    assert client.get(f"/v1/memories/{memory_id}").json()["text"] == "I like oolong tea"

    deleted = client.delete(f"/v1/memories/{memory_id}")
    assert deleted.status_code == 200 and deleted.json()["event"] == "DELETE"
    assert client.get(f"/v1/memories/{memory_id}").status_code == 404
    events = client.get(f"/v1/memories/{memory_id}/history").json()["events"]
    assert [e["event"] for e in events] == ["ADD", "UPDATE", "DELETE"]
    assert events[1]["old_text"] == "I like green tea" and events[1]["new_text"] == "I like oolong tea"


def test_add_messages_stores_each_non_system_message_with_its_role(client: httpx.Client) -> None:
    user = unique("u")
    response = client.post("/v1/memories", json={"user_id": user, "messages": [
        {"role": "system", "content": "be nice"}, {"role": "user", "content": "I live in Lyon"},
        {"role": "assistant", "content": "Lyon is lovely"}]})
    assert response.status_code == 201
    stored = [(r["memory"]["text"], r["memory"]["metadata"]["role"]) for r in response.json()["results"]]
    assert stored == [("I live in Lyon", "user"), ("Lyon is lovely", "assistant")]


def test_search_scores_filters_and_threshold(client: httpx.Client) -> None:
    user = unique("u")
    add(client, "green tea every morning", user_id=user, metadata={"kind": "drink", "rating": 5})
    add(client, "black coffee after lunch", user_id=user, metadata={"kind": "drink", "rating": 3})
    add(client, "plays chess on Sundays", user_id=user, metadata={"kind": "hobby", "rating": 4})
    hits = client.post("/v1/search", json={"query": "green tea", "user_id": user, "limit": 3}).json()["results"]
    assert hits[0]["memory"]["text"] == "green tea every morning"
    assert all(0.0 <= h["score"] <= 1.0 for h in hits)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    filtered = client.post("/v1/search", json={
        "query": "green tea", "user_id": user, "filter": {"AND": [{"kind": "drink"}, {"rating": {"lt": 5}}]},
    }).json()["results"]
    assert [h["memory"]["text"] for h in filtered] == ["black coffee after lunch"]
    strict = client.post("/v1/search", json={"query": "green tea", "user_id": user, "threshold": 0.99}).json()
    assert all(h["score"] >= 0.99 for h in strict["results"])


def test_list_pages_with_a_cursor_and_counts_with_a_filter(client: httpx.Client) -> None:
    user = unique("u")
    texts = [f"fact number {n}" for n in range(7)]
    for n, text in enumerate(texts):
        add(client, text, user_id=user, metadata={"even": n % 2 == 0})
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"user_id": user, "limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/memories", params=params).json()
        seen += [m["text"] for m in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == texts
    even = json.dumps({"even": True})
    assert client.get("/v1/count", params={"user_id": user, "filter": even}).json() == {"count": 4}
    listed = client.get("/v1/memories", params={"user_id": user, "filter": even}).json()["items"]
    assert [m["text"] for m in listed] == texts[0::2]


def test_delete_by_scope_and_filter(client: httpx.Client) -> None:
    user = unique("u")
    for n in range(4):
        add(client, f"note {n}", user_id=user, metadata={"keep": n < 1})
    response = client.delete("/v1/memories", params={"user_id": user, "filter": json.dumps({"keep": False})})
    assert response.json() == {"deleted": 3}
    assert client.get("/v1/count", params={"user_id": user}).json() == {"count": 1}
    assert client.delete("/v1/memories", params={"user_id": user}).json() == {"deleted": 1}


def test_expires_at_hides_a_memory_once_passed(client: httpx.Client) -> None:
    user = unique("u")
    past = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    gone = add(client, "expired note", user_id=user, expires_at=past)["memory"]["id"]
    assert client.get(f"/v1/memories/{gone}").status_code == 404
    assert client.get("/v1/count", params={"user_id": user}).json() == {"count": 0}


def test_scopes_never_leak_between_users(client: httpx.Client) -> None:
    u1, u2 = unique("u1"), unique("u2")
    mine = add(client, "u1 secret: the safe code is 1234", user_id=u1)["memory"]["id"]
    add(client, "u2 likes jazz", user_id=u2)
    hits = client.post("/v1/search", json={"query": "safe code", "user_id": u2, "limit": 10}).json()["results"]
    assert all(h["memory"]["user_id"] == u2 for h in hits)
    assert [m["user_id"] for m in client.get("/v1/memories", params={"user_id": u2}).json()["items"]] == [u2]
    assert client.get(f"/v1/memories/{mine}", params={"user_id": u2}).status_code == 404
    assert client.patch(f"/v1/memories/{mine}", params={"user_id": u2}, json={"text": "x"}).status_code == 404
    assert client.delete(f"/v1/memories/{mine}", params={"user_id": u2}).status_code == 404
    assert client.get(f"/v1/memories/{mine}").json()["text"] == "u1 secret: the safe code is 1234"


BAD_REQUESTS: list[tuple[str, str, str, dict[str, Any], int, str | None]] = [
    ("no scope", "POST", "/v1/memories", {"json": {"text": "x"}}, 422, "scope"),
    ("text and messages", "POST", "/v1/memories", {"json": {"text": "x", "messages": [], "user_id": "u"}}, 422, None),
    ("empty text", "POST", "/v1/memories", {"json": {"text": " ", "user_id": "u"}}, 422, "text"),
    ("scope id in metadata", "POST", "/v1/memories", {"json": {"text": "x", "user_id": "u",
                                                              "metadata": {"user_id": "v"}}}, 422, "metadata.user_id"),
    ("naive expiry", "POST", "/v1/memories", {"json": {"text": "x", "user_id": "u",
                                                      "expires_at": "2030-01-01T00:00:00"}}, 422, "expires_at"),
    ("malformed JSON", "POST", "/v1/memories", {"content": b"{bad", "headers": {"content-type": "application/json"}},
     400, "body"),
    ("body not UTF-8", "POST", "/v1/memories", {"content": b'{"text": "\xff\xfe", "user_id": "u"}',
                                                "headers": {"content-type": "application/json"}}, 400, "body"),
    ("limit too big", "GET", "/v1/memories", {"params": {"user_id": "u", "limit": 100000}}, 422, "limit"),
    ("filter not JSON", "GET", "/v1/count", {"params": {"user_id": "u", "filter": "{oops"}}, 422, "filter"),
    ("unknown operator", "POST", "/v1/search", {"json": {"query": "q", "user_id": "u",
                                                        "filter": {"k": {"regex": "x"}}}}, 422, "k"),
    ("bad cursor", "GET", "/v1/memories", {"params": {"user_id": "u", "cursor": "!!"}}, 422, "cursor"),
    ("threshold above 1", "POST", "/v1/search", {"json": {"query": "q", "user_id": "u", "threshold": 2}}, 422,
     "threshold"),
    ("missing memory", "GET", "/v1/memories/does-not-exist", {}, 404, None),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "field"),
                         [b[1:] for b in BAD_REQUESTS], ids=[b[0] for b in BAD_REQUESTS])
def test_bad_input_gets_a_typed_error_naming_the_field(
    client: httpx.Client, method: str, path: str, kwargs: dict[str, Any], status: int, field: str | None
) -> None:
    response = client.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"]
    if field is not None:
        assert error["field"] == field, error
    assert response.json()["request_id"] == response.headers["x-request-id"]


# -- the routes a memdock+http client backend uses ------------------------------------------------------------


def record_in(text: str, **fields: Any) -> dict[str, Any]:
    """A record as a client backend stamps it (fresh id, its own times)."""
    now = datetime.now(UTC).isoformat()
    return {"id": str(uuid.uuid4()), "text": text, "created_at": now, "updated_at": now, **fields}


def test_info_reports_the_backend_its_capabilities_and_embedder(server: MemdockTestClient) -> None:
    info = server.get("/v1/info").json()
    memory = server.app.state.memory
    assert info["backend"] == memory.backend.name
    assert set(info["capabilities"]) == {c.value for c in memory.capabilities}
    assert info["embedder"] == {"name": "hash", "dimension": memory.embedder.dimension,
                                "identity": memory.embedder.identity}
    assert info["version"] == server.get("/healthz").json()["version"]
    assert info["reset"] is False  # not started with --allow-reset


def test_import_keeps_ids_and_times_and_answers_none_for_a_repeat(client: httpx.Client) -> None:
    user = unique("u")
    created = "2024-05-06T07:08:09.123456+00:00"
    record = record_in("imported with its own id", user_id=user, metadata={"n": 1},
                       created_at=created, updated_at="2024-05-07T00:00:00+00:00")
    response = client.post("/v1/import", json={"records": [record]})
    assert response.status_code == 201, response.text
    (result,) = response.json()["results"]
    assert result["event"] == "ADD" and result["memory"]["id"] == record["id"]
    got = client.get(f"/v1/memories/{record['id']}").json()
    assert (got["created_at"], got["updated_at"]) == ("2024-05-06T07:08:09.123456Z", "2024-05-07T00:00:00Z") \
        or (got["created_at"][:26], got["updated_at"][:19]) == (created[:26], "2024-05-07T00:00:00"), got
    again = client.post("/v1/import", json={"records": [record]}).json()["results"]
    assert [(r["event"], r["memory"]["id"]) for r in again] == [("NONE", record["id"])]
    same_text = client.post("/v1/import", json={"records": [record_in("imported with its own id", user_id=user)]})
    assert [(r["event"], r["memory"]["id"]) for r in same_text.json()["results"]] == [("NONE", record["id"])]
    events = client.get(f"/v1/memories/{record['id']}/history").json()["events"]
    assert [e["event"] for e in events] == ["ADD"]


def test_import_is_all_or_nothing_and_refuses_another_scopes_id(client: httpx.Client) -> None:
    user, other = unique("u"), unique("o")
    theirs = add(client, "belongs to the other user", user_id=other)["memory"]["id"]
    batch = [record_in("fine", user_id=user), {**record_in("clash", user_id=user), "id": theirs}]
    response = client.post("/v1/import", json={"records": batch})
    assert response.status_code == 422 and response.json()["error"]["field"] == "records[1].id", response.text
    blank = client.post("/v1/import", json={"records": [record_in(" ", user_id=user)]})
    assert blank.status_code == 422 and blank.json()["error"]["field"] == "records[0].text", blank.text
    naive = client.post("/v1/import", json={"records": [record_in("x", user_id=user,
                                                                  created_at="2024-01-01T00:00:00")]})
    assert naive.status_code == 422 and naive.json()["error"]["field"] == "records.0.created_at", naive.text
    assert client.get("/v1/count", params={"user_id": user}).json() == {"count": 0}
    assert client.get(f"/v1/memories/{theirs}").json()["text"] == "belongs to the other user"


def test_lookup_finds_a_text_or_hash_in_exactly_the_scope(client: httpx.Client) -> None:
    user = unique("u")
    stored = add(client, "looked   up", user_id=user, agent_id="a1")["memory"]
    found = client.post("/v1/lookup", json={"user_id": user, "agent_id": "a1", "text": "looked up"}).json()
    assert found["memory"]["id"] == stored["id"]
    by_hash = client.post("/v1/lookup", json={"user_id": user, "agent_id": "a1", "hash": stored["hash"]}).json()
    assert by_hash["memory"]["id"] == stored["id"]
    wider = client.post("/v1/lookup", json={"user_id": user, "text": "looked up"})
    assert wider.status_code == 200 and wider.json() == {"memory": None}
    both = client.post("/v1/lookup", json={"user_id": user, "text": "x", "hash": stored["hash"]})
    assert both.status_code == 422
    unscoped = client.post("/v1/lookup", json={"text": "looked up"})
    assert unscoped.status_code == 422 and unscoped.json()["error"]["field"] == "scope"


def test_lookups_answer_each_lookup_in_order_in_exactly_its_scope(client: httpx.Client) -> None:
    user = unique("u")
    first = add(client, "first text", user_id=user)["memory"]
    second = add(client, "second text", user_id=user, agent_id="a1")["memory"]
    asked = [{"user_id": user, "text": "second text"}, {"user_id": user, "agent_id": "a1", "text": "second  text"},
             {"user_id": user, "hash": first["hash"]}, {"user_id": user, "text": "never stored"},
             {"user_id": user, "text": "first text"}]
    found = client.post("/v1/lookups", json={"lookups": asked})
    assert found.status_code == 200, found.text
    assert [m and m["id"] for m in found.json()["memories"]] == [None, second["id"], first["id"], None, first["id"]]
    blank = client.post("/v1/lookups", json={"lookups": [{"user_id": user, "text": "x"}, {"user_id": user,
                                                                                          "text": " "}]})
    assert blank.status_code == 422 and blank.json()["error"]["field"] == "lookups[1].text", blank.text
    unscoped = client.post("/v1/lookups", json={"lookups": [{"text": "first text"}]})
    assert unscoped.status_code == 422 and unscoped.json()["error"]["field"] == "scope", unscoped.text
    assert client.post("/v1/lookups", json={"lookups": []}).status_code == 422


def test_reset_is_off_unless_allowed_and_needs_an_unrestricted_key(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps([{"name": "admin", "key": "admin-key-0123456789ab"},
                                {"name": "alice", "key": "alice-key-0123456789ab", "scopes": [{"user_id": "alice"}]}]))
    url = fresh_backend_url("memory", tmp_path, "reset")
    admin = {"Authorization": "Bearer admin-key-0123456789ab"}
    alice = {"Authorization": "Bearer alice-key-0123456789ab"}
    confirm = {"confirm": True}
    with memdock_client(url, "--keys-file", str(keys)) as closed:
        refused = closed.post("/v1/reset", json=confirm, headers=admin)
        assert refused.status_code == 403 and "--allow-reset" in refused.json()["error"]["message"], refused.text
        assert closed.get("/v1/info", headers=admin).json()["reset"] is False
    with memdock_client(url, "--keys-file", str(keys), "--allow-reset") as open_:
        open_.post("/v1/memories", json={"text": "doomed", "user_id": "alice"}, headers=admin)
        assert open_.get("/v1/info", headers=alice).json()["reset"] is False
        assert open_.post("/v1/reset", json=confirm, headers=alice).status_code == 403
        unconfirmed = open_.post("/v1/reset", json={"confirm": False}, headers=admin)
        assert unconfirmed.status_code == 422 and unconfirmed.json()["error"]["field"] == "confirm"
        assert open_.get("/v1/count", params={"user_id": "alice"}, headers=admin).json() == {"count": 1}
        assert open_.get("/v1/info", headers=admin).json()["reset"] is True
        assert open_.post("/v1/reset", json=confirm, headers=admin).json() == {"reset": True}
        assert open_.get("/v1/count", params={"user_id": "alice"}, headers=admin).json() == {"count": 0}


def test_a_restricted_key_imports_and_looks_up_only_its_scopes(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps([{"name": "alice", "key": "alice-key-0123456789ab", "scopes": [{"user_id": "alice"}]}]))
    headers = {"Authorization": "Bearer alice-key-0123456789ab"}
    with memdock_client(fresh_backend_url("memory", tmp_path, "scoped"), "--keys-file", str(keys),
                        headers=headers) as http:
        assert http.post("/v1/import", json={"records": [record_in("hers", user_id="alice")]}).status_code == 201
        assert http.post("/v1/import", json={"records": [record_in("not hers", user_id="bob")]}).status_code == 403
        assert http.post("/v1/lookup", json={"user_id": "bob", "text": "hers"}).status_code == 403
        assert http.get("/v1/info", headers={"Authorization": "Bearer wrong-key-0123456789"}).status_code == 401


def test_the_published_openapi_document_lists_every_native_route(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    native = {(path, method) for path, item in spec["paths"].items() for method in item if path.startswith("/v1")}
    assert native == {
        ("/v1/memories", "post"), ("/v1/memories", "get"), ("/v1/memories", "delete"), ("/v1/search", "post"),
        ("/v1/count", "get"), ("/v1/memories/{memory_id}", "get"), ("/v1/memories/{memory_id}", "patch"),
        ("/v1/memories/{memory_id}", "delete"), ("/v1/memories/{memory_id}/history", "get"),
        ("/v1/info", "get"), ("/v1/import", "post"), ("/v1/lookup", "post"), ("/v1/lookups", "post"),
        ("/v1/reset", "post"),
    }
    committed = json.loads((REPO / "docs" / "openapi.json").read_text())
    assert committed["paths"] == spec["paths"], "docs/openapi.json is stale: run `memdock openapi -o docs/openapi.json`"
