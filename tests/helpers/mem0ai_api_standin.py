"""A STAND-IN for tonori/mem0ai-api (FastAPI around mem0 0.0.9 with Qdrant and an LLM), which cannot run
here. It keeps memories in memory and answers as the recorded exchanges in
``tests/data/mem0ai-api-transcripts.json`` show, unsafe parts included:

- envelopes ``{"code": 0, "data": ...}`` with BARE lists; a wrong or missing key is HTTP 200 ``{"code": 401,
  "error": "Unauthorized_Error", "message": "Unauthorized"}``, but routes taking a memory id answer 404
  for an unknown (or deleted) id BEFORE the key is checked;
- items ``{"id", "text", "metadata": {<user keys>, <scope ids>, "data", "created_at": epoch s}, "score"?}``,
  search scores the RAW cosine; history ``{"id", "memory_id", "prev_value", "new_value", "event",
  "timestamp" (naive UTC), "is_deleted": 0|1}``, 404 once deleted;
- ``PUT /update/{id}?data=`` REPLACES the payload with ``{data, updated_at}`` (scope, metadata and
  created_at are lost); a store, search or listing without a scope id works on every user; ``""`` ids count as
  absent; ``limit: null`` and ``/delete-all`` without a scope answer a plain-text 500; ``/reset-all`` answers
  204 and then every memory route answers 404 "Collection doesn't exist!";
- store goes through mem0's LLM: `decide` (text, existing memories of the scope) -> the events it answers
  (by default one ``add`` of the text verbatim, as with the recorded LLM stub); tests give other deciders
  to play zero events, several, rewritten texts, or updates and deletes of other memories;
- `fail_next_reads` / `fail_next_writes` make the next calls answer the plain-text 500 that parallel
  writes produce on the real service (one SQLite connection shared by threads).

Similarity uses memdock's deterministic ``hash`` embedder.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import numpy as np

from memdock.urls import make_embedder
from tests.helpers.mem0_standins import Reply, ScopeIndex, Seen, StandIn, cosines, fastapi_422, standin

IDS = ("user_id", "agent_id", "run_id")
UNAUTHORIZED = {"code": 401, "error": "Unauthorized_Error", "message": "Unauthorized"}
NO_COLLECTION = {"code": 404, "error": "UnexpectedResponse_Error", "message": "Collection doesn't exist!"}
Decision = list[tuple[str, str | None, str | None]]
"""What the LLM decides: (event "add"|"update"|"delete", memory id for update/delete, text)."""
Decider = Callable[[str, list[dict[str, Any]]], Decision]


def verbatim(text: str, existing: list[dict[str, Any]]) -> Decision:
    """The recorded LLM stub: add the text as it is."""
    return [("add", None, text)]


def _ok(data: Any = None) -> Reply:
    return Reply(body={"code": 0, "data": data})


def _server_error() -> Reply:
    return Reply(status=500, raw=b"Internal Server Error", content_type="text/plain; charset=utf-8")


def _not_found(memory_id: str) -> Reply:
    return Reply(status=404, body={"detail": f"Memory {memory_id} not found"})


class Mem0aiApiStandIn:
    """The state and the routes. `auth_key` "" = no key required (tonori's default)."""

    def __init__(self, auth_key: str = "", decide: Decider = verbatim) -> None:
        self.auth_key = auth_key
        self.decide = decide
        self.payloads: dict[str, dict[str, Any]] = {}
        self.vectors: dict[str, np.ndarray] = {}
        self.index = ScopeIndex(IDS)
        self.history: dict[str, list[dict[str, Any]]] = {}
        self.collection = True
        self.fail_next_reads = 0
        self.fail_next_writes = 0
        self.lock = threading.RLock()
        self.embedder = make_embedder("hash")

    def __call__(self, seen: Seen) -> Reply:
        with self.lock:
            return self._route(seen)

    # -- plumbing ------------------------------------------------------------------------------------------

    def _authorized(self, seen: Seen) -> bool:
        if self.auth_key == "":
            return True
        header = seen.headers.get("authorization", "")
        return header.startswith("Bearer ") and header.removeprefix("Bearer ") == self.auth_key

    def _live(self, memory_id: str) -> bool:
        entries = self.history.get(memory_id, [])
        return bool(entries) and not entries[-1]["is_deleted"]

    def _route(self, seen: Seen) -> Reply:
        method, path = seen.method, seen.path
        parts = path.strip("/").split("/")
        by_id = {("retrieve", "GET"), ("update", "PUT"), ("delete", "DELETE")}
        if len(parts) == 2 and (parts[0], method) in by_id:
            if not self._live(parts[1]):  # get_memory_id runs before authorize
                return _not_found(parts[1])
        elif len(parts) == 2 and parts[0] in ("retrieve", "update", "delete"):
            return Reply(status=405, body={"detail": "Method Not Allowed"})
        routes: dict[tuple[str, str], Callable[[], Reply]] = {
            ("GET", "/authorized"): lambda: _ok(),
            ("POST", "/store"): lambda: self._store(seen),
            ("POST", "/search"): lambda: self._search(seen),
            ("GET", "/retrieve"): lambda: self._retrieve(seen),
            ("DELETE", "/delete-all"): lambda: self._delete_all(seen),
            ("DELETE", "/reset-all"): self._reset,
        }
        if len(parts) == 2:
            handler = {"retrieve": lambda: self._history(parts[1]), "update": lambda: self._update(seen, parts[1]),
                       "delete": lambda: self._delete(parts[1])}[parts[0]]
        elif (method, path) in routes:
            handler = routes[(method, path)]
        elif path in {p for _, p in routes}:
            return Reply(status=405, body={"detail": "Method Not Allowed"})
        else:
            return Reply(status=404, body={"detail": "Not Found"})
        if not self._authorized(seen):
            return Reply(body=UNAUTHORIZED)
        if path != "/authorized" and (method == "GET" or path == "/search") and self.fail_next_reads:
            self.fail_next_reads -= 1
            return _server_error()
        if method in ("POST", "PUT", "DELETE") and path != "/search" and self.fail_next_writes:
            self.fail_next_writes -= 1
            return _server_error()
        if not self.collection and path not in ("/authorized", "/reset-all"):
            return Reply(status=404, body=NO_COLLECTION)
        return handler()

    def _item(self, memory_id: str, score: float | None = None) -> dict[str, Any]:
        payload = self.payloads[memory_id]
        item: dict[str, Any] = {"id": memory_id, "text": payload["data"], "metadata": dict(payload)}
        if score is not None:
            item["score"] = score
        return item

    def _matching(self, filters: dict[str, Any]) -> list[str]:
        found, exact = self.index.candidates(filters, self.payloads)
        return found if exact else [i for i in found if all(self.payloads[i].get(k) == v for k, v in filters.items())]

    def _put(self, memory_id: str, payload: dict[str, Any]) -> None:
        self.payloads[memory_id] = payload
        self.vectors[memory_id] = np.asarray(self.embedder.embed([payload["data"]])[0])
        self.index.put(memory_id, payload)

    def _ranked(self, query: str, ids: list[str]) -> list[tuple[float, str]]:
        """(cosine with the query, id) of each memory, in `ids` order."""
        vector = self.embedder.embed([query])[0]
        return list(zip(cosines(vector, [self.vectors[i] for i in ids]), ids, strict=True))

    def _add_history(self, memory_id: str, old: str | None, new: str | None, event: str) -> None:
        self.history.setdefault(memory_id, []).append({
            "id": str(uuid.uuid4()), "memory_id": memory_id, "prev_value": old, "new_value": new, "event": event,
            "timestamp": datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" "),
            "is_deleted": int(event == "delete")})

    # -- routes --------------------------------------------------------------------------------------------

    def _store(self, seen: Seen) -> Reply:
        body = seen.body
        problem = fastapi_422(body, {"data": str}, {"user_id": str, "agent_id": str, "run_id": str, "metadata": dict,
                                                  "filters": dict, "prompt": str})
        if problem is not None:
            return problem
        metadata = dict(body.get("metadata") or {})
        filters = dict(body.get("filters") or {})
        for key in IDS:
            if body.get(key):
                filters[key] = metadata[key] = body[key]
        nearby = [i for _, i in sorted(self._ranked(body["data"], self._matching(filters)), key=lambda s: -s[0])[:5]]
        existing = [{"id": i, "text": self.payloads[i]["data"], "metadata": dict(self.payloads[i])} for i in nearby]
        events = []
        for event, target, text in self.decide(body["data"], existing):
            if event == "add" and text is not None:
                memory_id = str(uuid.uuid4())
                self._put(memory_id, {**metadata, "data": text, "created_at": int(time.time())})
                self._add_history(memory_id, None, text, "add")
            elif event == "update" and target is not None and text is not None:
                memory_id = target
                old = self.payloads[memory_id]["data"]
                self._put(memory_id, {**metadata, "data": text, "updated_at": int(time.time())})
                self._add_history(memory_id, old, text, "update")
            elif event == "delete" and target is not None:
                memory_id = target
                self._forget(memory_id)
            else:
                raise ValueError(f"bad decision {(event, target, text)}")
            events.append({"id": memory_id, "event": event, "data": text})
        return _ok(events)

    def _search(self, seen: Seen) -> Reply:
        body = seen.body
        problem = fastapi_422(body, {"query": str}, {"user_id": str, "agent_id": str, "run_id": str, "limit": int,
                                                   "filters": dict})
        if problem is not None:
            return problem
        limit = body.get("limit", 100)
        if limit is None:
            return _server_error()
        filters = dict(body.get("filters") or {})
        filters |= {k: body[k] for k in IDS if body.get(k)}
        ranked = sorted(self._ranked(body["query"], self._matching(filters)), reverse=True)
        return _ok([self._item(i, score) for score, i in ranked[:limit]])

    def _retrieve(self, seen: Seen) -> Reply:
        filters = {k: v[0] for k, v in seen.query.items() if k in IDS and v and v[0]}
        raw = seen.query.get("limit", ["100"])[0]
        try:
            limit = int(raw)
        except ValueError:
            return Reply(status=422, body={"detail": [{"type": "int_parsing", "loc": ["query", "limit"],
                                                       "msg": "Input should be a valid integer, unable to parse "
                                                              "string as an integer", "input": raw}]})
        return _ok([self._item(i) for i in self._matching(filters)[:limit]])

    def _history(self, memory_id: str) -> Reply:
        return _ok([dict(entry) for entry in self.history[memory_id]])

    def _update(self, seen: Seen, memory_id: str) -> Reply:
        data = seen.query.get("data")
        if not data:
            return Reply(status=422, body={"detail": [{"type": "missing", "loc": ["query", "data"],
                                                       "msg": "Field required", "input": None}]})
        old = self.payloads[memory_id]["data"]
        self._put(memory_id, {"data": data[0], "updated_at": int(time.time())})
        self._add_history(memory_id, old, data[0], "update")
        return _ok()

    def _forget(self, memory_id: str) -> None:
        self._add_history(memory_id, self.payloads[memory_id]["data"], None, "delete")
        del self.payloads[memory_id], self.vectors[memory_id]
        self.index.drop(memory_id)

    def _delete(self, memory_id: str) -> Reply:
        self._forget(memory_id)
        return _ok()

    def _delete_all(self, seen: Seen) -> Reply:
        filters = {k: v[0] for k, v in seen.query.items() if k in IDS and v and v[0]}
        if not filters:
            return _server_error()  # mem0 raises ValueError; tonori's handler fails to serialize it
        for memory_id in self._matching(filters):
            self._forget(memory_id)
        return _ok()

    def _reset(self) -> Reply:
        self.payloads.clear()
        self.vectors.clear()
        self.index.clear()
        self.history.clear()
        self.collection = False
        return Reply(status=204)


@contextmanager
def mem0ai_api_standin(auth_key: str = "", decide: Decider = verbatim) -> Iterator[tuple[StandIn, Mem0aiApiStandIn]]:
    """Serve a fresh stand-in of tonori/mem0ai-api on 127.0.0.1; stopped afterwards."""
    state = Mem0aiApiStandIn(auth_key, decide)
    with standin(state) as service:
        yield service, state
