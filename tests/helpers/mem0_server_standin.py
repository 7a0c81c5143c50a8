"""A STAND-IN for mem0's self-hosted REST server (``server/main.py`` of mem0 2.x), which cannot run here
(it needs an LLM provider, an embedding provider and a vector store). It keeps memories in memory and
answers as the recorded exchanges in ``tests/data/mem0-server-transcripts.jsonl`` show, including what
clients trip over:

- ``POST /search`` applies a hidden ``threshold`` of 0.1 on the semantic score when none is sent, over-fetches
  ``max(top_k * 4, 60)`` semantic candidates, and ranks by (semantic + bm25) / 2 whenever any keyword hit
  exists (mem0's additive scoring); ``explain: true`` adds ``score_details``;
- ``PUT /memories/{id}`` MERGES metadata (keys are never removed) and keeps ``role``;
- ``GET /memories/{id}`` answers 200 ``null`` for a missing id; non-UUID ids answer 502; history survives
  deletion; ``GET /memories`` without a scope answers the raw payloads (admin listing);
- 400/422 bodies as FastAPI and the server word them; 401 with ``WWW-Authenticate`` when a key is required;
  every answer carries ``X-Request-ID``.

Similarity uses memdock's deterministic ``hash`` embedder, so a client told ``server_embedder=hash`` can
recompute every semantic score.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import numpy as np

from memdock.urls import make_embedder
from tests.helpers.mem0_standins import (
    Reply,
    ScopeIndex,
    Seen,
    StandIn,
    cosines,
    fastapi_422,
    fastapi_missing,
    standin,
)

IDS = ("user_id", "agent_id", "run_id")
IDENTITY = frozenset({*IDS, "actor_id"})
PROMOTED = ("user_id", "agent_id", "run_id", "actor_id", "role", "attributed_to", "expiration_date")
CORE = frozenset({"data", "hash", "created_at", "updated_at", "id", "text_lemmatized", "attributed_to", *PROMOTED})
DEFAULT_THRESHOLD = 0.1
DEFAULT_TOP_K = 20
NO_SCOPE_SEARCH = ("filters must contain at least one of: user_id, agent_id, run_id. "
                   "Example: filters={'user_id': 'u1'}")


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _terms(text: str) -> list[str]:
    return [t for t in "".join(c.lower() if c.isalnum() else " " for c in text).split() if t]


class Mem0ServerStandIn:
    """The state and the routes. `api_key` None = auth disabled (``AUTH_DISABLED``)."""

    def __init__(self, api_key: str | None = None) -> None:
        self.api_key = api_key
        self.payloads: dict[str, dict[str, Any]] = {}
        self.vectors: dict[str, np.ndarray] = {}
        self.terms: dict[str, list[str]] = {}
        self.index = ScopeIndex(IDS)
        self.history: dict[str, list[dict[str, Any]]] = {}
        self.lock = threading.RLock()
        self.embedder = make_embedder("hash")

    # -- plumbing ------------------------------------------------------------------------------------------

    def __call__(self, seen: Seen) -> Reply:
        request_id = uuid.uuid4().hex[:8]
        with self.lock:
            reply = self._route(seen, request_id)
        reply.headers.setdefault("x-request-id", request_id)
        return reply

    def _route(self, seen: Seen, request_id: str) -> Reply:
        path, method = seen.path, seen.method
        segments = path.strip("/").split("/") if path != "/" else []
        if path == "/memories":
            routes: dict[str, Callable[[], Reply]] = {
                "POST": lambda: self._add(seen), "GET": lambda: self._list(seen),
                "DELETE": lambda: self._delete_all(seen)}
        elif len(segments) == 2 and segments[0] == "memories" and not path.endswith("/"):
            routes = {"GET": lambda: self._get(segments[1], request_id),
                      "PUT": lambda: self._update(seen, segments[1], request_id),
                      "DELETE": lambda: self._delete(segments[1], request_id)}
        elif len(segments) == 3 and segments[0] == "memories" and segments[2] == "history":
            routes = {"GET": lambda: self._history(segments[1], request_id)}
        elif path == "/search":
            routes = {"POST": lambda: self._search(seen)}
        elif path == "/reset":
            routes = {"POST": self._reset}
        else:
            return Reply(status=404, body={"detail": "Not Found"})
        if method not in routes:
            return Reply(status=405, body={"detail": "Method Not Allowed"}, headers={"allow": ", ".join(routes)})
        if method in ("POST", "PUT") and path != "/reset":
            invalid = _json_problem(seen)
            if invalid is not None:
                return invalid
        refused = self._auth(seen)
        return refused if refused is not None else routes[method]()

    def _auth(self, seen: Seen) -> Reply | None:
        if self.api_key is None:
            return None
        key = seen.headers.get("x-api-key")
        bearer = seen.headers.get("authorization", "")
        if key is None and not bearer:
            return Reply(status=401, body={"detail": "Authentication required. Provide a Bearer token or X-API-Key "
                                                     "header."}, headers={"www-authenticate": "Bearer"})
        if key is not None:
            return None if key == self.api_key else Reply(status=401, body={"detail": "Invalid API key."})
        return Reply(status=401, body={"detail": "Invalid or expired token."})

    # -- shapes --------------------------------------------------------------------------------------------

    def _item(self, memory_id: str, *, score: float | None = None, with_score: bool = False) -> dict[str, Any]:
        payload = self.payloads[memory_id]
        extra = {k: v for k, v in payload.items() if k not in CORE}
        item: dict[str, Any] = {"id": memory_id, "memory": payload["data"], "hash": payload["hash"],
                                "metadata": extra or None}
        if with_score:
            item["score"] = score
        item |= {"created_at": payload["created_at"], "updated_at": payload["updated_at"]}
        for key in PROMOTED:
            if payload.get(key) is not None:
                item[key] = payload[key]
        return item

    def _raw_item(self, memory_id: str) -> dict[str, Any]:
        payload = self.payloads[memory_id]
        return {"id": memory_id, "memory": payload["data"], **{k: payload.get(k) for k in IDS},
                "hash": payload["hash"], "expiration_date": payload.get("expiration_date"),
                "metadata": {k: v for k, v in payload.items() if k not in CORE or k in ("role", "text_lemmatized")},
                "created_at": payload["created_at"], "updated_at": payload["updated_at"]}

    def _in_scope(self, memory_id: str, filters: dict[str, Any]) -> bool:
        payload = self.payloads[memory_id]
        return all(_matches(payload.get(key), condition) for key, condition in filters.items())

    def _scoped(self, filters: dict[str, Any]) -> list[str]:
        """The memories that match `filters`, oldest first."""
        equal = {k: v for k, v in filters.items() if isinstance(v, str) and v != "*"}
        found, exact = self.index.candidates(equal, self.payloads)
        return found if exact and len(equal) == len(filters) else [i for i in found if self._in_scope(i, filters)]

    def _embed(self, memory_id: str, text: str) -> None:
        self.vectors[memory_id] = np.asarray(self.embedder.embed([text])[0])
        self.terms[memory_id] = _terms(text)

    def _event(self, memory_id: str, old: str | None, new: str | None, event: str, when: str) -> None:
        payload = self.payloads[memory_id]
        self.history.setdefault(memory_id, []).append({
            "id": str(uuid.uuid4()), "memory_id": memory_id, "old_memory": old, "new_memory": new, "event": event,
            "created_at": payload["created_at"], "updated_at": when, "is_deleted": event == "DELETE",
            "actor_id": payload.get("actor_id"), "role": payload.get("role")})

    # -- routes --------------------------------------------------------------------------------------------

    def _add(self, seen: Seen) -> Reply:
        body = seen.body
        problem = fastapi_422(body, {"messages": list}, optional={"user_id": str, "agent_id": str, "run_id": str,
                                                              "metadata": dict, "infer": bool,
                                                              "expiration_date": str, "memory_type": str})
        if problem is not None:
            return problem
        for index, message in enumerate(body["messages"]):
            if not isinstance(message, dict) or "content" not in message:
                return fastapi_missing(["body", "messages", index, "content"], message)
        scope = {k: body[k] for k in IDS if body.get(k)}
        if not scope:
            return Reply(status=400, body={"detail": "At least one identifier (user_id, agent_id, run_id) is "
                                                     "required."})
        if body.get("memory_type") not in (None, "procedural_memory"):
            return Reply(status=400, body={"detail": "Invalid 'memory_type'. Please pass procedural_memory to create "
                                                     "procedural memories."})
        expiration = body.get("expiration_date")
        if expiration is not None:
            try:
                datetime.strptime(expiration, "%Y-%m-%d")
            except ValueError:
                return Reply(status=400, body={"detail": "expiration_date must be a valid date in YYYY-MM-DD format."})
        inferred = body.get("infer", True) is not False
        metadata = {k: v for k, v in (body.get("metadata") or {}).items() if k not in IDENTITY}
        results = []
        for message in body["messages"]:
            if message.get("role") == "system":
                continue
            memory_id, text, when = str(uuid.uuid4()), str(message["content"]), _now()
            payload = {**metadata, "data": text, "hash": hashlib.md5(text.encode()).hexdigest(),
                       "text_lemmatized": text, "created_at": when, "updated_at": when, **scope}
            if not inferred:
                payload["role"] = message.get("role", "user")
            if expiration is not None:
                payload["expiration_date"] = expiration
            self.payloads[memory_id] = payload
            self._embed(memory_id, text)
            self.index.put(memory_id, payload)
            self._event(memory_id, None, text, "ADD", when)
            result: dict[str, Any] = {"id": memory_id, "memory": text, "event": "ADD"}
            if not inferred:
                result |= {"actor_id": None, "role": payload["role"]}
            results.append(result)
        return Reply(body={"results": results})

    def _list(self, seen: Seen) -> Reply:
        top_k, problem = _top_k(seen)
        if problem is not None:
            return problem
        scope = {k: v[0] for k, v in seen.query.items() if k in IDS and v and v[0]}
        if not scope:
            return Reply(body={"results": [self._raw_item(i) for i in self.payloads]})
        found = self._scoped(scope)
        return Reply(body={"results": [self._item(i) for i in found[: max(top_k, 1)]]})

    def _get(self, memory_id: str, request_id: str) -> Reply:
        if not _is_uuid(memory_id):
            return _upstream(request_id)
        if memory_id not in self.payloads:
            return Reply(body=None, raw=b"null")
        return Reply(body=self._item(memory_id, with_score=True))

    def _search(self, seen: Seen) -> Reply:
        body = seen.body
        problem = fastapi_422(body, {"query": str}, optional={"filters": dict, "top_k": int, "threshold": (int, float),
                                                          "explain": bool, "user_id": str, "agent_id": str,
                                                          "run_id": str})
        if problem is not None:
            return problem
        filters = dict(body.get("filters") or {})
        for key in IDS:
            if body.get(key):
                filters.setdefault(key, body[key])
        if not any(filters.get(k) for k in IDS):
            return Reply(status=400, body={"detail": NO_SCOPE_SEARCH})
        top_k = body.get("top_k", DEFAULT_TOP_K)
        threshold = body.get("threshold")
        threshold = DEFAULT_THRESHOLD if threshold is None else float(threshold)
        query = body["query"]
        pool = self._scoped(filters)
        similarity = cosines(self.embedder.embed([query])[0], [self.vectors[i] for i in pool])
        semantic = sorted(((max(0.0, cos), i) for cos, i in zip(similarity, pool, strict=True)), reverse=True)
        semantic = semantic[: max(top_k * 4, 60)]
        keyword = _bm25(query, {i: self.terms[i] for i in pool})
        max_possible = 2.0 if keyword else 1.0
        scored = []
        for sem, memory_id in semantic:
            if sem < threshold:
                continue
            bm25 = keyword.get(memory_id, 0.0)
            final = min((sem + bm25) / max_possible, 1.0)
            item = self._item(memory_id, score=final, with_score=True)
            if body.get("explain"):
                item["score_details"] = {"semantic_score": sem, "bm25_score": bm25, "entity_boost": 0.0,
                                         "raw_score": sem + bm25, "max_possible_score": max_possible,
                                         "final_score": final, "threshold": threshold}
            scored.append(item)
        scored.sort(key=lambda item: item["score"], reverse=True)
        return Reply(body={"results": scored[:top_k]})

    def _update(self, seen: Seen, memory_id: str, request_id: str) -> Reply:
        body = seen.body
        problem = fastapi_422(body, {}, optional={"text": str, "metadata": dict, "expiration_date": str})
        if problem is not None:
            return problem
        if not _is_uuid(memory_id):
            return _upstream(request_id)
        if all(body.get(k) is None for k in ("text", "metadata", "expiration_date")):
            return Reply(status=400, body={"detail": "At least one of text, metadata, or expiration_date must be "
                                                     "provided."})
        if memory_id not in self.payloads:
            return Reply(status=404, body={"detail": f"Memory with id {memory_id} not found. Please provide a valid "
                                                     "'memory_id'"})
        payload = self.payloads[memory_id]
        old = payload["data"]
        text = body.get("text") if body.get("text") is not None else old
        payload.update({k: v for k, v in (body.get("metadata") or {}).items() if k not in IDENTITY})
        if body.get("expiration_date") is not None:
            payload["expiration_date"] = body["expiration_date"]
        when = _now()
        payload.update(data=text, hash=hashlib.md5(text.encode()).hexdigest(), text_lemmatized=text, updated_at=when)
        self._embed(memory_id, text)
        self._event(memory_id, old, text, "UPDATE", when)
        return Reply(body={"message": "Memory updated successfully!"})

    def _delete(self, memory_id: str, request_id: str) -> Reply:
        if not _is_uuid(memory_id):
            return _upstream(request_id)
        if memory_id not in self.payloads:
            return Reply(status=404, body={"detail": f"Memory with id {memory_id} not found"})
        self._forget(memory_id)
        return Reply(body={"message": "Memory deleted successfully"})

    def _forget(self, memory_id: str) -> None:
        self._event(memory_id, self.payloads[memory_id]["data"], None, "DELETE", _now())
        del self.payloads[memory_id], self.vectors[memory_id], self.terms[memory_id]
        self.index.drop(memory_id)

    def _delete_all(self, seen: Seen) -> Reply:
        scope = {k: v[0] for k, v in seen.query.items() if k in IDS and v and v[0]}
        if not scope:
            return Reply(status=400, body={"detail": "At least one identifier is required."})
        for memory_id in self._scoped(scope):
            self._forget(memory_id)
        return Reply(body={"message": "All relevant memories deleted"})

    def _history(self, memory_id: str, request_id: str) -> Reply:
        if not _is_uuid(memory_id):
            return _upstream(request_id)
        return Reply(body=self.history.get(memory_id, []))

    def _reset(self) -> Reply:
        self.payloads.clear()
        self.vectors.clear()
        self.terms.clear()
        self.index.clear()
        self.history.clear()
        return Reply(body={"message": "All memories reset"})


def _matches(value: Any, condition: Any) -> bool:
    """mem0's filter forms for one payload key: a value (equality), ``"*"`` (exists), or operators."""
    if condition == "*":
        return value is not None
    if not isinstance(condition, dict):
        return bool(value == condition)
    tests: dict[str, Callable[[Any, Any], bool]] = {
        "eq": lambda v, c: bool(v == c), "ne": lambda v, c: bool(v != c), "in": lambda v, c: v in c,
        "nin": lambda v, c: v not in c, "gt": lambda v, c: v is not None and v > c,
        "gte": lambda v, c: v is not None and v >= c, "lt": lambda v, c: v is not None and v < c,
        "lte": lambda v, c: v is not None and v <= c,
        "contains": lambda v, c: isinstance(v, str | list) and c in v,
        "icontains": lambda v, c: isinstance(v, str) and str(c).lower() in v.lower()}
    return all(op in tests and tests[op](value, operand) for op, operand in condition.items())


