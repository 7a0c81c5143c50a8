"""Every exchange recorded with the real tonori/mem0ai-api (tests/data/mem0ai-api-transcripts.json, 35 steps),
replayed in order against memdock's ``/mem0ai-api`` routes (the app in-process, memory:// backend, one API
key, ``--allow-reset``): the same status and body shape (`test_replay_shapes.shape_differences`), except the
exchanges in `DIFFERENCES`, where memdock is safe on purpose and the test checks what it answers instead.
Every entry of `DIFFERENCES` is also listed, with its reason, in docs/server.md.

The transcript masks ids as ``<id>``, times as ``<time>`` and test user ids in bodies as ``u1-TAG``; requests
keep the ids they were sent with. The one recorded memory id a request path names is mapped to the id
memdock gave the memory stored in the same step (`RECORDED_IDS`); the other ids in paths are unknown to
both services. Each step's key follows its label: ``wrong key``, ``no key``, else the right one.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.dify_adapter.test_replay_shapes import Difference, assert_replayed
from tests.helpers.memdock_app import memdock_client
from tests.helpers.memdock_server import fresh_backend_url

TRANSCRIPT = Path(__file__).parents[1] / "data" / "mem0ai-api-transcripts.json"
STEPS: list[dict[str, Any]] = json.loads(TRANSCRIPT.read_text())
KEY = "replay-key-0123456789abcdef"
RECORDED_IDS = {"6078edc4-481c-4047-974f-edab550cdd6d": "store u1"}
"""A recorded memory id in a request path -> the step whose stored memory it is."""


def refused(body: Any) -> bool:
    """tonori's error envelope with a 422 ``ValueError`` naming the missing scope."""
    return (isinstance(body, dict) and set(body) == {"code", "error", "message"} and body["code"] == 422
            and body["error"] == "ValueError" and "user_id" in body["message"])


def results(texts: list[str]) -> Any:
    """A success envelope whose bare list holds items with exactly these texts, in order."""
    return lambda body: body["code"] == 0 and [item["text"] for item in body["data"]] == texts


DIFFERENCES: dict[str, Difference] = {
    # tonori stores, searches and lists with no scope at all (every user's memories); memdock refuses.
    "store no scope": Difference("no unscoped store", status=422, answer=refused),
    "search no scope": Difference("no unscoped search", status=422, answer=refused),
    "retrieve no scope": Difference("no unscoped list", status=422, answer=refused),
    # tonori answers 500 (its ValueError handler fails); memdock refuses in the envelope tonori meant.
    "delete-all no scope": Difference("no unscoped delete-all", status=422, answer=refused),
    # tonori crashes (500) on limit null and answers 405 to GET /search; the seed plugin sends both.
    "search limit null": Difference("limit null is the default", status=200, answer=results(["I like green tea"])),
    "search GET": Difference("GET /search of the plugin's older revision", status=200,
                             answer=results(["I like green tea"])),
    # tonori answers this 404 before checking the key (an existence oracle); memdock checks the key first.
    "history wrong key unknown id": Difference(
        "the key is checked first", status=200,
        answer=lambda body: body == {"code": 401, "error": "Unauthorized_Error", "message": "Unauthorized"}),
    # tonori's update drops the payload's scope ids and metadata: the memory vanishes from its user.
    "retrieve u1 after update": Difference("an update keeps the scope", status=200,
                                           answer=results(["I like oolong tea"])),
    "search u1 after update": Difference("an update keeps the scope", status=200,
                                         answer=results(["I like oolong tea"])),
    # tonori's reset drops its collection: every later call answers 404 until it restarts.
    "store after reset": Difference("a reset leaves a working store", status=200,
                                    answer=lambda body: [e["event"] for e in body["data"]] == ["add"]),
}


def request_of(step: dict[str, Any], ids: dict[str, str]) -> tuple[str, str, dict[str, Any]]:
    """(method, path, httpx keyword arguments) of a recorded ``"METHOD /path [payload]"``: a JSON payload is
    the body, a Python-dict payload the query string; recorded memory ids in the path are mapped."""
    method, rest = step["request"].split(" ", 1)
    path, _, payload = rest.partition(" ")
    for recorded, actual in ids.items():
        path = path.replace(recorded, actual)
    kwargs: dict[str, Any] = {}
    if payload.startswith('{"'):
        kwargs["json"] = json.loads(payload)
    elif payload:
        kwargs["params"] = ast.literal_eval(payload)
    label = step["step"]
    if "wrong key" in label:
        kwargs["headers"] = {"Authorization": "Bearer wrong-key-0123456789"}
    elif "no key" not in label:
        kwargs["headers"] = {"Authorization": f"Bearer {KEY}"}
    return method, path, kwargs


def body_of(response: httpx.Response) -> Any:
    """The decoded JSON body, or the text of a non-JSON one (``""`` for a 204)."""
    try:
        return response.json()
    except ValueError:
        return response.text


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[tuple[int, Any]]]:
    """memdock's (status, body) for each recorded step, replayed in order on one fresh server."""
    url = fresh_backend_url("memory", tmp_path_factory.mktemp("replay-mem0ai-api"), "replay")
    with (memdock_client(url, "--api-key", KEY, "--allow-reset") as server,
          server.as_another(base_url=f"{server.base_url}/mem0ai-api") as client):
        ids: dict[str, str] = {}
        stored: dict[str, str] = {}
        replies = []
        for step in STEPS:
            method, path, kwargs = request_of(step, ids)
            response = client.request(method, path, **kwargs)
            body = body_of(response)
            replies.append((response.status_code, body))
            if step["step"] in RECORDED_IDS.values() and response.status_code == 200:
                stored[step["step"]] = body["data"][0]["id"]
                ids.update({recorded: stored[name] for recorded, name in RECORDED_IDS.items() if name in stored})
        yield replies


def test_the_transcript_and_the_differences_agree() -> None:
    labels = [step["step"] for step in STEPS]
    assert len(labels) == 35 and len(set(labels)) == 35
    assert set(DIFFERENCES) <= set(labels)
    recorded = {step["step"]: step for step in STEPS}
    for label, difference in DIFFERENCES.items():  # each one is a real difference: tonori's answer fails it
        step = recorded[label]
        assert difference.status != step["status"] or not difference.answer(step["body"]), label


@pytest.mark.parametrize("index", range(len(STEPS)), ids=[step["step"] for step in STEPS])
def test_memdock_answers_each_recorded_exchange_as_tonori(answers: list[tuple[int, Any]], index: int) -> None:
    step = STEPS[index]
    status, body = answers[index]
    assert_replayed(step["step"], step["status"], step["body"], status, body, DIFFERENCES.get(step["step"]))
