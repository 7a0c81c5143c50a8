"""Every exchange recorded with mem0's real self-hosted server (tests/data/mem0-server-transcripts.jsonl, 78
exchanges in two runs), replayed in order against memdock's ``/mem0`` routes (the app in-process, memory://
backend with memdock's default local embedder, MiniLM, so that which memories a search finds above the
server's thresholds follows meaning, as it did with the recorded server's embedder): the same status, the
same body shape (`test_replay_shapes.shape_differences`) and an ``X-Request-ID`` header, except the exchanges
in `DIFFERENCES`, where memdock differs on purpose and the test checks what it answers instead. Every entry
of `DIFFERENCES` is also listed, with its reason, in docs/server.md.

Run ``auth_disabled`` replays on an open server started with ``--allow-reset``; run ``auth_enabled_admin_key``
on a server whose one key is the recorded admin key. Recorded requests are sent as recorded (headers, raw
bodies, query strings). Memory ids are remapped: walking a recorded answer beside memdock's, each recorded
``id`` / ``memory_id`` maps to memdock's id at the same place, and later request paths use the mapped ids;
ids the recorded server never returned (a missing UUID, ``not-a-uuid``) are sent unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.dify_adapter.test_replay_shapes import Difference, assert_replayed
from tests.helpers.memdock_app import memdock_client
from tests.helpers.memdock_server import fresh_backend_url

TRANSCRIPT = Path(__file__).parents[1] / "data" / "mem0-server-transcripts.jsonl"
EXCHANGES: list[dict[str, Any]] = [json.loads(line) for line in TRANSCRIPT.read_text().splitlines() if line.strip()]
RUN_ARGS = {"auth_disabled": ("--allow-reset",),
            "auth_enabled_admin_key": ("--api-key", "test-admin-key-0123456789abcdef")}
EXTENSIONS = frozenset({"expires_at", "old_metadata", "new_metadata", "user_id", "agent_id", "run_id", "app_id"})
"""Keys memdock adds to mem0's items and history entries (its extensions, which mem0 clients ignore):
``expires_at`` on an expiring memory's item; the metadata before and after, and the scope ids, on history
entries (mem0 has them in neither)."""


def exchange_id(exchange: dict[str, Any]) -> str:
    return f"{exchange['run']}#{exchange['seq']}"


def detail_string(body: Any) -> bool:
    return isinstance(body, dict) and set(body) == {"detail"} and isinstance(body["detail"], str)


def not_found(body: Any) -> bool:
    return body == {"detail": "Not Found"}


NO_SCOPE = Difference("no unscoped list: memdock never lists every user's memories", status=400,
                      answer=detail_string)
MISSING_ROUTE = Difference("a route of mem0's server memdock does not have", status=404, answer=not_found)
DIFFERENCES: dict[str, Difference] = {
    # mem0's configuration, entity and dashboard routes: memdock is configured at start-up, has no entities.
    "auth_disabled#1": MISSING_ROUTE,   # GET /configure
    "auth_disabled#2": MISSING_ROUTE,   # GET /configure/providers
    "auth_disabled#60": MISSING_ROUTE,  # GET /entities
    "auth_enabled_admin_key#9": MISSING_ROUTE,  # GET /auth/setup-status
    # with no scope id the server lists every memory (raw); memdock refuses.
    "auth_disabled#25": NO_SCOPE,
    "auth_disabled#67": NO_SCOPE,
    # an id that is not a UUID: the server answers 502 (its store rejects it); to memdock it is missing.
    "auth_disabled#30": Difference("a non-UUID id is missing", status=200, answer=lambda body: body is None),
    "auth_disabled#46": Difference("a non-UUID id is missing", status=404, answer=detail_string),
    "auth_disabled#54": Difference("a non-UUID id is missing", status=404, answer=detail_string),
    # with infer omitted the server's LLM extracts a fact and stores it without a role; memdock stores the
    # message verbatim and keeps its role, so that memory's item has a ``role``.
    "auth_disabled#64": Difference("verbatim messages keep their role", extra_keys=frozenset({"role"})),
    # the server does not redirect a trailing slash (404); memdock's app redirects it to the route (307).
    "auth_disabled#63": Difference("a trailing slash is redirected", status=307, answer=lambda body: True),
}


def remember_ids(recorded: Any, actual: Any, ids: dict[str, str]) -> None:
    """Map each recorded ``id`` / ``memory_id`` to memdock's at the same place (first sighting wins)."""
    if isinstance(recorded, dict) and isinstance(actual, dict):
        for key, value in recorded.items():
            if key in ("id", "memory_id") and isinstance(value, str) and isinstance(actual.get(key), str):
                ids.setdefault(value, actual[key])
            elif key in actual:
                remember_ids(value, actual[key], ids)
    elif isinstance(recorded, list) and isinstance(actual, list):
        for r, a in zip(recorded, actual, strict=False):
            remember_ids(r, a, ids)


