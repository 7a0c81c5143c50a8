"""memdock's External Knowledge API as Dify's own client sees it, over a real 127.0.0.1 socket.

`DifyClientStandIn` is a stand-in for Dify's External Knowledge client (api 1.10.1 and later, checked
against 1.13.2), written from what that client does, not from its code:

- registration (saving the endpoint): ``POST {endpoint}/retrieval`` with only ``Authorization: Bearer KEY``
  and no body; 502, 404 and 403 refuse the endpoint, any other status accepts it;
- retrieval: ``POST {endpoint}/retrieval`` with ``Content-Type: application/json`` and the Bearer key, the
  body serialised by hand (``json.dumps``), redirects followed, 5 s timeouts; ``score_threshold`` is 0.0
  unless the user enabled the threshold; ``metadata_condition`` is always present, null when unused;
- the answer: status != 200 raises ``ValueError(response.text)`` (hit testing shows it, single retrieval
  fails, multiple retrieval drops the knowledge base); on 200 the records are ``.json().get("records", [])``;
  each becomes a document whose metadata Dify then overwrites with ``score``, ``title``, ``dataset_id`` and
  ``dataset_name``; a citation is keyed by ``metadata.document_id``, else the title.

(Dify's transport also retries 429/500/502/503/504 three times; memdock answers none of those here.)
The expectations are what Dify's own knowledge bases answer for the same metadata (see
`memdock.formats.dify`), with dates stored both as epoch seconds and as ISO-8601 text.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from memdock.formats.dify import LESS_THAN_AS_DIFY_SPELLS_IT
from tests.helpers.memdock_app import captured_server_log
from tests.helpers.memdock_server import fresh_backend_url, memdock_app_server

KEY = "dify-client-key-0123456789"
USER = "kb-dify"


@dataclass
class Document:
    """A retrieved record as Dify holds it."""

    content: str
    metadata: dict[str, Any]

    def citation(self) -> str:
        """What Dify groups citations by."""
        return str(self.metadata.get("document_id") or self.metadata.get("title"))


class DifyClientStandIn:
    """A stand-in for Dify's External Knowledge API client (see the module docstring)."""

    def __init__(self, endpoint: str, api_key: str) -> None:
        self.endpoint = endpoint
        self.api_key = api_key
        self.http = httpx.Client(timeout=httpx.Timeout(5.0))

    def close(self) -> None:
        self.http.close()

    def check_endpoint(self) -> int:
        """Dify's registration check; the status when accepted, `ValueError` when refused."""
        response = self.http.post(f"{self.endpoint}/retrieval", headers={"Authorization": f"Bearer {self.api_key}"})
        if response.status_code in (502, 404, 403):
            raise ValueError(f"endpoint refused with {response.status_code}: {response.text}")
        return response.status_code

    def retrieve(self, knowledge_id: str, query: str, *, top_k: int | None = 10, threshold: float | None = None,
                 metadata_condition: dict[str, Any] | None = None) -> list[Document]:
        """One retrieval as Dify 1.10.1+ makes and reads it; `ValueError(response.text)` on any non-200."""
        body = {
            "retrieval_setting": {"top_k": top_k, "score_threshold": 0.0 if threshold is None else threshold},
            "query": query,
            "knowledge_id": knowledge_id,
            "metadata_condition": metadata_condition,
        }
        response = self.http.post(
            f"{self.endpoint}/retrieval", content=json.dumps(body), follow_redirects=True,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.api_key}"},
        )
        if response.status_code != 200:
            raise ValueError(response.text)
        documents = []
        for record in response.json().get("records", []):
            metadata = record.get("metadata")
            if metadata is None:
                continue
            metadata.update(score=record.get("score"), title=record.get("title"), dataset_id="ds-1",
                            dataset_name="memdock")
            documents.append(Document(record.get("content"), metadata))
        return documents


MEMORIES: list[tuple[str, dict[str, Any]]] = [
    ("alpha note", {"title": "Note", "category": "news", "rating": 4, "published": 1700000000}),
    ("beta note", {"title": "Note", "category": "sports", "rating": "5", "published": "2025-03-01T10:00:00Z",
                   "author": ""}),
    ("gamma note", {"title": "Note", "category": "newsletter", "rating": 2.5, "published": "2024-06-15",
                    "author": "Ann"}),
    ("delta note", {"title": "Note", "rating": "high", "published": "soon"}),
    ("epsilon note", {"title": "Note"}),
    ("zeta note", {"title": "Note", "rating": {"stars": 3}, "published": [1, 2]}),
]
"""Dates as epoch seconds (alpha: 2023-11-14T22:13:20Z), ISO date-time (beta) and ISO date (gamma); values a
comparison cannot read (delta's "high" and "soon", zeta's object and list); fields missing (epsilon)."""
ALL = {text for text, _ in MEMORIES}
JUNE_10_2024 = 1718000000
BETA_PUBLISHED = 1740823200  # 2025-03-01T10:00:00Z


