"""The stand-ins of tonori/mem0ai-api and of mem0's server are faithful: every recorded exchange with the REAL
services (``tests/data/mem0ai-api-transcripts.json``, ``tests/data/mem0-server-transcripts.jsonl``) that
concerns the memory API is replayed, in order, against a fresh stand-in, and the stand-in must answer with
the recorded status and the recorded body, once ids, times, request ids and similarity numbers are masked
(the stand-ins embed with memdock's ``hash`` embedder, not with the recorded services' models).

Search answers depend on the embedder, so for them each returned item must have the shape of the recorded
item with the same text, and an answer is empty exactly when the recorded one is (where the ``hash``
embedder puts every candidate under mem0's threshold, the same search with ``threshold: 0`` must find them).
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.mem0_server_standin import mem0_server_standin
from tests.helpers.mem0ai_api_standin import mem0ai_api_standin

DATA = Path(__file__).resolve().parent.parent / "data"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TIME = re.compile(r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d|Z)?$")
TAG = re.compile(r"\b(u\d)-[0-9a-f]{6}\b")
EPOCH_KEYS = {"created_at", "updated_at"}
SERVER_ROUTES_NOT_USED = {"/configure", "/configure/providers", "/entities", "/auth/setup-status"}
"""Routes of mem0's server no memdock client calls; the stand-in does not have them."""
TONORI_KEY = "tonori-test-key"


def masked(value: Any, key: str | None = None) -> Any:
    """The value with what varies between runs replaced by placeholders."""
    if isinstance(value, dict):
        return {k: masked(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    if key == "request_id":
        return "<request-id>"
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        return "<number>"
    if isinstance(value, int):
        return "<epoch>" if key in EPOCH_KEYS else value
    if isinstance(value, str):
        if TIME.match(value) or value == "<time>":
            return "<time>"
        return TAG.sub(r"\1-TAG", UUID.sub("<id>", value))
    return value


def answer_body(response: httpx.Response) -> Any:
    if not response.content:
        return ""
    try:
        return response.json()
    except ValueError:
        return response.text


def items_of(body: Any) -> list[Any] | None:
    """The result list of a search answer (tonori: ``data``; mem0: ``results``)."""
    if isinstance(body, dict):
        inner = body.get("data", body.get("results"))
        return inner if isinstance(inner, list) else None
    return None


def assert_search_alike(got: Any, recorded: Any, text_key: str) -> None:
    got_items, recorded_items = items_of(got), items_of(recorded)
    assert got_items is not None and recorded_items is not None, (got, recorded)
    assert bool(got_items) == bool(recorded_items), (got, recorded)
    assert {k: v for k, v in got.items() if k not in ("data", "results")} == \
        {k: v for k, v in recorded.items() if k not in ("data", "results")}
    by_text = {item[text_key]: item for item in recorded_items}
    for item in got_items:
        if item[text_key] in by_text:
            assert masked(item) == masked(by_text[item[text_key]]), (item, by_text[item[text_key]])
        else:
            assert set(item) == set(recorded_items[0]), (item, recorded_items[0])


# -- tonori/mem0ai-api ---------------------------------------------------------------------------------------

def tonori_exchanges() -> list[dict[str, Any]]:
    return list(json.loads((DATA / "mem0ai-api-transcripts.json").read_text()))


def split_request(line: str) -> tuple[str, str, Any]:
    """``"POST /store {json}"`` or ``"GET /retrieve {'python': 'dict'}"`` -> (method, path, payload)."""
    method, _, rest = line.partition(" ")
    path, _, payload = rest.partition(" ")
    if not payload:
        return method, path, None
    try:
        return method, path, json.loads(payload)
    except ValueError:
        return method, path, ast.literal_eval(payload)


def test_the_mem0ai_api_standin_answers_every_recorded_exchange_as_tonori_did() -> None:
    exchanges = tonori_exchanges()
    assert len(exchanges) == 35
    ids: dict[str, str] = {}
    replayed = 0
    with mem0ai_api_standin(auth_key=TONORI_KEY) as (service, _):
        for exchange in exchanges:
            step = exchange["step"]
            method, path, payload = split_request(exchange["request"])
            for recorded_id, new_id in ids.items():
                path = path.replace(recorded_id, new_id)
            headers = {} if "no key" in step else {
                "Authorization": f"Bearer {'wrong' if 'wrong key' in step else TONORI_KEY}"}
            sends_json = method == "POST"  # the others carry their parameters in the query
            response = httpx.request(method, f"http://{service.url}{path}", headers=headers,
                                     json=payload if sends_json else None,
                                     params=None if sends_json or payload is None else payload, timeout=10)
            got, recorded = answer_body(response), exchange["body"]
            assert response.status_code == exchange["status"], (step, response.status_code, got)
            if step.startswith("search") and response.status_code == 200 and isinstance(got, dict) \
                    and got.get("code") == 0:
                assert_search_alike(got, recorded, "text")
            else:
                assert masked(got) == masked(recorded), (step, got, recorded)
            if step == "store u1":
                ids["6078edc4-481c-4047-974f-edab550cdd6d"] = got["data"][0]["id"]
            replayed += 1
    assert replayed == 35


# -- mem0's server -------------------------------------------------------------------------------------------

def server_exchanges() -> list[dict[str, Any]]:
    lines = (DATA / "mem0-server-transcripts.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.mark.parametrize("run", ["auth_disabled", "auth_enabled_admin_key"])
def test_the_mem0_server_standin_answers_every_recorded_exchange_as_the_server_did(run: str) -> None:
    exchanges = [e for e in server_exchanges() if e["run"] == run]
    assert len(exchanges) in (69, 9)
    key = "test-admin-key-0123456789abcdef" if run == "auth_enabled_admin_key" else None
    to_new: dict[str, str] = {}
    replayed = 0
    with mem0_server_standin(api_key=key) as (service, _):
        for exchange in exchanges:
            if exchange["path"] in SERVER_ROUTES_NOT_USED:
                continue
            path = exchange["path"]
            for recorded_id, new_id in to_new.items():
                path = path.replace(recorded_id, new_id)
            if "request_body_raw" in exchange:
                content = exchange["request_body_raw"].encode()
            elif "request_body" in exchange:
                content = json.dumps(exchange["request_body"]).encode()
            else:
                content = b""
            response = httpx.request(exchange["method"], f"http://{service.url}{path}",
                                     params=exchange["query"], headers=exchange["request_headers"], content=content,
                                     timeout=10)
            label = exchange["label"]
            got, recorded = answer_body(response), exchange["response_body"]
            assert response.status_code == exchange["status"], (label, response.status_code, got)
            assert response.headers.get("x-request-id"), label
            if exchange["status"] == 401 and "www-authenticate" in exchange["response_headers"]:
                assert response.headers.get("www-authenticate") == "Bearer"
            if exchange["method"] == "POST" and path == "/memories" and response.status_code == 200:
                for old, new in zip(recorded["results"], got["results"], strict=True):
                    to_new[old["id"]] = new["id"]
            if path == "/search" and response.status_code == 200:
                if items_of(recorded) and not items_of(got):  # the hash embedder put all below the threshold
                    lowered = {**exchange["request_body"], "threshold": 0}
                    got = httpx.post(f"http://{service.url}/search", json=lowered, headers=exchange["request_headers"],
                                     timeout=10).json()
                assert_search_alike(got, recorded, "memory")
            else:
                assert masked(got) == masked(recorded), (label, got, recorded)
            replayed += 1
    assert replayed == (66 if run == "auth_disabled" else 8)
