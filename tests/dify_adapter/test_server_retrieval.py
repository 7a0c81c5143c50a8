"""Dify's External Knowledge API (POST /retrieval) of the memdock server app, in-process: auth codes, the
registration check, knowledge ids (an empty one answers no records; 2001 only for ids the map or the key
does not allow), every metadata_condition operator with Dify's own knowledge-base semantics, nulls, the
``/retrieval/`` spelling, record shape. Dify's client against a real socket: test_dify_client.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.memdock_app import MemdockTestClient, memdock_client
from tests.helpers.memdock_server import fresh_backend_url

GOOD_KEY = "good-key-0123456789abcdef"
KB_KEY = "kb-only-key-0123456789abcd"
DOCS: list[tuple[str, dict[str, Any]]] = [
    ("alpha doc", {"category": "news", "title": "Alpha", "views": 10, "published": 1700000000, "tags": ["x"]}),
    ("beta doc", {"category": "sports", "views": 25, "published": 1750000000, "author": ""}),
    ("gamma doc", {"category": "newsletter", "views": 5, "published": 1600000000, "author": "Ann"}),
    ("delta doc", {}),
]


@pytest.fixture(scope="module", params=["memory", "chroma"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MemdockTestClient]:
    folder = tmp_path_factory.mktemp("retrieval")
    (folder / "knowledge.json").write_text(json.dumps({
        "support-kb": {"scope": {"agent_id": "support"}, "filter": {"lang": "en"}},
        "ops-by-vector": {"scope": {"user_id": "kb-ops"}, "mode": "vector"},
        "ops-by-keyword": {"scope": {"user_id": "kb-ops"}, "mode": "keyword"},
    }))
    (folder / "keys.json").write_text(json.dumps([{"name": "kb", "key": KB_KEY, "knowledge_ids": ["support-kb"]}]))
    url = fresh_backend_url(request.param, folder, "retrieval")
    with memdock_client(url, "--api-key", GOOD_KEY, "--keys-file", str(folder / "keys.json"),
                        "--knowledge-map", str(folder / "knowledge.json")) as server:
        with server.as_another(headers={"X-API-Key": GOOD_KEY}) as http:
            for text, metadata in DOCS:
                assert http.post("/v1/memories", json={"text": text, "user_id": "kb-ops", "metadata": metadata})\
                    .status_code == 201
            for text, lang in (("reset your password from the login page", "en"),
                               ("réinitialisez votre mot de passe", "fr")):
                http.post("/v1/memories", json={"text": text, "agent_id": "support", "metadata": {"lang": lang}})
        yield server


def retrieve(server: httpx.Client, body: Any, key: str | None = GOOD_KEY,
             header: str | None = None) -> httpx.Response:
    headers = {"Authorization": header if header is not None else f"Bearer {key}"}
    if body is None:
        return server.post("/retrieval", headers=headers)
    return server.post("/retrieval", headers=headers, json=body)


def request(knowledge_id: str = "kb-ops", conditions: list[dict[str, Any]] | None = None,
            logical: str = "and", top_k: int = 10, threshold: float = 0.0, query: str = "doc") -> dict[str, Any]:
    body: dict[str, Any] = {"knowledge_id": knowledge_id, "query": query,
                            "retrieval_setting": {"top_k": top_k, "score_threshold": threshold}}
    if conditions is not None:
        body["metadata_condition"] = {"logical_operator": logical, "conditions": conditions}
    return body


def contents(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {r["content"] for r in response.json()["records"]}


def test_records_have_content_score_title_and_an_object_metadata(server: MemdockTestClient) -> None:
    response = retrieve(server, request(top_k=4, query="alpha doc"))
    records = response.json()["records"]
    assert response.status_code == 200 and len(records) == 4
    for record in records:
        assert set(record) == {"content", "score", "title", "metadata"}
        assert isinstance(record["metadata"], dict) and 0.0 <= record["score"] <= 1.0
    assert records[0]["content"] == "alpha doc" and records[0]["title"] == "Alpha"
    assert records[0]["metadata"]["category"] == "news" and records[0]["metadata"]["memory_id"]
    assert next(r for r in records if r["content"] == "delta doc")["metadata"]["memory_id"]
    assert [r["score"] for r in records] == sorted((r["score"] for r in records), reverse=True)


def test_top_k_and_score_threshold(server: MemdockTestClient) -> None:
    assert len(retrieve(server, request(top_k=2)).json()["records"]) == 2
    ranked = retrieve(server, request(query="alpha doc")).json()["records"]
    assert ranked[0]["content"] == "alpha doc" and ranked[1]["score"] < ranked[0]["score"]
    strict = retrieve(server, request(query="alpha doc", threshold=ranked[0]["score"])).json()["records"]
    assert [r["content"] for r in strict] == ["alpha doc"]


def test_a_knowledge_id_can_pin_the_search_mode(server: MemdockTestClient) -> None:
    """The knowledge map's ``mode``: in vector mode an identical text scores 1 (the cosine), in keyword mode
    only texts holding a query word are records."""
    by_vector = retrieve(server, request("ops-by-vector", query="alpha doc", threshold=0.99)).json()["records"]
    assert [(r["content"], round(r["score"], 6)) for r in by_vector] == [("alpha doc", 1.0)]
    answer = retrieve(server, request("ops-by-keyword", query="gamma"))
    if answer.status_code == 200:  # a backend with keyword search
        [record] = answer.json()["records"]
        assert record["content"] == "gamma doc" and 0.0 < record["score"] < 1.0
    else:  # a vector-only backend refuses the mode: Dify sees its bad-request answer, not records
        assert answer.status_code == 400 and "keyword search" in answer.json()["error_msg"], answer.text


def test_metadata_condition_absent_or_null_means_no_filter(server: MemdockTestClient) -> None:
    body = request()
    body["metadata_condition"] = None
    assert len(contents(retrieve(server, body))) == 4


OPERATORS: list[tuple[str, str, Any, set[str]]] = [
    ("category", "contains", "news", {"alpha doc", "gamma doc"}),
    ("category", "not contains", "news", {"beta doc"}),
    ("category", "start with", "sp", {"beta doc"}),
    ("category", "end with", "letter", {"gamma doc"}),
    ("category", "is", "news", {"alpha doc"}),
    ("category", "is not", "news", {"beta doc", "gamma doc"}),
    ("author", "empty", None, {"alpha doc", "delta doc"}),
    ("author", "not empty", None, {"beta doc", "gamma doc"}),
    ("category", "in", ["news", "sports"], {"alpha doc", "beta doc"}),
    ("category", "in", "news, sports", {"alpha doc", "beta doc"}),
    ("category", "not in", ["news", "sports"], {"gamma doc"}),
    ("views", "=", 10, {"alpha doc"}),
    ("views", "=", "10", {"alpha doc"}),
    ("views", "is", "25", {"beta doc"}),
    ("views", "in", ["5", "25"], {"beta doc", "gamma doc"}),
    ("views", "≠", 10, {"beta doc", "gamma doc"}),
    ("views", ">", 9, {"alpha doc", "beta doc"}),
    ("views", "<", 10, {"gamma doc"}),
    ("views", "\u2039", 10, {"gamma doc"}),
    ("views", "≥", 10, {"alpha doc", "beta doc"}),
    ("views", "≤", 10, {"alpha doc", "gamma doc"}),
    ("published", "before", 1720000000, {"alpha doc", "gamma doc"}),
    ("published", "after", "2025-01-01T00:00:00Z", {"beta doc"}),
    ("tags", "contains", "x", {"alpha doc"}),
]


@pytest.mark.parametrize(("name", "op", "value", "expected"), OPERATORS,
                         ids=[f"{o[1]}-{o[2]}" for o in OPERATORS])
def test_each_comparison_operator(
    server: MemdockTestClient, name: str, op: str, value: Any, expected: set[str]
) -> None:
    condition: dict[str, Any] = {"name": name, "comparison_operator": op}
    if value is not None:
        condition["value"] = value
    assert contents(retrieve(server, request(conditions=[condition]))) == expected


def test_logical_or_and_list_of_names(server: MemdockTestClient) -> None:
    either = [{"name": "category", "comparison_operator": "is", "value": "news"},
              {"name": "category", "comparison_operator": "is", "value": "sports"}]
    assert contents(retrieve(server, request(conditions=either, logical="or"))) == {"alpha doc", "beta doc"}
    assert contents(retrieve(server, request(conditions=either, logical="and"))) == set()
    any_name = [{"name": ["author", "title"], "comparison_operator": "not empty"}]
    assert contents(retrieve(server, request(conditions=any_name))) == {"alpha doc", "beta doc", "gamma doc"}
    with_time = [{"name": "category", "comparison_operator": "is", "value": "sports"},
                 {"name": "published", "comparison_operator": "before", "value": 1650000000}]
    assert contents(retrieve(server, request(conditions=with_time, logical="or"))) == {"beta doc", "gamma doc"}
    assert contents(retrieve(server, request(conditions=with_time, logical="and"))) == set()


def test_nulls_take_difys_defaults(server: MemdockTestClient) -> None:
    body = request(conditions=[{"name": "category", "comparison_operator": "is", "value": None},
                               {"name": "views", "comparison_operator": ">", "value": 9}], logical="or")
    body["retrieval_setting"] = {"top_k": None, "score_threshold": None}
    body["metadata_condition"]["logical_operator"] = None
    assert contents(retrieve(server, body)) == {"alpha doc", "beta doc"}  # the null-valued condition is ignored
    body["metadata_condition"] = {"logical_operator": None, "conditions": None}
    assert len(retrieve(server, body).json()["records"]) == 4  # Dify's default top_k
    body["retrieval_setting"] = None
    assert len(contents(retrieve(server, body))) == 4


def test_a_trailing_slash_is_served(server: MemdockTestClient) -> None:
    response = server.post("/retrieval/", headers={"Authorization": f"Bearer {GOOD_KEY}"},
                           json=request(query="alpha doc", top_k=1))
    assert [r["content"] for r in response.json()["records"]] == ["alpha doc"]
    assert server.post("/retrieval/", headers={"Authorization": f"Bearer {GOOD_KEY}"}).status_code == 400


def test_every_record_carries_a_document_id_and_its_own_metadata(server: MemdockTestClient) -> None:
    records = retrieve(server, request(top_k=4)).json()["records"]
    ids = [r["metadata"]["document_id"] for r in records]
    assert len(set(ids)) == 4 and all(r["metadata"]["memory_id"] == r["metadata"]["document_id"] for r in records)
    again = {r["content"]: r["metadata"]["document_id"] for r in retrieve(server, request(top_k=4)).json()["records"]}
    assert {r["content"]: r["metadata"]["document_id"] for r in records} == again
    beta = next(r for r in records if r["content"] == "beta doc")["metadata"]
    assert (beta["category"], beta["views"], beta["author"]) == ("sports", 25, "")


def test_an_unknown_operator_is_a_400_naming_the_condition(server: MemdockTestClient) -> None:
    response = retrieve(server, request(conditions=[{"name": "views", "comparison_operator": "~=", "value": 1}]))
    assert response.status_code == 400
    assert "conditions[0]" in response.json()["error_msg"]


def test_a_mapped_knowledge_id_selects_its_scope_and_default_filter(server: MemdockTestClient) -> None:
    found = contents(retrieve(server, request(knowledge_id="support-kb", query="password")))
    assert found == {"reset your password from the login page"}


def test_a_knowledge_id_with_no_memories_answers_no_records(server: MemdockTestClient) -> None:
    response = retrieve(server, request(knowledge_id="a-brand-new-user"))
    assert (response.status_code, response.json()) == (200, {"records": []})


def test_2001_only_for_an_id_the_knowledge_map_does_not_allow(tmp_path: Path) -> None:
    (tmp_path / "knowledge.json").write_text(json.dumps({"kb": {"scope": {"user_id": "u1"}}}))
    with memdock_client(fresh_backend_url("memory", tmp_path, "mapped-only"), "--knowledge-default", "none",
                        "--knowledge-map", str(tmp_path / "knowledge.json")) as server:
        assert server.post("/retrieval", json=request(knowledge_id="kb")).json() == {"records": []}
        response = server.post("/retrieval", json=request(knowledge_id="u1"))
        assert response.status_code == 404 and response.json()["error_code"] == 2001


def test_bad_key_is_1002_and_malformed_header_is_1001(server: MemdockTestClient) -> None:
    bad = retrieve(server, request(), key="wrong-key-0123456789abcdef")
    assert bad.status_code == 403 and bad.json()["error_code"] == 1002
    for header in ("", "Basic abc", "Bearer", "Token abc"):
        malformed = retrieve(server, request(), header=header)
        assert malformed.status_code == 403 and malformed.json()["error_code"] == 1001, header
    assert "wrong-key" not in server.server_log()


def test_a_key_limited_to_knowledge_ids_sees_only_those(server: MemdockTestClient) -> None:
    assert contents(retrieve(server, request(knowledge_id="support-kb", query="password"), key=KB_KEY))
    other = retrieve(server, request(knowledge_id="kb-ops"), key=KB_KEY)
    assert other.status_code == 404 and other.json()["error_code"] == 2001


def test_registration_check_with_an_empty_body(server: MemdockTestClient) -> None:
    """Dify POSTs {base}/retrieval with no body when the user saves the endpoint; it fails on 403/404/502."""
    good = retrieve(server, None)
    assert good.status_code not in (403, 404, 502) and good.status_code == 400
    bad = retrieve(server, None, key="wrong-key-0123456789abcdef")
    assert bad.status_code == 403 and bad.json()["error_code"] == 1002


def test_malformed_bodies_are_400(server: MemdockTestClient) -> None:
    assert retrieve(server, {"knowledge_id": "kb-ops"}).status_code == 400
    wrong = request()
    wrong["retrieval_setting"]["top_k"] = 0
    assert retrieve(server, wrong).status_code == 400
    raw = server.post("/retrieval", headers={"Authorization": f"Bearer {GOOD_KEY}"}, content=b"{nope")
    assert raw.status_code == 400 and raw.json()["error_code"] == 400


def test_errors_are_logged_server_side_with_the_request_id(server: MemdockTestClient) -> None:
    response = server.post("/retrieval", headers={"Authorization": f"Bearer {KB_KEY}", "X-Request-ID": "req-2001"},
                           json=request(knowledge_id="kb-ops", query="secret query words"))
    assert response.status_code == 404
    odd = request(conditions=[{"name": "views", "comparison_operator": "~=", "value": 1}])
    assert server.post("/retrieval", headers={"Authorization": f"Bearer {GOOD_KEY}", "X-Request-ID": "req-400"},
                       json=odd).status_code == 400
    log = server.server_log()
    assert "request_id=req-2001 status=404 error_code=2001" in log
    assert "request_id=req-400 status=400 error_code=400" in log
    assert "secret query words" not in log and KB_KEY not in log and "alpha doc" not in log


def test_open_server_answers_retrieval_without_a_key(tmp_path: Path) -> None:
    with memdock_client(fresh_backend_url("memory", tmp_path, "open")) as server:
        server.post("/v1/memories", json={"text": "open fact", "user_id": "kb"})
        response = server.post("/retrieval", json=request(knowledge_id="kb", query="open fact"))
        assert contents(response) == {"open fact"}
