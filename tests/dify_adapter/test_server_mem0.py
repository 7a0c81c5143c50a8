"""The mem0-compatible dialects of the memdock server app, in-process: request and response shapes of
mem0's server (as documented by mem0 and recorded from its real server) and of the mem0ai-api wrapper,
auth in each dialect's own way, and a scope-leak check across every route of every API."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.memdock_app import MemdockTestClient, memdock_client
from tests.helpers.memdock_server import fresh_backend_url

ADMIN = "admin-key-0123456789abcdef"
KEY_U1 = "key-of-u1-0123456789abcdef"
KEY_U2 = "key-of-u2-0123456789abcdef"
ADD_RESULT_KEYS = {"id", "memory", "event", "actor_id", "role"}
ITEM_KEYS = {"id", "memory", "hash", "metadata", "created_at", "updated_at", "user_id"}


@pytest.fixture(scope="module", params=["memory", "chroma"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MemdockTestClient]:
    url = fresh_backend_url(request.param, tmp_path_factory.mktemp("mem0"), "mem0")
    with memdock_client(url) as app_client:
        yield app_client


@pytest.fixture
def mem0(server: MemdockTestClient) -> Iterator[httpx.Client]:
    with server.as_another(base_url=f"{server.base_url}/mem0") as client:
        yield client


@pytest.fixture
def api(server: MemdockTestClient) -> Iterator[httpx.Client]:
    with server.as_another(base_url=f"{server.base_url}/mem0ai-api") as client:
        yield client


def uid() -> str:
    return f"alice-{uuid.uuid4().hex[:6]}"


# -- mem0 server dialect -----------------------------------------------------------------------------------


def test_server_add_stores_each_non_system_message(mem0: httpx.Client) -> None:
    user = uid()
    response = mem0.post("/memories", json={"user_id": user, "infer": False, "messages": [
        {"role": "system", "content": "You are helpful."}, {"role": "user", "content": "I love hiking in the Alps."},
        {"role": "assistant", "content": "Nice, the Alps are beautiful."}]})
    assert response.status_code == 200 and response.headers["x-request-id"]
    results = response.json()["results"]
    assert [set(r) for r in results] == [ADD_RESULT_KEYS, ADD_RESULT_KEYS]
    assert [(r["memory"], r["event"], r["role"]) for r in results] == [
        ("I love hiking in the Alps.", "ADD", "user"), ("Nice, the Alps are beautiful.", "ADD", "assistant")]
    only_system = mem0.post("/memories", json={"user_id": user, "messages": [{"role": "system", "content": "x"}]})
    assert only_system.json() == {"results": []}
    assert mem0.post("/memories", json={"user_id": user, "messages": []}).json() == {"results": []}


@pytest.mark.parametrize(("body", "status"), [
    ({"messages": [{"role": "user", "content": "x"}], "infer": False}, 400),
    ({"messages": "hello", "user_id": "a"}, 422),
    ({"messages": [{"role": "user"}], "user_id": "a"}, 422),
    ({"user_id": "a"}, 422),
    ({"messages": [{"role": "user", "content": "x"}], "user_id": "a", "expiration_date": "tomorrow"}, 400),
])
def test_server_add_errors_have_mem0_status_and_detail(mem0: httpx.Client, body: dict[str, Any], status: int) -> None:
    response = mem0.post("/memories", json=body)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str if status == 400 else list)


def test_server_list_get_search_update_history_delete(mem0: httpx.Client) -> None:
    user = uid()
    added = mem0.post("/memories", json={"user_id": user, "metadata": {"category": "food", "priority": 2},
                                         "messages": [{"role": "user", "content": "My favourite food is sushi."}]})
    memory_id = added.json()["results"][0]["id"]
    mem0.post("/memories", json={"user_id": user, "messages": [{"role": "user", "content": "I own a red bike."}]})

    listed = mem0.get("/memories", params={"user_id": user}).json()["results"]
    assert [i["memory"] for i in listed] == ["My favourite food is sushi.", "I own a red bike."]
    assert set(listed[0]) == ITEM_KEYS | {"role"} and "score" not in listed[0]
    assert listed[0]["metadata"] == {"category": "food", "priority": 2} and listed[1]["metadata"] is None
    assert len(mem0.get("/memories", params={"user_id": user, "top_k": 1}).json()["results"]) == 1
    assert mem0.get("/memories", params={"user_id": user, "top_k": 5000}).status_code == 422

    got = mem0.get(f"/memories/{memory_id}").json()
    assert got["memory"] == "My favourite food is sushi." and got["score"] is None and got["user_id"] == user
    assert mem0.get(f"/memories/{uuid.uuid4()}").json() is None

    hits = mem0.post("/search", json={"query": "sushi food", "filters": {"user_id": user}, "top_k": 1}).json()
    assert [h["memory"] for h in hits["results"]] == ["My favourite food is sushi."]
    assert 0.0 <= hits["results"][0]["score"] <= 1.0
    deprecated = mem0.post("/search", json={"query": "bike", "user_id": user}).json()["results"]
    assert deprecated[0]["memory"] == "I own a red bike."
    by_metadata = mem0.post("/search", json={"query": "x", "filters": {"user_id": user, "category": "food"},
                                             "threshold": 0})
    assert [h["memory"] for h in by_metadata.json()["results"]] == ["My favourite food is sushi."]
    assert mem0.post("/search", json={"query": "anything"}).status_code == 400
    assert mem0.post("/search", json={"query": "anything", "filters": {}}).status_code == 400
    assert mem0.post("/search", json={"filters": {"user_id": user}}).status_code == 422

    updated = mem0.put(f"/memories/{memory_id}", json={"text": "My favourite food is ramen.",
                                                       "metadata": {"source": "edit"}})
    assert updated.json() == {"message": "Memory updated successfully!"}
    after = mem0.get(f"/memories/{memory_id}").json()
    assert (after["memory"], after["metadata"], after["role"]) == (
        "My favourite food is ramen.", {"category": "food", "priority": 2, "source": "edit"}, "user")
    assert mem0.put(f"/memories/{memory_id}", json={}).status_code == 400
    assert mem0.put(f"/memories/{uuid.uuid4()}", json={"text": "x"}).status_code == 404

    assert mem0.delete(f"/memories/{memory_id}").json() == {"message": "Memory deleted successfully"}
    assert mem0.delete(f"/memories/{memory_id}").status_code == 404
    assert mem0.get(f"/memories/{memory_id}").json() is None
    history = mem0.get(f"/memories/{memory_id}/history").json()
    assert [(h["event"], h["old_memory"], h["new_memory"], h["is_deleted"]) for h in history] == [
        ("ADD", None, "My favourite food is sushi.", False),
        ("UPDATE", "My favourite food is sushi.", "My favourite food is ramen.", False),
        ("DELETE", "My favourite food is ramen.", None, True),
    ]
    assert mem0.get(f"/memories/{uuid.uuid4()}/history").json() == []

    assert mem0.delete("/memories", params={"user_id": user}).json() == {"message": "All relevant memories deleted"}
    assert mem0.get("/memories", params={"user_id": user}).json() == {"results": []}
    assert mem0.delete("/memories").status_code == 400
    assert mem0.post("/reset").status_code == 403


def test_server_search_defaults_are_the_servers(mem0: httpx.Client) -> None:
    """mem0's server: ``top_k`` 20 and a threshold of 0.1 on the semantic score unless the request says
    otherwise; ``top_k: 0`` finds nothing; a negative ``top_k`` or a threshold outside [0, 1] is a 400."""
    user = uid()
    texts = [f"note {n}: the user collects stamp album {n}" for n in range(25)]
    for text in texts:
        mem0.post("/memories", json={"user_id": user, "infer": False, "messages": [{"role": "user", "content": text}]})
    mem0.post("/memories", json={"user_id": user, "infer": False,
                                 "messages": [{"role": "user", "content": "zzz qqq"}]})
    default = mem0.post("/search", json={"query": "stamp album", "filters": {"user_id": user}}).json()["results"]
    assert len(default) == 20 and all(hit["score"] >= 0.1 for hit in default)
    everything = mem0.post("/search", json={"query": "stamp album", "filters": {"user_id": user}, "top_k": 100,
                                            "threshold": 0}).json()["results"]
    assert len(everything) == 26 and min(hit["score"] for hit in everything) < 0.1
    above = mem0.post("/search", json={"query": "stamp album", "filters": {"user_id": user}, "top_k": 100}).json()
    assert "zzz qqq" not in [hit["memory"] for hit in above["results"]]
    assert mem0.post("/search", json={"query": "stamp", "filters": {"user_id": user}, "top_k": 0}).json() == {
        "results": []}
    for bad in ({"top_k": -1}, {"threshold": 1.5}, {"threshold": -0.1}):
        response = mem0.post("/search", json={"query": "stamp", "filters": {"user_id": user}, **bad})
        assert response.status_code == 400 and isinstance(response.json()["detail"], str), bad
    assert len(mem0.get("/memories", params={"user_id": user}).json()["results"]) == 20
    assert len(mem0.get("/memories", params={"user_id": user, "top_k": 0}).json()["results"]) == 1


def test_server_explain_reports_the_semantic_score(mem0: httpx.Client) -> None:
    user = uid()
    mem0.post("/memories", json={"user_id": user, "messages": [{"role": "user", "content": "I keep three cats"}]})
    [hit] = mem0.post("/search", json={"query": "cats", "filters": {"user_id": user}, "explain": True,
                                       "threshold": 0.05}).json()["results"]
    details = hit["score_details"]
    assert details["semantic_score"] == details["final_score"] == hit["score"] and details["threshold"] == 0.05
    assert set(details) == {"semantic_score", "bm25_score", "entity_boost", "raw_score", "max_possible_score",
                            "final_score", "threshold"}
    [plain] = mem0.post("/search", json={"query": "cats", "filters": {"user_id": user}}).json()["results"]
    assert "score_details" not in plain and plain["score"] == hit["score"]


def test_server_put_merges_metadata_and_keeps_the_role(mem0: httpx.Client) -> None:
    """The server merges ``metadata`` into the stored metadata: keys are never removed, ``{}`` changes
    nothing; the message's role stays on the item and on every history entry."""
    user = uid()
    [added] = mem0.post("/memories", json={"user_id": user, "metadata": {"a": 1, "b": 2}, "infer": False,
                                           "messages": [{"role": "assistant", "content": "Paris is lovely"}]}
                        ).json()["results"]
    assert mem0.put(f"/memories/{added['id']}", json={"metadata": {"a": 3}}).status_code == 200
    assert mem0.put(f"/memories/{added['id']}", json={"metadata": {}}).status_code == 200
    got = mem0.get(f"/memories/{added['id']}").json()
    assert (got["metadata"], got["role"]) == ({"a": 3, "b": 2}, "assistant")
    mem0.put(f"/memories/{added['id']}", json={"text": "Paris is very lovely"})
    got = mem0.get(f"/memories/{added['id']}").json()
    assert (got["memory"], got["metadata"], got["role"]) == ("Paris is very lovely", {"a": 3, "b": 2}, "assistant")
    history = mem0.get(f"/memories/{added['id']}/history").json()
    assert [(h["event"], h["role"]) for h in history] == [("ADD", "assistant"), ("UPDATE", "assistant"),
                                                          ("UPDATE", "assistant")]