@pytest.fixture(scope="module", params=["memory", "chroma", "pgvector"])
def base_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real server on 127.0.0.1 over each backend that filters differently: in Python (memory), by
    Chroma's where clause plus Python, and in SQL (pgvector, on a table of its own)."""
    if request.param == "pgvector":
        url = f"{request.getfixturevalue('pg_url')}&embedder=hash&table=dify_client_{uuid.uuid4().hex[:8]}"
    else:
        url = fresh_backend_url(request.param, tmp_path_factory.mktemp("dify-client"), "dify-client")
    with memdock_app_server(url, "--api-key", KEY) as base:
        with httpx.Client(base_url=base, headers={"X-API-Key": KEY}) as http:
            for text, metadata in MEMORIES:
                response = http.post("/v1/memories", json={"text": text, "user_id": USER, "metadata": metadata})
                assert response.status_code == 201, response.text
        yield base


@pytest.fixture
def dify(base_url: str) -> Iterator[DifyClientStandIn]:
    client = DifyClientStandIn(base_url, KEY)
    yield client
    client.close()


def where(name: str, op: str, value: Any = None, logical: str | None = "and") -> dict[str, Any]:
    return {"logical_operator": logical, "conditions": [{"name": name, "comparison_operator": op, "value": value}]}


def found(documents: list[Document]) -> set[str]:
    return {d.content for d in documents}


def test_the_registration_check_accepts_a_good_key_and_refuses_a_bad_one(base_url: str) -> None:
    good = DifyClientStandIn(base_url, KEY)
    bad = DifyClientStandIn(base_url, "not-the-key-0123456789")
    try:
        assert good.check_endpoint() == 400
        with pytest.raises(ValueError, match="403"):
            bad.check_endpoint()
    finally:
        good.close()
        bad.close()


def test_an_endpoint_registered_with_a_trailing_slash_works(base_url: str) -> None:
    """``http://host:port/`` makes Dify call ``//retrieval``, for the check and for every retrieval."""
    slashed = DifyClientStandIn(f"{base_url}/", KEY)
    try:
        assert slashed.check_endpoint() == 400
        assert found(slashed.retrieve(USER, "alpha note", top_k=1)) == {"alpha note"}
    finally:
        slashed.close()


def test_a_brand_new_user_gets_no_records_and_no_error(dify: DifyClientStandIn) -> None:
    assert dify.retrieve("someone-who-never-wrote", "anything") == []
    assert dify.retrieve("someone-who-never-wrote", "anything", metadata_condition=where("rating", ">", 1)) == []


STRING = [
    ("is", "news", {"alpha note"}),
    ("is not", "news", {"beta note", "gamma note"}),
    ("contains", "news", {"alpha note", "gamma note"}),
    ("not contains", "news", {"beta note"}),
    ("start with", "sp", {"beta note"}),
    ("end with", "letter", {"gamma note"}),
    ("empty", None, {"delta note", "epsilon note", "zeta note"}),
    ("not empty", None, {"alpha note", "beta note", "gamma note"}),
    ("in", ["news", "sports"], {"alpha note", "beta note"}),
    ("not in", ["news", "sports"], {"gamma note"}),
]
NUMBER = [
    ("=", 4, {"alpha note"}),
    ("≠", 4, {"beta note", "gamma note", "delta note", "zeta note"}),
    (">", 3, {"alpha note", "beta note"}),
    (LESS_THAN_AS_DIFY_SPELLS_IT, 3, {"gamma note"}),
    ("<", 3, {"gamma note"}),
    ("≥", 4, {"alpha note", "beta note"}),
    ("≤", 4, {"alpha note", "gamma note"}),
    ("empty", None, {"epsilon note"}),
    ("not empty", None, ALL - {"epsilon note"}),
]
TIME = [
    ("is", BETA_PUBLISHED, {"beta note"}),
    ("is", 1700000000, {"alpha note"}),
    ("before", JUNE_10_2024, {"alpha note"}),
    ("after", JUNE_10_2024, {"beta note", "gamma note"}),
    ("empty", None, {"epsilon note"}),
    ("not empty", None, ALL - {"epsilon note"}),
]
UI_OPERATORS = ([("category", *case) for case in STRING] + [("rating", *case) for case in NUMBER]
                + [("published", *case) for case in TIME])


@pytest.mark.parametrize(("name", "op", "value", "expected"), UI_OPERATORS,
                         ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in UI_OPERATORS])
def test_every_ui_operator_answers_what_difys_own_knowledge_base_answers(
    dify: DifyClientStandIn, name: str, op: str, value: Any, expected: set[str]
) -> None:
    assert found(dify.retrieve(USER, "note", metadata_condition=where(name, op, value))) == expected


