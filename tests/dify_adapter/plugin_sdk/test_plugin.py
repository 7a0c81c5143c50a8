"""The Dify plugin with the real `dify_plugin` SDK: every tool through `from_credentials` on memory:// and
embedded Chroma, the provider's credential check, and the External Knowledge endpoint through werkzeug."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dify_plugin import Endpoint, Tool, ToolProvider
from dify_plugin.core.runtime import Session
from dify_plugin.errors.tool import ToolProviderCredentialValidationError
from werkzeug import Request
from werkzeug.test import EnvironBuilder

from memdock.dify_adapter.plugin_logic.endpoint import answer_retrieval
from memdock.formats.dify import LESS_THAN_AS_DIFY_SPELLS_IT
from tests.helpers.plugin_loading import endpoint_class, load_plugin, messages, provider_class, tool_classes


@pytest.fixture(scope="module")
def registration() -> Any:
    return load_plugin()


@pytest.fixture(scope="module")
def tools(registration: Any) -> dict[str, type[Tool]]:
    return tool_classes(registration)


@pytest.fixture(params=["memory", "chroma"])
def credentials(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    if request.param == "memory":
        return {"backend_url": f"memory://plugin-{uuid.uuid4().hex[:8]}?embedder=hash"}
    return {"backend_url": f"chroma://{tmp_path}/db?embedder=hash"}


def test_every_tool_works_through_from_credentials(tools: dict[str, type[Tool]], credentials: dict[str, Any]) -> None:
    user = {"user_id": "u1"}
    added = messages(tools["add_memory"], credentials, {**user, "text": "I like green tea",
                                                         "metadata": '{"topic": "drinks"}'})
    [result] = added["json"][0]["results"]
    memory_id = result["id"]
    assert (result["event"], result["memory"], result["metadata"]) == ("ADD", "I like green tea", {"topic": "drinks"})
    assert added["text"] == ["Stored 1 memory"]

    pair = messages(tools["add_memory"], credentials, {**user, "user": "I live in Lyon", "assistant": "Lyon is nice"})
    assert [(r["memory"], r["metadata"]["role"]) for r in pair["json"][0]["results"]] == [
        ("I live in Lyon", "user"), ("Lyon is nice", "assistant")]
    again = messages(tools["add_memory"], credentials, {**user, "text": "I like green tea"})
    assert again["json"][0]["results"][0]["event"] == "NONE" and "already known" in again["text"][0]

    found = messages(tools["search_memory"], credentials, {**user, "query": "green tea", "top_k": 2})
    assert found["json"][0]["results"][0]["memory"] == "I like green tea"
    assert len(found["json"][0]["results"]) == 2 and found["variables"]["memories"].startswith("- I like green tea")
    filtered = messages(tools["search_memory"], credentials, {**user, "query": "tea", "filters": '{"topic": "drinks"}'})
    assert [r["memory"] for r in filtered["json"][0]["results"]] == ["I like green tea"]

    listed = messages(tools["get_all_memories"], credentials, {**user, "top_k": 2})
    assert listed["json"][0]["count"] == 2 and listed["json"][0]["more"] is True
    assert messages(tools["get_all_memories"], credentials, user)["json"][0]["count"] == 3

    got = messages(tools["get_memory"], credentials, {"memory_id": memory_id})
    assert got["json"][0]["memory"] == "I like green tea" and got["text"] == ["I like green tea"]
    updated = messages(tools["update_memory"], credentials, {"memory_id": memory_id, "text": "I like oolong tea"})
    assert updated["json"][0]["event"] == "UPDATE"
    history = messages(tools["get_memory_history"], credentials, {"memory_id": memory_id})
    assert [e["event"] for e in history["json"][0]["history"]] == ["ADD", "UPDATE"]

    assert messages(tools["delete_memory"], credentials, {"memory_id": memory_id})["text"] == [f"Deleted {memory_id}"]
    assert messages(tools["get_memory"], credentials, {"memory_id": memory_id})["json"][0]["error"]["type"] == \
        "MemoryNotFound"
    assert messages(tools["delete_all_memories"], credentials, user)["json"] == [{"deleted": 2}]
    assert messages(tools["get_all_memories"], credentials, user)["json"][0]["count"] == 0


@pytest.mark.parametrize(("tool", "parameters", "field"), [
    ("add_memory", {"text": "no scope given"}, "scope"),
    ("add_memory", {"user_id": "u1", "text": "x", "metadata": "{not json"}, "metadata"),
    ("add_memory", {"user_id": "u1", "text": "x", "metadata": "[1, 2]"}, "metadata"),
    ("add_memory", {"user_id": "u1"}, "text"),
    ("add_memory", {"user_id": "u1", "text": "x", "user": "y"}, "text"),
    ("search_memory", {"user_id": "u1"}, "query"),
    ("search_memory", {"user_id": "u1", "query": "q", "filters": '{"k": {"regex": "x"}}'}, "k"),
    ("search_memory", {"user_id": "u1", "query": "q", "threshold": 3}, "threshold"),
    ("get_memory", {}, "memory_id"),
    ("delete_all_memories", {}, "scope"),
])
def test_bad_parameters_give_a_clear_error_naming_them(
    tools: dict[str, type[Tool]], tool: str, parameters: dict[str, Any], field: str
) -> None:
    out = messages(tools[tool], {"backend_url": "memory://errors?embedder=hash"}, parameters)
    assert out["json"][0]["error"]["field"] == field, out
    assert out["text"][0].startswith("Error:")


def test_the_default_scope_from_the_credentials_and_the_default_embedder(tools: dict[str, type[Tool]],
                                                                         tmp_path: Path) -> None:
    credentials = {"backend_url": f"chroma://{tmp_path}/minilm", "default_user_id": "dana"}
    messages(tools["add_memory"], credentials, {"text": "Dana's cat is called Miso"})
    messages(tools["add_memory"], credentials, {"text": "The office is on the third floor"})
    found = messages(tools["search_memory"], credentials, {"query": "What is the name of my pet?", "top_k": 1})
    [hit] = found["json"][0]["results"]
    assert hit["memory"] == "Dana's cat is called Miso" and hit["user_id"] == "dana"


def test_the_provider_validates_credentials_with_a_read(registration: Any, tmp_path: Path) -> None:
    provider: ToolProvider = provider_class(registration)()
    provider.validate_credentials({"backend_url": f"chroma://{tmp_path}/ok?embedder=hash"})
    for bad, says in (({"backend_url": "nosuch://x"}, "^Backend URL: no backend for scheme 'nosuch'"),
                      ({"backend_url": ""}, "^Backend URL: is required"),
                      ({"backend_url": "chroma+http://127.0.0.1:1?embedder=hash"}, "^Cannot reach the backend"),
                      ({"backend_url": "chroma:///tmp/x?embedder=hash&colection=x"}, "parameter 'colection'"),
                      ({"backend_url": "memory://?embedder=hash", "api_key": "k"}, "^API key: is not used"),
                      ({"backend_url": "memory://?embedder=hash", "default_user_id": "a\x00b"}, "^Default scope")):
        with pytest.raises(ToolProviderCredentialValidationError, match=says):
            provider.validate_credentials(bad)


# -- the External Knowledge endpoint -------------------------------------------------------------------

KEY = "endpoint-key-123"


@pytest.fixture
def endpoint(registration: Any) -> Endpoint:
    endpoint_type = endpoint_class(registration)
    instance: Endpoint = endpoint_type(Session.empty_session())
    return instance


@pytest.fixture
def settings(tools: dict[str, type[Tool]]) -> Iterator[dict[str, Any]]:
    url = f"memory://endpoint-{uuid.uuid4().hex[:8]}?embedder=hash"
    for text, metadata in (("alpha doc", {"category": "news", "views": 10, "published": 1768003200}),
                           ("beta doc", {"category": "sports"}),
                           ("gamma doc", {"category": "newsletter", "views": 5, "published": 1772323200})):
        messages(tools["add_memory"], {"backend_url": url}, {"user_id": "kb", "text": text,
                                                              "metadata": json.dumps(metadata)})
    yield {"backend_url": url, "api_key": KEY, "knowledge_default": "user_id"}


def call(endpoint: Endpoint, settings: dict[str, Any], body: Any, header: str | None = f"Bearer {KEY}") -> Any:
    headers = {} if header is None else {"Authorization": header}
    builder = EnvironBuilder(method="POST", path="/retrieval", headers=headers,
                             **({"json": body} if body is not None else {}))
    response = endpoint.invoke(Request(builder.get_environ()), {}, settings)
    return response.status_code, json.loads(response.get_data())


def body(knowledge_id: str = "kb", conditions: list[dict[str, Any]] | None = None, logical: str = "and") -> Any:
    request: dict[str, Any] = {"knowledge_id": knowledge_id, "query": "doc",
                               "retrieval_setting": {"top_k": 5, "score_threshold": 0.0}}
    if conditions is not None:
        request["metadata_condition"] = {"logical_operator": logical, "conditions": conditions}
    return request


ALL = {"alpha doc", "beta doc", "gamma doc"}
"""alpha: category news, views 10, published 2026-01-10; beta: sports (no views, no date); gamma: newsletter,
views 5, published 2026-03-01 (see the `settings` fixture)."""


@pytest.mark.parametrize(("conditions", "expected"), [
    (None, ALL),
    # text
    ([{"name": "category", "comparison_operator": "contains", "value": "news"}], {"alpha doc", "gamma doc"}),
    ([{"name": "category", "comparison_operator": "not contains", "value": "news"}], {"beta doc"}),
    ([{"name": "category", "comparison_operator": "start with", "value": "sp"}], {"beta doc"}),
    ([{"name": "category", "comparison_operator": "end with", "value": "letter"}], {"gamma doc"}),
    # equality
    ([{"name": "category", "comparison_operator": "is", "value": "news"}], {"alpha doc"}),
    ([{"name": "category", "comparison_operator": "is not", "value": "news"}], {"beta doc", "gamma doc"}),
    # emptiness
    ([{"name": "views", "comparison_operator": "empty"}], {"beta doc"}),
    ([{"name": "views", "comparison_operator": "not empty"}], {"alpha doc", "gamma doc"}),
    # membership
    ([{"name": "category", "comparison_operator": "in", "value": ["news", "sports"]}], {"alpha doc", "beta doc"}),
    ([{"name": "category", "comparison_operator": "not in", "value": ["news", "sports"]}], {"gamma doc"}),
    # numbers
    ([{"name": "views", "comparison_operator": "=", "value": 10}], {"alpha doc"}),
    ([{"name": "views", "comparison_operator": "≠", "value": 10}], {"gamma doc"}),  # beta has no views
    ([{"name": "views", "comparison_operator": ">", "value": 5}], {"alpha doc"}),
    ([{"name": "views", "comparison_operator": "<", "value": 10}], {"gamma doc"}),
    ([{"name": "views", "comparison_operator": LESS_THAN_AS_DIFY_SPELLS_IT, "value": 10}], {"gamma doc"}),
    ([{"name": "views", "comparison_operator": "≥", "value": 6}], {"alpha doc"}),
    ([{"name": "views", "comparison_operator": "≤", "value": "5"}], {"gamma doc"}),
    # time (Unix seconds, or ISO 8601)
    ([{"name": "published", "comparison_operator": "before", "value": "2026-02-01T00:00:00Z"}], {"alpha doc"}),
    ([{"name": "published", "comparison_operator": "after", "value": 1767225600}], {"alpha doc", "gamma doc"}),
    # two conditions (logical_operator "and")
    ([{"name": "category", "comparison_operator": "contains", "value": "news"},
      {"name": "views", "comparison_operator": ">", "value": 6}], {"alpha doc"}),
])
def test_the_endpoint_answers_retrievals_with_each_operator_class(
    endpoint: Endpoint, settings: dict[str, Any], conditions: Any, expected: set[str]
) -> None:
    status, answer = call(endpoint, settings, body(conditions=conditions))
    assert status == 200, answer
    assert {r["content"] for r in answer["records"]} == expected
    assert all(isinstance(r["metadata"], dict) and 0 <= r["score"] <= 1 and r["title"] for r in answer["records"])


def test_the_endpoint_joins_conditions_with_or(endpoint: Endpoint, settings: dict[str, Any]) -> None:
    either = [{"name": "category", "comparison_operator": "is", "value": "sports"},
              {"name": "views", "comparison_operator": "<", "value": 6}]
    status, answer = call(endpoint, settings, body(conditions=either, logical="or"))
    assert status == 200 and {r["content"] for r in answer["records"]} == {"beta doc", "gamma doc"}
    status, answer = call(endpoint, settings, body(conditions=[{"name": "views", "comparison_operator": "~",
                                                                "value": 1}]))
    assert status == 400 and "comparison_operator" in answer["error_msg"]


def test_the_endpoint_refuses_like_dify_expects(endpoint: Endpoint, settings: dict[str, Any]) -> None:
    assert call(endpoint, settings, body(), header="Bearer wrong-key") == (
        403, {"error_code": 1002, "error_msg": "Authorization failed"})
    assert call(endpoint, settings, body(), header="Basic abc")[1]["error_code"] == 1001
    assert call(endpoint, settings, body(), header=None)[1]["error_code"] == 1001
    status, unknown = call(endpoint, {**settings, "knowledge_default": "none"}, body(knowledge_id="nobody-here"))
    assert (status, unknown["error_code"]) == (404, 2001)
    for unusable in ("", "short-key"):  # no key, or one under 16 characters: every call is refused
        status, answer = call(endpoint, {**settings, "api_key": unusable}, body(), header=f"Bearer {unusable}")
        assert (status, answer["error_code"]) == (403, 1002), answer


def test_a_knowledge_id_with_no_memories_answers_no_records(endpoint: Endpoint, settings: dict[str, Any]) -> None:
    """A new user is no error: Dify 1.10.1+ raises on any non-200."""
    assert call(endpoint, settings, body(knowledge_id="a-brand-new-user")) == (200, {"records": []})


def test_the_endpoint_takes_difys_nulls_and_marks_each_record(endpoint: Endpoint, settings: dict[str, Any]) -> None:
    request = body(conditions=[{"name": "published", "comparison_operator": "after", "value": 1767225600},
                               {"name": "views", "comparison_operator": "is", "value": None}])
    request["retrieval_setting"] = {"top_k": None, "score_threshold": None}
    request["metadata_condition"]["logical_operator"] = None
    status, answer = call(endpoint, settings, request)
    assert status == 200 and {r["content"] for r in answer["records"]} == {"alpha doc", "gamma doc"}
    assert len({r["metadata"]["document_id"] for r in answer["records"]}) == 2
    request["metadata_condition"] = {"logical_operator": None, "conditions": None}
    assert {r["content"] for r in call(endpoint, settings, request)[1]["records"]} == ALL


def test_the_endpoint_logs_each_refusal_with_a_request_id(settings: dict[str, Any],
                                                         caplog: pytest.LogCaptureFixture) -> None:
    odd = json.dumps(body(conditions=[{"name": "views", "comparison_operator": "~", "value": 1}])).encode()
    with caplog.at_level(logging.WARNING, logger="memdock.plugin.retrieval"):
        assert answer_retrieval(settings, f"Bearer {KEY}", odd, request_id="req-7")[0] == 400
        assert answer_retrieval(settings, "Bearer wrong-key", b"")[0] == 403
    assert "request_id=req-7 status=400 error_code=400" in caplog.text
    assert "status=403 error_code=1002" in caplog.text and caplog.text.count("request_id=") == 2
    assert KEY not in caplog.text and "alpha doc" not in caplog.text


def test_the_registration_check_with_an_empty_body(endpoint: Endpoint, settings: dict[str, Any]) -> None:
    good, _ = call(endpoint, settings, None)
    assert good == 400 and good not in (403, 404, 502)
    bad, answer = call(endpoint, settings, None, header="Bearer wrong-key")
    assert (bad, answer["error_code"]) == (403, 1002)


def test_the_endpoint_knowledge_map_setting(endpoint: Endpoint, settings: dict[str, Any]) -> None:
    mapped = {**settings, "knowledge_map": json.dumps({"news-kb": {"scope": {"user_id": "kb"},
                                                                   "filter": {"category": "news"}}})}
    status, answer = call(endpoint, mapped, body(knowledge_id="news-kb"))
    assert status == 200 and [r["content"] for r in answer["records"]] == ["alpha doc"]
    broken = {**settings, "knowledge_map": "{oops"}
    assert call(endpoint, broken, body())[0] == 503