def test_server_blank_ids_are_absent_and_infer_changes_the_add_answer(mem0: httpx.Client) -> None:
    user = uid()
    added = mem0.post("/memories", json={"user_id": user, "agent_id": "", "run_id": "",
                                         "messages": [{"role": "user", "content": "I play the cello"}]})
    [item] = added.json()["results"]
    assert set(item) == {"id", "memory", "event"}  # infer omitted: the server's LLM path answers these keys
    assert mem0.get(f"/memories/{item['id']}").json()["user_id"] == user
    assert [i["memory"] for i in mem0.get("/memories", params={"user_id": user, "agent_id": ""}).json()["results"]
            ] == ["I play the cello"]
    hits = mem0.post("/search", json={"query": "cello", "filters": {"user_id": user, "run_id": ""}}).json()
    assert [h["memory"] for h in hits["results"]] == ["I play the cello"]
    assert mem0.post("/memories", json={"user_id": "", "messages": [{"role": "user", "content": "x"}]}
                     ).status_code == 400


def test_server_removes_the_keys_the_mem0_backend_lists_as_removed(mem0: httpx.Client) -> None:
    """memdock's mem0 backend lists, under `REMOVED_KEYS_MARKER`, the keys a merging server would keep:
    memdock's own server removes them and never stores the marker."""
    from memdock.formats.mem0 import REMOVED_KEYS_MARKER

    user = uid()
    [added] = mem0.post("/memories", json={"user_id": user, "metadata": {"a": 1, "b": 2, REMOVED_KEYS_MARKER: []},
                                           "infer": False, "messages": [{"role": "user", "content": "k"}]}
                        ).json()["results"]
    assert mem0.get(f"/memories/{added['id']}").json()["metadata"] == {"a": 1, "b": 2}
    mem0.put(f"/memories/{added['id']}", json={"metadata": {"a": 1, REMOVED_KEYS_MARKER: ["b"]}})
    got = mem0.get(f"/memories/{added['id']}").json()
    assert (got["metadata"], got["role"]) == ({"a": 1}, "user")
    bad = mem0.put(f"/memories/{added['id']}", json={"metadata": {REMOVED_KEYS_MARKER: "b"}})
    assert bad.status_code == 400 and REMOVED_KEYS_MARKER in bad.json()["detail"]