def _bm25(query: str, tokenized: dict[str, list[str]]) -> dict[str, float]:
    """Okapi BM25 of the query's terms in each document (by id, as terms) that has one, squashed to [0, 1]
    with mem0's sigmoid for short queries (midpoint 5, steepness 0.7); {} when no document has a query term."""
    terms = set(_terms(query))
    if not terms or not tokenized:
        return {}
    average = sum(len(t) for t in tokenized.values()) / len(tokenized) or 1.0
    holding = {term: sum(1 for t in tokenized.values() if term in t) for term in terms}
    scores = {}
    for memory_id, tokens in tokenized.items():
        raw = 0.0
        for term in terms:
            frequency = tokens.count(term)
            if not frequency:
                continue
            having = holding[term]
            idf = math.log(1 + (len(tokenized) - having + 0.5) / (having + 0.5))
            raw += idf * frequency * 2.5 / (frequency + 1.5 * (0.25 + 0.75 * len(tokens) / average))
        if raw > 0:
            scores[memory_id] = 1.0 / (1.0 + math.exp(-0.7 * (raw - 5.0)))
    return scores


def _upstream(request_id: str) -> Reply:
    return Reply(status=502, body={"detail": "Upstream provider error.", "code": "unknown", "request_id": request_id})


def _json_problem(seen: Seen) -> Reply | None:
    """FastAPI's 422 for a body that is absent, not JSON, or not sent as JSON."""
    if not seen.raw:
        return fastapi_missing(["body"], None)
    if seen.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return Reply(status=422, body={"detail": [{
            "type": "model_attributes_type", "loc": ["body"],
            "msg": "Input should be a valid dictionary or object to extract fields from",
            "input": seen.raw.decode(errors="replace")}]})
    try:
        json.loads(seen.raw)
    except ValueError as exc:
        position = getattr(exc, "pos", 0)
        return Reply(status=422, body={"detail": [{
            "type": "json_invalid", "loc": ["body", position], "msg": "JSON decode error", "input": {},
            "ctx": {"error": getattr(exc, "msg", str(exc))}}]})
    return None


def _top_k(seen: Seen) -> tuple[int, Reply | None]:
    raw = seen.query.get("top_k", [str(DEFAULT_TOP_K)])[0]
    try:
        top_k = int(raw)
    except ValueError:
        return 0, Reply(status=422, body={"detail": [{
            "type": "int_parsing", "loc": ["query", "top_k"],
            "msg": "Input should be a valid integer, unable to parse string as an integer", "input": raw}]})
    if top_k > 1000:
        return 0, Reply(status=422, body={"detail": [{
            "type": "less_than_equal", "loc": ["query", "top_k"], "msg": "Input should be less than or equal to 1000",
            "input": raw, "ctx": {"le": 1000}}]})
    return top_k, None


@contextmanager
def mem0_server_standin(api_key: str | None = None) -> Iterator[tuple[StandIn, Mem0ServerStandIn]]:
    """Serve a fresh stand-in of mem0's server on 127.0.0.1; stopped afterwards."""
    state = Mem0ServerStandIn(api_key)
    with standin(state) as service:
        yield service, state
