"""Bodies the server cannot take are answered in the documented error envelope of the API they were sent to,
with a status the OpenAPI document lists for that operation, never a 5xx, and nothing is stored:

- a body that is not UTF-8 (so not JSON text at all): never FastAPI's own ``{"detail": "There was an error
  parsing the body"}``;
- a body over ``--max-body-bytes``, whether its ``Content-Length`` says so (refused before it is read) or it
  is streamed without one (refused while it is read): 413 in the API's envelope, over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from memdock.memory import Memory
from tests.helpers.memdock_app import MemdockTestClient, memdock_client
from tests.helpers.memdock_server import fresh_backend_url, memdock_app_server

NOT_UTF8 = (b'{"text": "caf\xe9", "user_id": "u"}', b'{"data": "\xff\xfe\x80", "user_id": "u"}')
BODY_ROUTES: list[tuple[str, str, str]] = [
    ("native", "POST", "/v1/memories"), ("native", "POST", "/v1/search"), ("native", "PATCH", "/v1/memories/m1"),
    ("native", "POST", "/v1/import"), ("native", "POST", "/v1/lookup"), ("native", "POST", "/v1/lookups"),
    ("native", "POST", "/v1/reset"),
    ("mem0", "POST", "/mem0/memories"), ("mem0", "PUT", "/mem0/memories/m1"), ("mem0", "POST", "/mem0/search"),
    ("mem0ai-api", "POST", "/mem0ai-api/store"), ("mem0ai-api", "POST", "/mem0ai-api/search"),
    ("mem0ai-api", "PUT", "/mem0ai-api/update/m1?data=new"),
    ("retrieval", "POST", "/retrieval"),
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MemdockTestClient, Memory, dict[str, Any]]]:
    """A client of an open server, its Memory and the OpenAPI document it publishes."""
    memory = Memory.open(fresh_backend_url("memory", tmp_path_factory.mktemp("utf8"), "unreadable"))
    try:
        with memdock_client(memory) as client:
            yield client, memory, client.get("/openapi.json").json()
    finally:
        memory.close()


def envelope_problem(api: str, status: int, body: Any) -> str | None:
    """Why `body` (answered with `status`) is not the API's documented refusal of an unreadable body."""
    if api == "native":
        error = body.get("error") if isinstance(body, dict) else None
        ok = (status == 400 and isinstance(error, dict) and error.get("type") == "InvalidInput"
              and error.get("field") == "body" and bool(error.get("message")) and "request_id" in body)
    elif api == "mem0":
        ok = (status == 400 and isinstance(body, dict) and set(body) == {"detail"} and isinstance(body["detail"], str)
              and "body" in body["detail"])
    elif api == "mem0ai-api":
        ok = (status == 422 and isinstance(body, dict) and set(body) == {"code", "error", "message"}
              and body["code"] == 422 and body["error"] == "ValueError" and "body" in body["message"])
    else:
        ok = status == 400 and isinstance(body, dict) and set(body) == {"error_code", "error_msg"}
    return None if ok else f"{status} {body!r:.300}"


@pytest.mark.parametrize("raw", NOT_UTF8, ids=["latin-1", "garbage"])
@pytest.mark.parametrize(("api", "method", "path"), BODY_ROUTES, ids=[f"{m} {p}" for _, m, p in BODY_ROUTES])
def test_a_body_that_is_not_utf8_gets_the_apis_own_envelope_with_a_documented_status(
        served: tuple[MemdockTestClient, Memory, dict[str, Any]], api: str, method: str, path: str,
        raw: bytes) -> None:
    client, memory, document = served
    response = client.request(method, path, content=raw, headers={"content-type": "application/json"})
    assert response.headers["content-type"] == "application/json"
    assert envelope_problem(api, response.status_code, response.json()) is None
    assert "error parsing the body" not in response.text  # FastAPI's own words
    if api != "retrieval":  # Dify's route documents its errors in prose (its description)
        operation = document["paths"][_templated(path)][method.lower()]
        assert str(response.status_code) in operation["responses"]
    assert memory.list(user_id="u").items == []


def _templated(path: str) -> str:
    """The OpenAPI path of a request path used above (``m1`` is the memory id)."""
    bare = path.split("?")[0]
    return bare.replace("/m1", "/{memory_id}")


LIMIT = 2048
TOO_LARGE = b'{"text": "' + b"x" * (2 * LIMIT) + b'", "data": "x", "user_id": "u", "query": "x"}'


def too_large_problem(api: str, status: int, body: Any) -> str | None:
    """Why `body` (answered with `status`) is not the API's documented 413."""
    if api == "native":
        error = body.get("error") if isinstance(body, dict) else None
        ok = isinstance(error, dict) and error.get("type") == "BodyTooLarge" and error.get("field") == "body"
    elif api == "mem0":
        ok = isinstance(body, dict) and set(body) == {"detail"} and str(LIMIT) in body["detail"]
    elif api == "mem0ai-api":
        ok = body == {"code": 413, "error": "BodyTooLarge", "message": f"body: request body exceeds {LIMIT} bytes"}
    else:
        ok = isinstance(body, dict) and set(body) == {"error_code", "error_msg"} and body["error_code"] == 413
    return None if status == 413 and ok else f"{status} {body!r:.300}"


def streamed(raw: bytes) -> Iterator[bytes]:
    """`raw` in chunks, sent without a Content-Length (chunked transfer encoding)."""
    for start in range(0, len(raw), 512):
        yield raw[start:start + 512]


@pytest.mark.parametrize("how", ["declared", "streamed"])
def test_a_body_over_the_limit_gets_413_in_the_apis_own_envelope(tmp_path: Path, how: str) -> None:
    memory = Memory.open(fresh_backend_url("memory", tmp_path, "too-large"))
    try:
        with memdock_app_server(memory, "--max-body-bytes", str(LIMIT)) as base, httpx.Client(base_url=base) as http:
            document = http.get("/openapi.json").json()
            problems = []
            for api, method, path in BODY_ROUTES:
                content = TOO_LARGE if how == "declared" else streamed(TOO_LARGE)
                response = http.request(method, path, content=content, headers={"content-type": "application/json"})
                documented = api == "retrieval" or "413" in document["paths"][_templated(path)][method.lower()][
                    "responses"]  # Dify's route documents its errors in prose
                if (problem := too_large_problem(api, response.status_code, response.json())) is not None:
                    problems.append(f"{method} {path}: {problem}")
                elif not documented:
                    problems.append(f"{method} {path}: 413 is not documented")
            assert problems == []
            assert memory.list(user_id="u").items == []
    finally:
        memory.close()
