"""Loopback HTTP plumbing for stand-ins of mem0 services nobody can run here (the hosted platform; the
stateful stand-ins of mem0's server and of tonori/mem0ai-api in `mem0_server_standin` and
`mem0ai_api_standin`) and for faulty services (dropped connections, 500s, stalls, malformed JSON). Real
sockets on 127.0.0.1, real HTTP; every request is recorded (method, path, query, headers, body) so tests
can pin what the client sent.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np


@dataclass
class Seen:
    """One request as the stand-in received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    raw: bytes = b""
    """The body as sent; `body` is its JSON (None when empty or not JSON)."""


@dataclass
class Reply:
    """What to answer: a status and a JSON body, raw bytes, a stall, or a dropped connection; extra headers."""

    status: int = 200
    body: Any = None
    raw: bytes | None = None
    stall: float = 0.0
    drop: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


Handler = Callable[[Seen], Reply]


@dataclass
class StandIn:
    """A running stand-in: `url` is its base URL, `seen` every request so far."""

    url: str
    seen: list[Seen] = field(default_factory=list)

    def methods(self) -> list[str]:
        """The methods of every request received, in order."""
        return [s.method for s in self.seen]


@contextmanager
def standin(handler: Handler) -> Iterator[StandIn]:
    """Serve `handler` on 127.0.0.1 (a free port) in a thread; stopped afterwards."""
    record: list[Seen] = []

    class RequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            seen = Seen(self.command, parts.path, parse_qs(parts.query, keep_blank_values=True), headers, body, raw)
            record.append(seen)
            reply = handler(seen)
            if reply.stall:
                time.sleep(reply.stall)
            if reply.drop:
                self.close_connection = True
                self.connection.shutdown(2)
                return
            payload = reply.raw if reply.raw is not None else (b"" if reply.body is None and reply.status == 204
                                                                else json.dumps(reply.body).encode())
            self.send_response(reply.status)
            if reply.status != 204:
                self.send_header("content-type", reply.content_type)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    server = ThreadingHTTPServer(("127.0.0.1", 0), RequestHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield StandIn(f"127.0.0.1:{server.server_address[1]}", record)
    finally:
        server.shutdown()
        server.server_close()


# -- what both stateful stand-ins keep: a scope index and the cosine --------------------------------------


def _indexable(value: Any) -> bool:
    """A JSON value that can be looked up by hash with the answers of ``==`` (not None, a list or an object)."""
    return isinstance(value, str | int | float)


class ScopeIndex:
    """Memory ids by the values of their scope keys, so that a scoped read visits only its scope's memories
    (10,000-record migrations through a stand-in stay linear). Reads answer what a scan over every memory
    in insertion order would: `candidates` is a superset of the matches, in that order; callers still test
    each candidate."""

    def __init__(self, keys: Sequence[str]) -> None:
        self.keys = tuple(keys)
        self._members: dict[tuple[str, Any], set[str]] = {}
        self._entries: dict[str, list[tuple[str, Any]]] = {}
        self._position: dict[str, int] = {}
        self._counter = itertools.count()

    def put(self, memory_id: str, payload: Mapping[str, Any]) -> None:
        """Index a memory under its payload's scope values (again after a change); it keeps its first place."""
        self._unlink(memory_id)
        self._position.setdefault(memory_id, next(self._counter))
        entries = [(key, payload[key]) for key in self.keys if _indexable(payload.get(key))]
        for entry in entries:
            self._members.setdefault(entry, set()).add(memory_id)
        self._entries[memory_id] = entries

    def drop(self, memory_id: str) -> None:
        """Forget a memory."""
        self._unlink(memory_id)
        self._position.pop(memory_id, None)

    def clear(self) -> None:
        """Forget every memory."""
        self._members.clear()
        self._entries.clear()
        self._position.clear()

    def candidates(self, equal: Mapping[str, Any], every: Iterable[str]) -> tuple[list[str], bool]:
        """The ids that can satisfy the equality conditions `equal`, in insertion order, and whether they
        are exactly those that do (every condition names a scope key by an indexable value). Not exact: the
        ids under the rarest value named, or all of `every` when none is."""
        pools = [self._members.get((key, value), set()) for key, value in equal.items()
                 if key in self.keys and _indexable(value)]
        if not pools:
            return list(every), False
        pools.sort(key=len)
        found = pools[0].intersection(*pools[1:]) if len(pools) == len(equal) else pools[0]
        return sorted(found, key=self._position.__getitem__), len(pools) == len(equal)

    def _unlink(self, memory_id: str) -> None:
        for entry in self._entries.pop(memory_id, []):
            self._members[entry].discard(memory_id)


def cosines(query: Sequence[float], vectors: Sequence[Any]) -> list[float]:
    """The cosine of `query` with each of `vectors` (0 where either has no length)."""
    if not vectors:
        return []
    matrix = np.asarray(vectors, dtype=np.float64)
    target = np.asarray(query, dtype=np.float64)
    norms = np.linalg.norm(matrix, axis=1) * np.linalg.norm(target)
    dots = matrix @ target
    safe = np.where(norms == 0, 1.0, norms)
    return [float(x) for x in np.where(norms == 0, 0.0, dots / safe)]


# -- FastAPI's validation answers (both real mem0 services are FastAPI apps) -------------------------------

TYPE_ERRORS = {list: ("list_type", "Input should be a valid list"),
               str: ("string_type", "Input should be a valid string"),
               dict: ("dict_type", "Input should be a valid dictionary"),
               int: ("int_type", "Input should be a valid integer"),
               bool: ("bool_type", "Input should be a valid boolean")}
"""FastAPI's error type and message per expected type (anything else, e.g. ``(int, float)``, is a number)."""


def fastapi_missing(loc: list[Any], given: Any) -> Reply:
    """FastAPI's 422 for a required field (or body) that is absent."""
    return Reply(status=422, body={"detail": [{"type": "missing", "loc": loc, "msg": "Field required",
                                               "input": given}]})


def fastapi_422(body: Any, required: dict[str, Any], optional: dict[str, Any]) -> Reply | None:
    """FastAPI's 422 for a JSON body that is not an object, lacks a required field, or holds a field of
    the wrong type (None is fine for an optional one; a bool is never an int); None when the body is fine."""
    if not isinstance(body, dict):
        return Reply(status=422, body={"detail": [{"type": "model_attributes_type", "loc": ["body"],
                                                   "msg": "Input should be a valid dictionary or object to extract "
                                                          "fields from", "input": body}]})
    for name in required:
        if name not in body:
            return fastapi_missing(["body", name], body)
    for name, kind in {**required, **optional}.items():
        value = body.get(name)
        if value is None and name in optional:
            continue
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            error, message = TYPE_ERRORS.get(kind if isinstance(kind, type) else float,
                                             ("float_type", "Input should be a valid number"))
            return Reply(status=422, body={"detail": [{"type": error, "loc": ["body", name], "msg": message,
                                                       "input": value}]})
    return None
