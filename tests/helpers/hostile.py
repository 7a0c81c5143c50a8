"""Hostile values and the answers memdock documents for bad input, per API, for the hostile-input,
isolation and load suites (tests/e2e/).

Values that JSON cannot carry as such (NaN, Infinity, 1e400, a 5,000-digit integer, lone surrogates) are
written into the body text by `hostile_json`, exactly as a hostile client would send them. `SOAK` is the
switch ``nox -s soak`` sets (``MEMDOCK_SOAK=1``) to scale examples and durations up.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

SOAK = os.environ.get("MEMDOCK_SOAK") == "1"


def scaled(short: int, factor: int = 10) -> int:
    """`short` in CI, `short * factor` under ``MEMDOCK_SOAK=1``."""
    return short * factor if SOAK else short


@dataclass(frozen=True)
class Raw:
    """A JSON token written verbatim into a body (``NaN``, ``1e400``, a 5,000-digit integer)."""

    token: str


NUL = "a\x00b"
SURROGATE = "x\ud800y"
LONE_LOW = "\udfff"
HOSTILE_STRINGS: tuple[str, ...] = (NUL, SURROGATE, LONE_LOW)
HUGE_INT = Raw("9" * 5000)
HOSTILE_NUMBERS: tuple[Raw, ...] = (Raw("NaN"), Raw("Infinity"), Raw("-Infinity"), Raw("1e400"), HUGE_INT)
FASTAPI_UNPARSABLE = {"detail": "There was an error parsing the body"}
"""FastAPI's own answer to a body its JSON decoder refuses (a 5,000-digit integer, ~1,000 levels of nesting),
which the mem0 dialects keep because the FastAPI services they mirror answer it."""
FAR_EXPIRY = "9999-12-31T23:59:59-14:00"


def hostile_json(value: Any) -> bytes:
    """`value` as the body a hostile client sends: `Raw` tokens verbatim, lone surrogates as ``\\ud800``
    escapes (valid JSON syntax that decodes to a string UTF-8 cannot encode)."""
    tokens: dict[str, str] = {}

    def mark(item: Any) -> Any:
        if isinstance(item, Raw):
            key = f"__raw_{len(tokens)}__"
            tokens[key] = item.token
            return key
        if isinstance(item, dict):
            return {mark(k): mark(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [mark(v) for v in item]
        return item

    text = json.dumps(mark(value))  # ensure_ascii: surrogates and NUL become \u escapes
    for key, token in tokens.items():
        text = text.replace(f'"{key}"', token)
    return text.encode("ascii")


def nested(depth: int, leaf: Any = 1, key: str = "a") -> Any:
    """An object nested `depth` levels deep: ``{"a": {"a": ... leaf}}``."""
    value = leaf
    for _ in range(depth):
        value = {key: value}
    return value


def deep_filter(depth: int) -> dict[str, Any]:
    """A mem0-style filter of `depth` nested ANDs around one comparison."""
    value: dict[str, Any] = {"rating": {"eq": 1}}
    for _ in range(depth):
        value = {"AND": [value]}
    return value


def raw_nested(depth: int, leaf: str = "1") -> Raw:
    """`nested` as JSON text, for depths Python's own encoder cannot write."""
    return Raw('{"a": ' * depth + leaf + "}" * depth)


def raw_deep_filter(depth: int, first: str = "") -> Raw:
    """`deep_filter` as JSON text; `first` (e.g. ``"user_id": "u1", ``) opens the outermost object."""
    inner = '{"AND": [' * (depth - 1) + '{"rating": {"eq": 1}}' + "]}" * (depth - 1)
    return Raw("{" + first + '"AND": [' + inner + "]}")


def send(client: httpx.Client, method: str, path: str, *, body: Any = None,
         params: dict[str, str] | None = None) -> httpx.Response:
    """One request; a `body` goes through `hostile_json` (``bytes`` are sent as they are)."""
    content = None if body is None else body if isinstance(body, bytes) else hostile_json(body)
    headers = {"content-type": "application/json"} if content is not None else {}
    if params:
        path += "?" + "&".join(f"{quoted(k)}={quoted(v)}" for k, v in params.items())
    return client.request(method, path, content=content, headers=headers)


def quoted(text: str) -> str:
    """`text` percent-encoded as a path segment or query value; a lone surrogate goes as the bytes Python's
    ``surrogatepass`` writes (what a hostile client can put on the wire: not UTF-8)."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


def api_of(path: str) -> str:
    """Which API a path belongs to (the default mounts)."""
    for prefix, name in (("/v1/", "native"), ("/mem0/", "mem0"), ("/mem0ai-api/", "mem0ai"),
                         ("/retrieval", "retrieval")):
        if path.startswith(prefix):
            return name
    raise ValueError(path)


def refusal_problem(path: str, response: httpx.Response, *, missing_ok: bool = False) -> str | None:
    """Why `response` is NOT a documented refusal of bad input on the API `path` belongs to, or None when
    it is one. Never a 5xx (in particular never 503 + Retry-After: bad input is not an outage); the API's
    own error envelope; a field named where the envelope has a place for it. With `missing_ok` (a hostile
    memory id), the API's documented answer to a missing id passes too."""
    status = response.status_code
    if status >= 500:
        return f"{status} (server error) {response.text[:300]}"
    if "retry-after" in response.headers:
        return f"{status} with Retry-After"
    try:
        body = response.json()
    except ValueError:
        return f"{status} body is not JSON: {response.text[:200]!r}"
    api = api_of(path)
    if missing_ok and _is_missing(api, status, body):
        return None
    if api == "native":
        error = body.get("error") if isinstance(body, dict) else None
        if status not in (400, 422) or not isinstance(error, dict):
            return f"{status} {body!r:.300}"
        if error.get("type") not in ("InvalidInput", "InvalidFilter", "ScopeRequired"):
            return f"type {error.get('type')!r}"
        if not error.get("field") or not error.get("message"):
            return f"no field/message: {error!r:.300}"
        return None
    if api == "mem0":
        ok = status in (400, 422) and isinstance(body, dict) and set(body) == {"detail"} and body["detail"]
        return None if ok else f"{status} {body!r:.300}"
    if api == "mem0ai":
        if status == 400 and body == FASTAPI_UNPARSABLE:  # what tonori (a FastAPI app) answers too
            return None
        if status == 422 and isinstance(body, dict) and isinstance(body.get("detail"), list) and body["detail"]:
            return None
        ok = (status == 422 and isinstance(body, dict) and body.get("code") == 422
              and body.get("error") == "ValueError" and body.get("message"))
        return None if ok else f"{status} {body!r:.300}"
    ok = (status in (400, 404) and isinstance(body, dict) and isinstance(body.get("error_code"), int)
          and body.get("error_msg") and (status == 400 or body["error_code"] == 2001))
    return None if ok else f"{status} {body!r:.300}"


def _is_missing(api: str, status: int, body: Any) -> bool:
    """The API's answer to an id it does not know (docs/server.md)."""
    if api == "native":
        return status == 404 and isinstance(body, dict) and body.get("error", {}).get("type") == "MemoryNotFound"
    if api == "mem0":
        return (status == 200 and body in (None, [])) or (status == 404 and "detail" in body)
    if api == "mem0ai":
        return status == 404 and isinstance(body, dict) and "detail" in body
    return False