# -- mem0ai-api dialect ------------------------------------------------------------------------------------


def test_mem0ai_api_answers_in_tonoris_shapes(api: httpx.Client) -> None:
    user = uid()
    assert api.get("/authorized").json() == {"code": 0, "data": None}
    stored = api.post("/store", json={"data": "I drink oolong tea", "user_id": user, "metadata": {"k": 1},
                                      "prompt": "ignored", "filters": None}).json()
    assert stored["code"] == 0
    [result] = stored["data"]
    memory_id = result["id"]
    assert result == {"id": memory_id, "event": "add", "data": "I drink oolong tea"}
    api.post("/store", json={"data": "I cycle to work", "user_id": user})
    assert api.post("/store", json={"data": "I cycle to work", "user_id": user}).json() == {"code": 0, "data": []}

    found = api.post("/search", json={"query": "oolong tea", "user_id": user, "limit": 1}).json()
    [hit] = found["data"]
    assert set(hit) == {"id", "text", "metadata", "score"} and 0.0 <= hit["score"] <= 1.0
    assert hit["text"] == "I drink oolong tea" and hit["metadata"]["data"] == "I drink oolong tea"
    assert (hit["metadata"]["k"], hit["metadata"]["user_id"]) == (1, user)
    assert isinstance(hit["metadata"]["created_at"], int) and abs(hit["metadata"]["created_at"] - time.time()) < 60
    old_style = api.get("/search", params={"query": "cycle", "user_id": user, "limit": 1}).json()
    assert [r["text"] for r in old_style["data"]] == ["I cycle to work"]
    filtered = api.post("/search", json={"query": "x", "user_id": user, "filters": {"k": 1}}).json()
    assert [r["text"] for r in filtered["data"]] == ["I drink oolong tea"]

    listed = api.get("/retrieve", params={"user_id": user}).json()["data"]
    assert [i["text"] for i in listed] == ["I drink oolong tea", "I cycle to work"]
    assert all(set(i) == {"id", "text", "metadata"} for i in listed)
    assert len(api.get("/retrieve", params={"user_id": user, "limit": 1}).json()["data"]) == 1

    assert api.put(f"/update/{memory_id}", params={"data": "I drink green tea"}).json() == {"code": 0, "data": None}
    assert api.put(f"/update/{memory_id}", json={"metadata": {"k": 2}}).json() == {"code": 0, "data": None}
    history = api.get(f"/retrieve/{memory_id}").json()["data"]
    assert [(h["event"], h["prev_value"], h["new_value"], h["is_deleted"]) for h in history] == [
        ("add", None, "I drink oolong tea", 0), ("update", "I drink oolong tea", "I drink green tea", 0),
        ("update", "I drink green tea", "I drink green tea", 0)]
    assert all(set(h) == {"id", "memory_id", "prev_value", "new_value", "event", "timestamp", "is_deleted"}
               for h in history)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", history[0]["timestamp"])

    assert api.delete(f"/delete/{memory_id}").json() == {"code": 0, "data": None}
    for gone in (api.delete(f"/delete/{memory_id}"), api.get(f"/retrieve/{memory_id}"),
                 api.put(f"/update/{memory_id}", params={"data": "x"}), api.get(f"/retrieve/{uuid.uuid4()}")):
        missing = gone.url.path.rsplit("/", 1)[1]
        assert gone.status_code == 404 and gone.json() == {"detail": f"Memory {missing} not found"}

    assert api.delete("/delete-all", params={"user_id": user}).json() == {"code": 0, "data": None}
    assert api.get("/retrieve", params={"user_id": user}).json() == {"code": 0, "data": []}
    malformed = api.post("/store", json={"user_id": user})
    assert malformed.status_code == 422 and malformed.json()["detail"][0]["loc"] == ["body", "data"]
    no_text = api.put(f"/update/{uuid.uuid4()}")
    assert no_text.status_code == 422 and no_text.json()["detail"][0]["loc"] == ["query", "data"]
    refused = api.delete("/reset-all")
    assert refused.status_code == 403 and refused.json()["code"] == 403 and set(refused.json()) == ENVELOPE_KEYS


