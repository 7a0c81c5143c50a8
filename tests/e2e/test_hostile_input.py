"""Hostile input over every entry point, on memory://, embedded Chroma and pgvector: the HTTP routes of a real
server on 127.0.0.1 (native ``/v1``, ``/mem0``, ``/mem0ai-api``, Dify's ``/retrieval``), the Python API and the
CLI. NUL characters and lone surrogates in filter fields and values, ids, scope ids, texts and metadata keys;
NaN, Infinity, 1e400 and a 5,000-digit integer in comparisons and limits; metadata nested 256-490 deep;
filters nested about 990 deep; an ``expires_at`` past year 9999 in UTC; mem0 ``top_k`` NaN and mem0ai-api
``limit`` 0, -1 and 1e9.

The property: every answer is the API's documented refusal of bad input (a 4xx in its own error envelope,
naming the field where the envelope has a place for it; never a 5xx, never 503 + Retry-After), nothing refused
is stored, and afterwards every list and search of the scope still answers 200. The named cases run every
time; hypothesis combines hostile values with entry points at random on top (``MEMDOCK_SOAK=1``: ten times
the examples).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import memdock
from memdock.errors import InvalidInput
from memdock.memory import Memory
from tests.helpers.hostile import (
    FAR_EXPIRY,
    HOSTILE_NUMBERS,
    HOSTILE_STRINGS,
    HUGE_INT,
    SOAK,
    Raw,
    deep_filter,
    nested,
    raw_deep_filter,
    raw_nested,
    refusal_problem,
    scaled,
    send,
)
from tests.helpers.hostile import quoted as quote_text
from tests.helpers.memdock_server import memdock_app_server

VICTIM = "victim"
SEEDS = ("I like green tea", "My cat is called Miso")
Case = tuple[str, str, Any, dict[str, str] | None, bool]
"""(method, path, JSON body or None, query parameters or None, whether a missing-id answer is fine)."""


@pytest.fixture(scope="module", params=["memory", "chroma", "pgvector"])
def backend_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fresh store of each kind, with the deterministic test embedder."""
    kind = request.param
    if kind == "memory":
        return f"memory://hostile-{uuid.uuid4().hex[:12]}?embedder=hash"
    if kind == "chroma":
        return f"chroma://{tmp_path_factory.mktemp('hostile-chroma')}/db?embedder=hash"
    pg_url: str = request.getfixturevalue("pg_url")
    return f"{pg_url}&table=hostile_{uuid.uuid4().hex[:12]}&embedder=hash"


@pytest.fixture(scope="module")
def served(backend_url: str) -> Iterator[tuple[Memory, httpx.Client, list[str]]]:
    """The open Memory, a client of a real server over it, and the ids of the seeded memories."""
    memory = Memory.open(backend_url)
    try:
        seeded = [r.record.id for text in SEEDS for r in memory.add(text, user_id=VICTIM, metadata={"rating": 4})]
        with memdock_app_server(memory) as base, httpx.Client(base_url=base, timeout=60) as client:
            yield memory, client, seeded
    finally:
        memory.close()


def retrieval_body(name: Any = "rating", value: Any = "4", operator: str = "is",
                   knowledge_id: Any = VICTIM, top_k: Any = 4) -> dict[str, Any]:
    """A Dify External Knowledge request with one metadata condition."""
    return {"knowledge_id": knowledge_id, "query": "tea", "retrieval_setting": {"top_k": top_k, "score_threshold": 0},
            "metadata_condition": {"logical_operator": "and",
                                   "conditions": [{"name": [name], "comparison_operator": operator, "value": value}]}}


def filter_cases(where: Any) -> list[Case]:
    """`where` (a mem0-style filter, or a `raw_deep_filter`) on every route that takes one."""
    if isinstance(where, Raw):
        text: str | None = where.token
        mem0_filters: Any = Raw('{"user_id": "victim", ' + where.token[1:])
    else:
        text = json.dumps(where) if not _has_raw(where) else None
        mem0_filters = {"user_id": VICTIM, **where}
    cases: list[Case] = [
        ("POST", "/v1/search", {"user_id": VICTIM, "query": "tea", "filter": where}, None, False),
        ("POST", "/mem0/search", {"query": "tea", "filters": mem0_filters}, None, False),
        ("POST", "/mem0ai-api/search", {"query": "tea", "user_id": VICTIM, "filters": where}, None, False),
    ]
    if text is not None:  # a query parameter holding JSON text
        if not isinstance(where, Raw):  # the deep ones: test_native_query_filter_nested_too_deep_for_json
            cases += [("GET", "/v1/memories", None, {"user_id": VICTIM, "filter": text}, False),
                      ("GET", "/v1/count", None, {"user_id": VICTIM, "filter": text}, False)]
        cases += [("GET", "/mem0ai-api/search", None, {"query": "tea", "user_id": VICTIM, "filters": text}, False)]
    return cases


