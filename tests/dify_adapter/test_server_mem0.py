"""The mem0-compatible dialects of the memdock server app, in-process: request and response shapes of
mem0's server (as documented by mem0 and recorded from its real server) and of the mem0ai-api wrapper,
auth in each dialect's own way, and a scope-leak check across every route of every API."""

from __future__ import annotations

import json
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
    by_metadata = mem0.post("/search", json={"query": "x", "filters": {"user_id": user, "category": "food"}})
    assert [h["memory"] for h in by_metadata.json()["results"]] == ["My favourite food is sushi."]
    assert mem0.post("/search", json={"query": "anything"}).status_code == 400
    assert mem0.post("/search", json={"query": "anything", "filters": {}}).status_code == 400
    assert mem0.post("/search", json={"filters": {"user_id": user}}).status_code == 422

    updated = mem0.put(f"/memories/{memory_id}", json={"text": "My favourite food is ramen.",
                                                       "metadata": {"source": "edit"}})
    assert updated.json() == {"message": "Memory updated successfully!"}
    after = mem0.get(f"/memories/{memory_id}").json()
    assert (after["memory"], after["metadata"]) == ("My favourite food is ramen.", {"source": "edit"})
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


# -- mem0ai-api dialect ------------------------------------------------------------------------------------


def test_mem0ai_api_envelope_and_routes(api: httpx.Client) -> None:
    user = uid()
    assert api.get("/authorized").json() == {"code": 0, "data": None}
    stored = api.post("/store", json={"data": "I drink oolong tea", "user_id": user, "metadata": {"k": 1},
                                      "prompt": "ignored", "filters": None}).json()
    assert stored["code"] == 0
    [result] = stored["data"]["results"]
    memory_id = result["id"]
    assert (result["memory"], result["event"]) == ("I drink oolong tea", "ADD")
    api.post("/store", json={"data": "I cycle to work", "user_id": user})

    found = api.post("/search", json={"query": "oolong tea", "user_id": user, "limit": 1}).json()
    assert found["code"] == 0 and found["data"]["results"][0]["memory"] == "I drink oolong tea"
    old_style = api.get("/search", params={"query": "cycle", "user_id": user, "limit": 1}).json()
    assert old_style["data"]["results"][0]["memory"] == "I cycle to work"
    filtered = api.post("/search", json={"query": "x", "user_id": user, "filters": {"k": 1}}).json()
    assert [r["memory"] for r in filtered["data"]["results"]] == ["I drink oolong tea"]

    listed = api.get("/retrieve", params={"user_id": user}).json()["data"]["results"]
    assert [i["memory"] for i in listed] == ["I drink oolong tea", "I cycle to work"]
    assert len(api.get("/retrieve", params={"user_id": user, "limit": 1}).json()["data"]["results"]) == 1

    assert api.put(f"/update/{memory_id}", params={"data": "I drink green tea"}).json()["code"] == 0
    assert api.put(f"/update/{memory_id}", json={"metadata": {"k": 2}}).json()["code"] == 0
    history = api.get(f"/retrieve/{memory_id}").json()["data"]
    assert [h["event"] for h in history] == ["ADD", "UPDATE", "UPDATE"]
    assert history[1]["new_memory"] == "I drink green tea" and history[2]["new_metadata"] == {"k": 2}
    assert all(h["user_id"] == user for h in history)

    assert api.delete(f"/delete/{memory_id}").json() == {"code": 0, "data": None}
    again = api.delete(f"/delete/{memory_id}")
    assert again.status_code == 404 and again.json()["code"] == 404 and again.json()["error"] == "NotFoundError"
    assert api.get(f"/retrieve/{memory_id}").json()["data"][-1]["is_deleted"] is True
    assert api.get(f"/retrieve/{uuid.uuid4()}").json()["code"] == 404

    assert api.delete("/delete-all", params={"user_id": user}).json()["code"] == 0
    assert api.get("/retrieve", params={"user_id": user}).json()["data"]["results"] == []
    no_scope = api.delete("/delete-all")
    assert no_scope.status_code == 422 and no_scope.json()["code"] == 422
    assert api.post("/store", json={"user_id": user}).json()["code"] == 422
    refused = api.delete("/reset-all")
    assert refused.status_code == 403 and refused.json()["code"] == 403


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
               legacy.json()["data"]["results"][0]["id"]]
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
        assert http.get("/legacy/mem0/retrieve", params={"user_id": "m"}).json()["data"]["results"]
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