ENVELOPE_KEYS = {"code", "error", "message"}


@pytest.mark.parametrize(("method", "path", "kwargs"), [
    ("POST", "/store", {"json": {"data": "an unscoped fact"}}),
    ("POST", "/store", {"json": {"data": "blank ids only", "user_id": "", "agent_id": "", "run_id": ""}}),
    ("POST", "/search", {"json": {"query": "tea"}}),
    ("GET", "/search", {"params": {"query": "tea", "user_id": ""}}),
    ("GET", "/retrieve", {"params": {"limit": 2}}),
    ("DELETE", "/delete-all", {}),
])
def test_what_tonori_does_unscoped_memdock_refuses_in_tonoris_envelope(
    api: httpx.Client, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    """tonori stores unscoped, searches and lists every user, and answers 500 to an unscoped delete-all."""
    response = api.request(method, path, **kwargs)
    assert response.status_code == 422
    body = response.json()
    assert set(body) == ENVELOPE_KEYS and (body["code"], body["error"]) == (422, "ValueError")
    assert "user_id" in body["message"]


def test_an_update_keeps_the_memorys_scope_metadata_and_creation_time(api: httpx.Client) -> None:
    """tonori's update replaces the payload: the memory drops out of its user's retrieve and search."""
    user = uid()
    [stored] = api.post("/store", json={"data": "I like green tea", "user_id": user, "metadata": {"src": "chat"}}
                        ).json()["data"]
    [before] = api.get("/retrieve", params={"user_id": user}).json()["data"]
    api.put(f"/update/{stored['id']}", params={"data": "I like oolong tea"})
    [after] = api.get("/retrieve", params={"user_id": user}).json()["data"]
    assert after["metadata"] == {**before["metadata"], "data": "I like oolong tea"}
    assert [h["text"] for h in api.post("/search", json={"query": "oolong", "user_id": user}).json()["data"]] == [
        "I like oolong tea"]


def test_a_wrong_key_learns_nothing_about_ids(tmp_path: Path) -> None:
    """tonori answers 404 for an unknown id before it checks the key; memdock checks the key first, so a
    known and an unknown id answer a wrong key alike."""
    with memdock_client(fresh_backend_url("memory", tmp_path, "oracle"), "--api-key", ADMIN) as http:
        good = {"Authorization": f"Bearer {ADMIN}"}
        [stored] = http.post("/mem0ai-api/store", headers=good, json={"data": "fact", "user_id": "a"}).json()["data"]
        wrong = {"Authorization": "Bearer wrong-key-0123456789"}
        for memory_id in (stored["id"], str(uuid.uuid4()), "abc"):
            for method, path in (("GET", f"/retrieve/{memory_id}"), ("PUT", f"/update/{memory_id}?data=x"),
                                 ("DELETE", f"/delete/{memory_id}")):
                answer = http.request(method, f"/mem0ai-api{path}", headers=wrong)
                assert (answer.status_code, answer.json()) == (200, UNAUTHORIZED), (method, path)
        assert http.get(f"/mem0ai-api/retrieve/{stored['id']}", headers=good).json()["data"][0]["event"] == "add"


UNAUTHORIZED = {"code": 401, "error": "Unauthorized_Error", "message": "Unauthorized"}


def test_the_seed_plugins_exact_requests_get_results(tmp_path: Path) -> None:
    """What tonori/dify-plugin-mem0ai sends, byte for byte as its tools build the requests (httpx, a Bearer
    key): today's revision (``""`` for blank optional ids and prompt, ``{}`` metadata and filters on store,
    ``limit: null`` and ``filters: null`` on search) and the older one (``GET /search`` whose httpx query
    string carries ``agent_id=&run_id=&limit=`` for the parameters left blank)."""
    with (memdock_client(fresh_backend_url("memory", tmp_path, "seed"), "--api-key", ADMIN) as server,
          server.as_another(base_url=f"{server.base_url}/mem0ai-api",
                            headers={"Authorization": f"Bearer {ADMIN}"}) as plugin):
        assert plugin.get("/authorized").json()["code"] == 0
        dify_user = "dify-user-3f2a"
        stored = plugin.post("/store", json={"data": "The user prefers window seats", "user_id": dify_user,
                                             "agent_id": "", "run_id": "", "metadata": {}, "filters": {},
                                             "prompt": ""})
        assert stored.status_code == 200 and stored.json()["data"][0]["event"] == "add"
        old_store = plugin.post("/store", json={"data": "The user flies to Osaka in May", "user_id": dify_user,
                                                "agent_id": None, "run_id": None, "metadata": None, "filters": None,
                                                "prompt": None})
        assert old_store.status_code == 200 and old_store.json()["code"] == 0

        search = plugin.post("/search", json={"query": "window seats", "user_id": dify_user, "agent_id": "",
                                              "run_id": "", "limit": None, "filters": None})
        assert search.status_code == 200
        assert search.json()["data"][0]["text"] == "The user prefers window seats"

        old_search = plugin.get("/search", params={"query": "Osaka", "user_id": dify_user, "agent_id": None,
                                                   "run_id": None, "limit": None})
        assert "agent_id=&run_id=&limit=" in str(old_search.request.url)
        assert old_search.status_code == 200
        assert old_search.json()["data"][0]["text"] == "The user flies to Osaka in May"
        float_limit = plugin.post("/search", json={"query": "Osaka", "user_id": dify_user, "limit": 1.0})
        assert float_limit.status_code == 200 and len(float_limit.json()["data"]) == 1


def test_reset_routes_work_when_allowed(tmp_path: Path) -> None:
    with memdock_client(fresh_backend_url("memory", tmp_path, "reset"), "--allow-reset") as http:
        http.post("/mem0ai-api/store", json={"data": "fact", "user_id": "a"})
        http.post("/mem0/memories", json={"messages": [{"role": "user", "content": "x"}], "user_id": "b"})
        assert http.delete("/mem0ai-api/reset-all").status_code == 204
        assert http.get("/mem0/memories", params={"user_id": "b"}).json() == {"results": []}
        http.post("/mem0/memories", json={"messages": [{"role": "user", "content": "y"}], "user_id": "b"})
        assert http.post("/mem0/reset").json() == {"message": "All memories reset"}
        assert http.get("/v1/count", params={"user_id": "b"}).json() == {"count": 0}


# -- auth in each dialect's own way ------------------------------------------------------------------------


def test_auth_answers_in_each_dialect(tmp_path: Path) -> None:
    with memdock_client(fresh_backend_url("memory", tmp_path, "auth"), "--api-key", ADMIN) as http:
        no_key = http.get("/mem0/memories", params={"user_id": "c"})
        assert no_key.status_code == 401 and no_key.headers["www-authenticate"] == "Bearer"
        assert "detail" in no_key.json()
        assert http.get("/mem0/memories", params={"user_id": "c"},
                        headers={"X-API-Key": "wrong-key-123456"}).status_code == 401
        assert http.get("/mem0/memories", params={"user_id": "c"},
                        headers={"X-API-Key": ADMIN}).status_code == 200
        assert http.get("/mem0/memories", params={"user_id": "c"},
                        headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 200

        legacy = http.get("/mem0ai-api/authorized", headers={"Authorization": "Bearer nope-nope-nope"})
        assert legacy.status_code == 200
        assert legacy.json() == {"code": 401, "error": "Unauthorized_Error", "message": "Unauthorized"}
        assert http.get("/mem0ai-api/authorized",
                        headers={"Authorization": f"Bearer {ADMIN}"}).json()["code"] == 0

        native = http.get("/v1/count", params={"user_id": "c"})
        assert native.status_code == 401 and native.json()["error"]["type"] == "Unauthenticated"
        assert http.get("/healthz").status_code == 200


# -- scope isolation across every route ----------------------------------------------------------------------


def test_u2_never_sees_u1s_memories_through_any_route(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps([{"name": "u1", "key": KEY_U1, "scopes": [{"user_id": "u1"}]},
                                {"name": "u2", "key": KEY_U2, "scopes": [{"user_id": "u2"}]}]))
    with (memdock_client(fresh_backend_url("memory", tmp_path, "leak"), "--keys-file", str(keys)) as server,
          server.as_another(headers={"Authorization": f"Bearer {KEY_U1}"}) as as_u1,
          server.as_another(headers={"Authorization": f"Bearer {KEY_U2}"}) as as_u2):
        secret = "u1 secret: the vault code is 1234"
        native = as_u1.post("/v1/memories", json={"text": secret, "user_id": "u1"})
        server = as_u1.post("/mem0/memories", json={"user_id": "u1",
                                                    "messages": [{"role": "user", "content": secret + "!"}]})
        legacy = as_u1.post("/mem0ai-api/store", json={"data": secret + "!!", "user_id": "u1"})
        ids = [native.json()["results"][0]["memory"]["id"], server.json()["results"][0]["id"],
               legacy.json()["data"][0]["id"]]
        as_u2.post("/v1/memories", json={"text": "u2 likes jazz", "user_id": "u2"})

        def leaked(response: httpx.Response) -> bool:
            return "vault code" in response.text

        scoped_reads = [
            as_u2.get("/v1/memories", params={"user_id": "u1"}),
            as_u2.post("/v1/search", json={"query": "vault code", "user_id": "u1"}),
            as_u2.get("/v1/count", params={"user_id": "u1"}),
            as_u2.post("/v1/search", json={"query": "vault code", "user_id": "u2"}),
            as_u2.get("/mem0/memories", params={"user_id": "u1"}),
            as_u2.post("/mem0/search", json={"query": "vault code", "filters": {"user_id": "u1"}}),
            as_u2.post("/mem0/search", json={"query": "vault code", "filters": {"user_id": "u2"}}),
            as_u2.get("/mem0ai-api/retrieve", params={"user_id": "u1"}),
            as_u2.post("/mem0ai-api/search", json={"query": "vault code", "user_id": "u1"}),
            as_u2.get("/mem0ai-api/search", params={"query": "vault code", "user_id": "u2"}),
            as_u2.post("/retrieval", json={"knowledge_id": "u1", "query": "vault code",
                                           "retrieval_setting": {"top_k": 5, "score_threshold": 0}}),
        ]
        for response in scoped_reads:
            assert not leaked(response), (response.request.method, response.request.url, response.text)
            assert response.status_code in (200, 403, 404), response.text
        for memory_id in ids:
            by_id = [
                as_u2.get(f"/v1/memories/{memory_id}"), as_u2.get(f"/v1/memories/{memory_id}/history"),
                as_u2.patch(f"/v1/memories/{memory_id}", json={"text": "overwritten"}),
                as_u2.delete(f"/v1/memories/{memory_id}"),
                as_u2.get(f"/mem0/memories/{memory_id}"), as_u2.get(f"/mem0/memories/{memory_id}/history"),
                as_u2.put(f"/mem0/memories/{memory_id}", json={"text": "overwritten"}),
                as_u2.delete(f"/mem0/memories/{memory_id}"),
                as_u2.get(f"/mem0ai-api/retrieve/{memory_id}"),
                as_u2.put(f"/mem0ai-api/update/{memory_id}", params={"data": "overwritten"}),
                as_u2.delete(f"/mem0ai-api/delete/{memory_id}"),
            ]
            for response in by_id:
                assert not leaked(response), (response.request.method, response.request.url, response.text)
                assert response.status_code in (200, 404) and "overwritten" not in response.text
        for response in (as_u2.delete("/v1/memories", params={"user_id": "u1"}),
                         as_u2.delete("/mem0/memories", params={"user_id": "u1"}),
                         as_u2.delete("/mem0ai-api/delete-all", params={"user_id": "u1"})):
            assert response.status_code == 403, response.text
        assert as_u1.get("/v1/count", params={"user_id": "u1"}).json() == {"count": 3}
        assert {m["text"] for m in as_u1.get("/v1/memories", params={"user_id": "u1"}).json()["items"]} == {
            secret, secret + "!", secret + "!!"}


def test_mount_points_are_configurable(tmp_path: Path) -> None:
    with memdock_client(fresh_backend_url("memory", tmp_path, "mounts"), "--mount", "mem0-server=/",
                        "--mount", "mem0ai-api=/legacy/mem0", "--mount", "native=off") as http:
        added = http.post("/memories", json={"user_id": "m", "messages": [{"role": "user", "content": "hi"}]})
        assert added.status_code == 200 and added.json()["results"][0]["memory"] == "hi"
        assert http.get("/legacy/mem0/retrieve", params={"user_id": "m"}).json()["data"]
        assert http.get("/mem0ai-api/authorized").status_code == 404
        assert http.get("/v1/count", params={"user_id": "m"}).status_code == 404
        assert http.get("/healthz").status_code == 200


@pytest.mark.parametrize("spec", ["mem0-server", "nope=/x", "native=v1", "native=/v1/", "mem0-server=/a b"])
def test_bad_mount_specs_are_refused_by_name(spec: str) -> None:
    from memdock.dify_adapter.server.config import DEFAULT_MOUNTS, parse_mount
    from memdock.errors import InvalidInput

    with pytest.raises(InvalidInput) as info:
        parse_mount(spec, dict(DEFAULT_MOUNTS))
    assert info.value.field == "mount"


def test_the_two_mem0_dialects_cannot_share_a_mount() -> None:
    from memdock.dify_adapter.server.app import create_app
    from memdock.dify_adapter.server.config import ServerConfig
    from memdock.errors import InvalidInput
    from memdock.memory import Memory

    with Memory.open("memory://?embedder=hash") as memory, pytest.raises(InvalidInput):
        create_app(memory, ServerConfig(mounts={"mem0-server": "", "mem0ai-api": ""}))