def test_a_string_value_against_a_number_field_compares_as_text(dify: DifyClientStandIn) -> None:
    assert found(dify.retrieve(USER, "note", metadata_condition=where("rating", "is", "4"))) == {"alpha note"}
    assert found(dify.retrieve(USER, "note", metadata_condition=where("rating", "is", "5"))) == {"beta note"}
    assert found(dify.retrieve(USER, "note", metadata_condition=where("rating", "in", "4, 2.5"))) == {
        "alpha note", "gamma note"}


def test_the_null_cases(dify: DifyClientStandIn) -> None:
    assert len(dify.retrieve(USER, "note", top_k=None)) == 4  # Dify's default top_k
    assert found(dify.retrieve(USER, "note", metadata_condition=None)) == ALL
    nulls = {"logical_operator": None, "conditions": None}
    assert found(dify.retrieve(USER, "note", metadata_condition=nulls)) == ALL
    ignored = {"logical_operator": None, "conditions": [
        {"name": "category", "comparison_operator": "is", "value": None},
        {"name": "category", "comparison_operator": "start with", "value": "sp"}]}
    assert found(dify.retrieve(USER, "note", metadata_condition=ignored)) == {"beta note"}
    response = httpx.post(f"{dify.endpoint}/retrieval", headers={"Authorization": f"Bearer {KEY}"}, json={
        "knowledge_id": USER, "query": "note", "retrieval_setting": {"top_k": None, "score_threshold": None},
        "metadata_condition": None})
    assert response.status_code == 200 and len(response.json()["records"]) == 4


def test_conditions_joined_by_or_and_by_and(dify: DifyClientStandIn) -> None:
    either = {"logical_operator": "or", "conditions": [
        {"name": "category", "comparison_operator": "is", "value": "sports"},
        {"name": "published", "comparison_operator": "before", "value": JUNE_10_2024}]}
    assert found(dify.retrieve(USER, "note", metadata_condition=either)) == {"alpha note", "beta note"}
    both = {"logical_operator": "and", "conditions": [
        {"name": "category", "comparison_operator": "contains", "value": "news"},
        {"name": "published", "comparison_operator": "after", "value": JUNE_10_2024}]}
    assert found(dify.retrieve(USER, "note", metadata_condition=both)) == {"gamma note"}


def test_top_k_holds_when_a_time_condition_is_checked_after_the_search(dify: DifyClientStandIn) -> None:
    hits = dify.retrieve(USER, "note", top_k=1, metadata_condition=where("published", "after", JUNE_10_2024))
    assert len(hits) == 1 and found(hits) <= {"beta note", "gamma note"}


def test_citations_stay_apart_and_documents_keep_their_metadata(dify: DifyClientStandIn) -> None:
    documents = dify.retrieve(USER, "note")
    assert len({d.citation() for d in documents}) == len(MEMORIES)  # every title is "Note"
    again = {d.content: d.citation() for d in dify.retrieve(USER, "note")}
    assert {d.content: d.citation() for d in documents} == again
    gamma = next(d for d in documents if d.content == "gamma note").metadata
    assert (gamma["category"], gamma["rating"], gamma["published"], gamma["dataset_id"]) == (
        "newsletter", 2.5, "2024-06-15", "ds-1")


def test_a_hit_testing_query_with_escaped_quotes_is_no_error(dify: DifyClientStandIn) -> None:
    assert isinstance(dify.retrieve(USER, 'the \\"alpha\\" note'), list)


def test_errors_that_remain_raise_in_dify_and_are_logged_with_the_request_id(base_url: str) -> None:
    client = DifyClientStandIn(base_url, KEY)
    try:
        with captured_server_log() as log, pytest.raises(ValueError, match='"error_code":400'):
            client.retrieve(USER, "secret words", metadata_condition=where("rating", "~", 1))
        assert "status=400 error_code=400" in log.text() and "request_id=" in log.text()
        assert "secret words" not in log.text() and KEY not in log.text()
    finally:
        client.close()


def test_the_retrieval_mount_serves_the_slashed_spelling_too(tmp_path: Path) -> None:
    with memdock_app_server(fresh_backend_url("memory", tmp_path, "mounted"), "--api-key", KEY,
                            "--mount", "retrieval=/dify") as base:
        slashed = DifyClientStandIn(f"{base}/dify/", KEY)
        try:
            assert slashed.check_endpoint() == 400
            assert slashed.retrieve("nobody-yet", "hello") == []
        finally:
            slashed.close()
        assert httpx.post(f"{base}/dify/retrieval/", headers={"Authorization": f"Bearer {KEY}"},
                          json={"knowledge_id": "x", "query": "q", "retrieval_setting": None}).json() == {"records": []}