def _has_raw(value: Any) -> bool:
    if isinstance(value, Raw):
        return True
    if isinstance(value, dict):
        return any(_has_raw(k) or _has_raw(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_raw(v) for v in value)
    return isinstance(value, str) and ("\x00" in value or any(0xD800 <= ord(c) <= 0xDFFF for c in value))


def text_cases(text: Any, metadata: Any = None, user_id: Any = VICTIM) -> list[Case]:
    """An add of `text` with `metadata` under `user_id` on every route that stores."""
    meta = {} if metadata is None else {"metadata": metadata}
    return [
        ("POST", "/v1/memories", {"user_id": user_id, "text": text, **meta}, None, False),
        ("POST", "/mem0/memories", {"user_id": user_id, "messages": [{"role": "user", "content": text}], **meta},
         None, False),
        ("POST", "/mem0ai-api/store", {"user_id": user_id, "data": text, **meta}, None, False),
    ]


def id_cases(memory_id: str) -> list[Case]:
    """A hostile memory id on every by-id route (answered as missing, or refused)."""
    quoted = quote_text(memory_id)
    return [
        ("GET", f"/v1/memories/{quoted}", None, None, True),
        ("PATCH", f"/v1/memories/{quoted}", {"text": "changed"}, None, True),
        ("DELETE", f"/v1/memories/{quoted}", None, None, True),
        ("GET", f"/v1/memories/{quoted}/history", None, None, True),
        ("GET", f"/mem0/memories/{quoted}", None, None, True),
        ("PUT", f"/mem0/memories/{quoted}", {"text": "changed"}, None, True),
        ("DELETE", f"/mem0/memories/{quoted}", None, None, True),
        ("GET", f"/mem0/memories/{quoted}/history", None, None, True),
        ("GET", f"/mem0ai-api/retrieve/{quoted}", None, None, True),
        ("PUT", f"/mem0ai-api/update/{quoted}", None, {"data": "changed"}, True),
        ("DELETE", f"/mem0ai-api/delete/{quoted}", None, None, True),
    ]


def named_cases() -> list[Case]:
    """Every case the issue lists, on every route it applies to."""
    cases: list[Case] = []
    for bad in HOSTILE_STRINGS:
        cases += filter_cases({bad: {"eq": 1}})  # a hostile field name
        cases += filter_cases({"rating": {"eq": bad}})
        cases += filter_cases({"rating": {"in": [bad]}})
        cases += text_cases(f"text {bad}")
        cases += text_cases("fine text", metadata={bad: 1})
        cases += text_cases("fine text", metadata={"note": bad})
        cases += text_cases("fine text", user_id=bad)
        cases += id_cases(bad)
        cases += [("POST", "/v1/search", {"user_id": bad, "query": "tea"}, None, False),
                  ("POST", "/v1/search", {"user_id": VICTIM, "query": bad}, None, False),
                  ("POST", "/mem0/search", {"query": "tea", "filters": {"user_id": bad}}, None, False),
                  ("POST", "/mem0ai-api/search", {"query": "tea", "user_id": bad}, None, False),
                  ("POST", "/v1/lookup", {"user_id": VICTIM, "text": bad}, None, False),
                  ("PATCH", "/v1/memories/placeholder", {"metadata": {bad: 1}}, None, True),
                  ("POST", "/retrieval", retrieval_body(name=bad), None, False),
                  ("POST", "/retrieval", retrieval_body(value=bad), None, False),
                  ("POST", "/retrieval", retrieval_body(knowledge_id=bad), None, False)]
    for number in HOSTILE_NUMBERS:
        for operator in ("eq", "ne", "lt", "gte"):
            cases += filter_cases({"rating": {operator: number}})
        cases += filter_cases({"rating": {"in": [number, 4]}})
        cases += text_cases("fine text", metadata={"n": number})
        cases += [("POST", "/v1/search", {"user_id": VICTIM, "query": "tea", "limit": number}, None, False),
                  ("POST", "/mem0/search", {"query": "tea", "filters": {"user_id": VICTIM}, "top_k": number},
                   None, False),
                  ("POST", "/mem0ai-api/search", {"query": "tea", "user_id": VICTIM, "limit": number}, None, False),
                  ("POST", "/retrieval", retrieval_body(value=number, operator=">"), None, False),
                  ("POST", "/retrieval", retrieval_body(top_k=number), None, False)]
    for depth in (256, 300, 490, 1200):  # 1,200: deeper than Python's JSON decoder recurses
        cases += text_cases("deep metadata", metadata=raw_nested(depth))
    cases += [("PUT", "/mem0ai-api/update/placeholder", {"metadata": raw_nested(1200)}, None, True),
              ("PATCH", "/v1/memories/placeholder", {"metadata": raw_nested(1200)}, None, True)]
    cases += [("PUT", "/mem0/memories/placeholder", {"metadata": raw_nested(400)}, None, True),
              ("PUT", "/mem0ai-api/update/placeholder", {"metadata": raw_nested(900)}, None, True),
              ("PATCH", "/v1/memories/placeholder", {"metadata": raw_nested(400)}, None, True)]
    for depth in (34, 200, 990):
        cases += filter_cases(raw_deep_filter(depth))
    cases += [("POST", "/v1/memories", {"user_id": VICTIM, "text": "far", "expires_at": FAR_EXPIRY}, None, False),
              ("POST", "/v1/memories", {"user_id": VICTIM, "text": "huge", "metadata": {"n": HUGE_INT}}, None, False)]
    for limit in ("0", "-1", "1e9", "1000000000"):
        cases += [("POST", "/mem0ai-api/search", {"query": "tea", "user_id": VICTIM, "limit": Raw(limit)}, None, False),
                  ("GET", "/mem0ai-api/search", None, {"query": "tea", "user_id": VICTIM, "limit": limit}, False),
                  ("GET", "/mem0ai-api/retrieve", None, {"user_id": VICTIM, "limit": limit}, False)]
    return cases


def check_case(client: httpx.Client, seeded: list[str], case: Case) -> str | None:
    """Send one case (the placeholder id replaced by a seeded memory's id); why it failed, or None."""
    method, path, body, params, missing_ok = case
    path = path.replace("placeholder", seeded[0])
    try:
        response = send(client, method, path, body=body, params=params)
    except httpx.TransportError as exc:
        return f"{method} {path[:80]} {str(body)[:120]!r} {str(params)[:80]}: {type(exc).__name__} {exc}"
    problem = refusal_problem(path, response, missing_ok=missing_ok)
    return None if problem is None else f"{method} {path} {str(body)[:120]!r}: {problem}"


def assert_scope_intact(client: httpx.Client, seeded: list[str]) -> None:
    """Every list and search of the victim's scope answers 200 with exactly the seeded memories."""
    listed = client.get("/v1/memories", params={"user_id": VICTIM, "limit": 1000})
    assert listed.status_code == 200, listed.text
    assert sorted(item["id"] for item in listed.json()["items"]) == sorted(seeded)
    for item in listed.json()["items"]:
        assert item["text"] in SEEDS and item["metadata"] == {"rating": 4}
    answers = [
        client.post("/v1/search", json={"user_id": VICTIM, "query": "tea"}),
        client.get("/mem0/memories", params={"user_id": VICTIM}),
        client.post("/mem0/search", json={"query": "tea", "filters": {"user_id": VICTIM}}),
        client.get("/mem0ai-api/retrieve", params={"user_id": VICTIM}),
        client.post("/mem0ai-api/search", json={"query": "tea", "user_id": VICTIM}),
        client.post("/retrieval", json=retrieval_body(value="4")),
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
    assert client.get("/v1/count", params={"user_id": VICTIM}).json()["count"] == len(seeded)


def test_every_named_hostile_input_is_refused_as_bad_input(served: tuple[Memory, httpx.Client, list[str]]) -> None:
    _memory, client, seeded = served
    problems = [p for case in named_cases() if (p := check_case(client, seeded, case)) is not None]
    assert problems == [], f"{len(problems)} bad answers:\n" + "\n".join(problems[:40])
    assert_scope_intact(client, seeded)


HOSTILE_LEAVES = st.sampled_from([*HOSTILE_STRINGS, *HOSTILE_NUMBERS])
ENTRY = st.sampled_from(["filter-field", "filter-value", "filter-in", "text", "metadata-key", "metadata-value",
                         "scope", "id", "retrieval-name", "retrieval-value", "deep-metadata", "deep-filter"])


@settings(max_examples=scaled(40), deadline=None, derandomize=not SOAK,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(entry=ENTRY, leaf=HOSTILE_LEAVES, prefix=st.text(max_size=8), depth=st.integers(33, 480),
       route=st.integers(0, 10))
def test_random_hostile_input_is_refused_as_bad_input(
    served: tuple[Memory, httpx.Client, list[str]], entry: str, leaf: Any, prefix: str, depth: int, route: int,
) -> None:
    _memory, client, seeded = served
    bad: Any = prefix + leaf if isinstance(leaf, str) else leaf
    text_bad = bad if isinstance(bad, str) else prefix + "\x00"
    builders: dict[str, Callable[[], list[Case]]] = {
        "filter-field": lambda: filter_cases({text_bad: {"eq": 1}}),
        "filter-value": lambda: filter_cases({"rating": {"eq": bad}}),
        "filter-in": lambda: filter_cases({"rating": {"nin": [4, bad]}}),
        "text": lambda: text_cases(text_bad),
        "metadata-key": lambda: text_cases("fine text", metadata={"k": {text_bad: 1}}),
        "metadata-value": lambda: text_cases("fine text", metadata={"k": [bad]}),
        "scope": lambda: text_cases("fine text", user_id=text_bad),
        "id": lambda: id_cases(text_bad),
        "retrieval-name": lambda: [("POST", "/retrieval", retrieval_body(name=text_bad), None, False)],
        "retrieval-value": lambda: [("POST", "/retrieval", retrieval_body(value=bad, operator="="), None, False)],
        "deep-metadata": lambda: text_cases("fine text", metadata=nested(depth, leaf=bad)),
        "deep-filter": lambda: filter_cases(raw_deep_filter(depth * 2)),
    }
    cases = builders[entry]()
    problem = check_case(client, seeded, cases[route % len(cases)])
    assert problem is None, problem
    assert client.get("/v1/count", params={"user_id": VICTIM}).json()["count"] == len(seeded)


@pytest.mark.parametrize("path", ["/v1/memories", "/v1/count", "/v1/memories?delete"])
def test_native_query_filter_nested_too_deep_for_json(served: tuple[Memory, httpx.Client, list[str]],
                                                      path: str) -> None:
    _memory, client, seeded = served
    method = "DELETE" if path.endswith("?delete") else "GET"
    path = path.removesuffix("?delete")
    problem = check_case(client, seeded, (method, path, None, {"user_id": VICTIM,
                                                               "filter": raw_deep_filter(990).token}, False))
    assert problem is None, problem
    assert_scope_intact(client, seeded)


@pytest.mark.parametrize("bad", HOSTILE_STRINGS, ids=["nul", "surrogate", "low-surrogate"])
def test_import_refuses_a_hostile_record_id(served: tuple[Memory, httpx.Client, list[str]], bad: str) -> None:
    _memory, client, seeded = served
    record = {"id": bad, "text": f"imported {uuid.uuid4().hex}", "user_id": VICTIM,
              "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}
    problem = check_case(client, seeded, ("POST", "/v1/import", {"records": [record]}, None, False))
    assert problem is None, problem
    assert_scope_intact(client, seeded)


@pytest.mark.parametrize("bad", HOSTILE_STRINGS, ids=["nul", "surrogate", "low-surrogate"])
def test_python_import_refuses_a_hostile_record_id(backend_url: str, bad: str) -> None:
    from datetime import UTC, datetime

    from memdock.models import MemoryRecord, Scope

    now = datetime.now(UTC)
    record = MemoryRecord(id=bad, text=f"imported {uuid.uuid4().hex}", scope=Scope(user_id="importer"), metadata={},
                          hash="-", created_at=now, updated_at=now)
    with memdock.open(backend_url) as memory:
        with pytest.raises(InvalidInput) as refused:
            memory.import_([record])
        assert refused.value.field == "records[0].id"
        assert memory.count(user_id="importer") == 0


def test_after_the_random_attack_the_scope_still_answers(served: tuple[Memory, httpx.Client, list[str]]) -> None:
    assert_scope_intact(served[1], served[2])


# -- the Python API ----------------------------------------------------------------------------------------------

def python_attacks(memory: Memory, seeded: list[str]) -> list[tuple[str, Any]]:
    """(label, zero-argument call) for every Python entry point with a hostile argument."""
    nan, inf = float("nan"), float("inf")
    calls: list[tuple[str, Any]] = []
    for bad in HOSTILE_STRINGS:
        calls += [
            (f"add text {bad!r}", lambda b=bad: memory.add(f"t {b}", user_id=VICTIM)),
            (f"add metadata key {bad!r}", lambda b=bad: memory.add("fine", user_id=VICTIM, metadata={b: 1})),
            (f"add scope {bad!r}", lambda b=bad: memory.add("fine", user_id=b)),
            (f"search filter field {bad!r}", lambda b=bad: memory.search("tea", user_id=VICTIM, filter={b: 1})),
            (f"search filter value {bad!r}", lambda b=bad: memory.search("tea", user_id=VICTIM,
                                                                         filter={"rating": {"in": [b]}})),
            (f"list filter value {bad!r}", lambda b=bad: memory.list(user_id=VICTIM, filter={"rating": {"ne": b}})),
            (f"get id {bad!r}", lambda b=bad: memory.get(b)),
            (f"update metadata {bad!r}", lambda b=bad: memory.update(seeded[0], metadata={"k": b})),
        ]
    for name, number in (("nan", nan), ("inf", inf), ("-inf", -inf), ("10**5000", 10**5000)):
        for operator in ("eq", "ne", "in", "lt"):
            where = {"rating": {operator: [number] if operator == "in" else number}}
            calls.append((f"search {operator} {name}",
                          lambda w=where: memory.search("tea", user_id=VICTIM, filter=w)))
        calls.append((f"add metadata {name}",
                      lambda n=number: memory.add("fine", user_id=VICTIM, metadata={"n": n})))
    calls += [
        ("deep metadata 490", lambda: memory.add("fine", user_id=VICTIM, metadata=nested(490))),
        ("deep filter 990", lambda: memory.search("tea", user_id=VICTIM, filter=deep_filter(990))),
        ("search limit NaN", lambda: memory.search("tea", user_id=VICTIM, limit=nan)),
        ("search limit 0", lambda: memory.search("tea", user_id=VICTIM, limit=0)),
        ("far expires_at", lambda: memory.add("fine", user_id=VICTIM,
                                              expires_at=_datetime(FAR_EXPIRY))),
    ]
    return calls


def _datetime(text: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(text)


def test_python_api_refuses_hostile_input_with_a_typed_error(backend_url: str) -> None:
    with memdock.open(backend_url) as memory:
        seeded = [r.record.id for r in memory.add("I like green tea", user_id="py-victim", metadata={"rating": 4})]
        wrong = []
        for label, call in python_attacks(memory, seeded):
            try:
                call()
            except InvalidInput as exc:
                if not exc.field:
                    wrong.append(f"{label}: no field in {exc!r}")
            except memdock.MemoryNotFound:
                if not label.startswith("get id"):
                    wrong.append(f"{label}: MemoryNotFound")
            except Exception as exc:  # the point: anything else is a defect
                wrong.append(f"{label}: {type(exc).__name__}: {str(exc)[:120]}")
            else:
                wrong.append(f"{label}: accepted")
        assert wrong == []
        assert [r.id for r in memory.list(user_id="py-victim").items] == seeded


# -- the CLI -----------------------------------------------------------------------------------------------------


def memdock_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the ``memdock`` console script of this environment."""
    exe = Path(sys.executable).parent / "memdock"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("args", [
    ("add", "--user-id", VICTIM, "--metadata", '{"n": NaN}', "fine"),
    ("add", "--user-id", VICTIM, "--metadata", raw_nested(300).token, "fine"),
    ("add", "--user-id", VICTIM, "--metadata", '{"k": "a\\u0000b"}', "fine"),
    ("add", "--user-id", VICTIM, "--metadata", '{"n": ' + "9" * 5000 + "}", "fine"),
    ("search", "--user-id", VICTIM, "--filter", '{"rating": {"lt": NaN}}', "tea"),
    ("search", "--user-id", VICTIM, "--filter", raw_deep_filter(990).token, "tea"),
    ("search", "--user-id", VICTIM, "--filter", '{"rating": {"eq": 1e400}}', "tea"),
    ("search", "--user-id", VICTIM, "--limit", "0", "tea"),
], ids=["nan", "deep-metadata", "nul", "huge-int", "lt-nan", "deep-filter", "1e400", "limit-0"])
def test_cli_over_http_refuses_hostile_input(served: tuple[Memory, httpx.Client, list[str]],
                                             args: tuple[str, ...]) -> None:
    _memory, client, seeded = served
    url = str(client.base_url).rstrip("/").replace("http://", "memdock+http://")
    done = memdock_cli("--url", url, *args)
    assert done.returncode == 2, (done.returncode, done.stderr[-600:])
    last = done.stderr.strip().splitlines()[-1]  # argparse prints its usage first for a bad option value
    assert last.startswith(("memdock: error:", "memdock add: error:", "memdock search: error:")), done.stderr[-600:]
    assert "Traceback" not in done.stderr and len(last) < 400
    assert client.get("/v1/count", params={"user_id": VICTIM}).json()["count"] == len(seeded)