def send(client: httpx.Client, exchange: dict[str, Any], ids: dict[str, str]) -> httpx.Response:
    """The recorded request, its path's memory ids mapped."""
    path = exchange["path"]
    for recorded, actual in ids.items():
        path = path.replace(recorded, actual)
    headers = dict(exchange.get("request_headers") or {})
    if "request_body_raw" in exchange:
        content: str | None = exchange["request_body_raw"]
    elif "request_body" in exchange:
        content = json.dumps(exchange["request_body"])
    else:
        content = None
    return client.request(exchange["method"], path, params=exchange.get("query"), headers=headers, content=content)


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, httpx.Response]]:
    """memdock's response to each recorded exchange, by `exchange_id`, each run on its own fresh server."""
    replies: dict[str, httpx.Response] = {}
    for run, args in RUN_ARGS.items():
        url = fresh_backend_url("memory", tmp_path_factory.mktemp("replay-mem0"), f"replay-{run}").replace(
            "embedder=hash", "embedder=minilm")
        with (memdock_client(url, *args) as server,
              server.as_another(base_url=f"{server.base_url}/mem0", follow_redirects=False) as client):
            ids: dict[str, str] = {}
            for exchange in (e for e in EXCHANGES if e["run"] == run):
                response = send(client, exchange, ids)
                replies[exchange_id(exchange)] = response
                if response.headers.get("content-type", "").startswith("application/json"):
                    remember_ids(exchange["response_body"], response.json(), ids)
    yield replies


def test_the_transcript_and_the_differences_agree() -> None:
    assert len(EXCHANGES) == 78 and len({exchange_id(e) for e in EXCHANGES}) == 78
    assert set(DIFFERENCES) <= {exchange_id(e) for e in EXCHANGES}
    assert {e["run"] for e in EXCHANGES} == set(RUN_ARGS)
    recorded = {exchange_id(e): e for e in EXCHANGES}
    for key, difference in DIFFERENCES.items():  # each one is a real difference: the server's answer fails it
        exchange = recorded[key]
        if difference.status is not None:
            assert difference.status != exchange["status"] or not difference.answer(exchange["response_body"]), key


@pytest.mark.parametrize("exchange", EXCHANGES, ids=[f"{exchange_id(e)} {e['label']}" for e in EXCHANGES])
def test_memdock_answers_each_recorded_exchange_as_mem0s_server(
    answers: dict[str, httpx.Response], exchange: dict[str, Any]
) -> None:
    response = answers[exchange_id(exchange)]
    body = response.json() if response.content else None
    assert_replayed(exchange["label"], exchange["status"], exchange["response_body"], response.status_code, body,
                    DIFFERENCES.get(exchange_id(exchange)), EXTENSIONS)
    if "x-request-id" in exchange["response_headers"]:
        assert response.headers.get("x-request-id")
