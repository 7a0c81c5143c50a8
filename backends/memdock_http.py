"""memdock on top of another memdock: ``memdock+http://host:port[/mount]?api_key=...`` (``memdock+https://``
too), a client of the native API that ``memdock serve`` publishes (mount ``/v1`` unless the URL names one).

The server embeds and stores; this process needs neither a vector store nor a model (`SERVER_SIDE_EMBEDDING`).
At open the backend reads ``GET /info``: it then declares exactly what the server's backend declares (plus
`SERVER_SIDE_EMBEDDING`) and `server_embedder` names the server's embedder. Each protocol operation is one
native route, so nothing is emulated:

- `add` -> ``POST /import`` (the ids and times `Memory` stamped are kept; a large batch is sent in parts,
  and the parts already added are deleted again if a later one fails: all or nothing);
- `find_duplicate` / `find_by_hash` -> ``POST /lookup`` (the memory of exactly this scope holding a text,
  or with a hash); `find_duplicates` (a whole batch) -> ``POST /lookups``;
- `get`, `update`, `delete`, `history` -> ``/memories/{id}`` routes; `search`, `list` (the server's own
  opaque cursor), `count` -> ``/search``, ``/memories``, ``/count`` with the filter sent as mem0-style JSON;
- `reset` -> ``POST /reset`` (when ``GET /info`` says the server runs with ``--allow-reset`` and the key is
  unrestricted; else `Unsupported` without asking);
- history is recorded by the server's `Memory` as it performs each write: `record_history` sends nothing.

Transport: one reused httpx client; the API key travels as ``Authorization: Bearer`` and never appears in
an error; every call has a time budget of `timeout` seconds, retries included. Every route used is
idempotent (an import keeps its ids, so a repeated import answers NONE with the same record; a repeated
delete of a gone id is ignored, a repeated update replaces with the same values), so reads and writes
alike are retried up to `retries` times on connection faults, timeouts and 5xx (501 aside).

Errors: the server's ``{"error": {"type", "message", "field"}}`` becomes the same memdock error class, with
its field: 401/403 -> `AuthenticationFailed`, 404 -> `MemoryNotFound`,
400/413/422 -> `InvalidInput` (or `InvalidFilter`, `ScopeRequired`, `EmbedderMismatch`), 501 ->
`Unsupported`, 5xx and connection faults -> `BackendUnavailable`; an answer that is not the native API's
(a proxy's page, a route that is not there) -> `MalformedResponse`.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import quote

from pydantic import Field, SecretStr, ValidationError

from memdock.backend import Backend, BackendSettings, BackendURL
from memdock.capabilities import Capability
from memdock.embedding import Embedder
from memdock.errors import (
    AuthenticationFailed,
    BackendUnavailable,
    EmbedderMismatch,
    InvalidFilter,
    InvalidInput,
    MalformedResponse,
    MemdockError,
    MemoryNotFound,
    ScopeRequired,
    Unsupported,
)
from memdock.extras import require_extra
from memdock.filters import And, Comparison, Exists, Filter, Or
from memdock.hookspecs import hookimpl
from memdock.models import SCOPE_FIELDS, HistoryEvent, MemoryRecord, Page, Scope, SearchHit

if TYPE_CHECKING:
    import httpx

KEY_ENV = "MEMDOCK_HTTP_API_KEY"
DEFAULT_MOUNT = "/v1"
DIALECT = "memdock"
BACKOFF_SECONDS = 0.1
IMPORT_BYTES = 256 * 1024
"""The largest import body sent at once when it holds several records (a server accepts 1 MiB by default)."""
IMPORT_RECORDS = 500
LOOKUPS_PER_REQUEST = 500
"""Texts per ``POST /lookups`` request (the server takes up to 1,000)."""
RECORD_FIELD = re.compile(r"^records(?:\[(\d+)\]|\.(\d+))(.*)$")
"""A field naming one imported record: ``records[3].text`` (memdock's form) or ``records.3.created_at``."""
LOGICAL_KEYS = frozenset({"AND", "OR", "NOT", "and", "or", "not"})
INPUT_ERRORS: dict[str, type[InvalidInput]] = {
    "InvalidInput": InvalidInput, "InvalidFilter": InvalidFilter, "EmbedderMismatch": EmbedderMismatch,
}


class MemdockHttpBackend(Backend):
    """The memdock protocol over a ``memdock serve`` native API (see the module docstring)."""

    name = "memdock-http"
    description = "Another memdock, through the native API of `memdock serve` (it embeds and stores)."
    schemes = ("memdock+http", "memdock+https")
    secret_param = "api_key"
    capabilities = frozenset({Capability.SERVER_SIDE_EMBEDDING})
    """The class declares server-side embedding; an open backend declares what its server's backend does."""

    class Settings(BackendSettings):
        """Where the server is, its key, and how patient to be."""

        base_url: str = Field(description="http(s)://host:port/mount of the native API, from the URL")
        api_key: SecretStr | None = Field(default=None, description=f"else ${KEY_ENV}")
        timeout: float = Field(default=10.0, gt=0, le=600, description="seconds a call may take, retries included")
        retries: int = Field(default=2, ge=0, le=10, description="extra attempts after a connection fault or 503")

        @classmethod
        def from_url(cls, url: BackendURL) -> Self:
            """``memdock+http://host:port[/mount]`` -> ``base_url=http://host:port/mount`` (mount ``/v1``)."""
            if not url.host:
                raise InvalidInput("memdock+http:// needs a host", field="host")
            if "base_url" in url.params:
                raise InvalidInput("the server address is the URL's host, port and path", field="base_url")
            scheme = "https" if url.scheme == "memdock+https" else "http"
            port = f":{url.port}" if url.port else ""
            host = f"[{url.host}]" if ":" in url.host else url.host
            mount = url.path.rstrip("/") or DEFAULT_MOUNT
            return cls.validated({**url.params, "base_url": f"{scheme}://{host}{port}{mount}"})

        def key(self) -> str | None:
            """The API key (URL parameter first, then the environment)."""
            if self.api_key is not None:
                return self.api_key.get_secret_value()
            return os.environ.get(KEY_ENV) or None

    def __init__(self, settings: MemdockHttpBackend.Settings, embedder: Embedder | None) -> None:
        require_extra("http", "the memdock+http backend", "httpx")
        key = settings.key()
        self._single_lookups = False  # set when the server has no ``POST /lookups``
        self._transport = _Transport(settings.base_url, {"Authorization": f"Bearer {key}"} if key else {},
                                     timeout=settings.timeout, retries=settings.retries)
        try:
            info = self._transport.call("GET", "/info")
            declared, self._embedder_name = _read_info(info)
            self._reset_allowed = _field(info, "reset") is True
        except MemdockError:
            self._transport.close()
            raise
        # per instance: what this server's backend declares (the class attribute is the declaration before open)
        self.__dict__["capabilities"] = declared | {Capability.SERVER_SIDE_EMBEDDING}

    # -- writes ------------------------------------------------------------------------------------------

    def add(self, records: Sequence[MemoryRecord]) -> list[MemoryRecord]:
        """Import the records, kept with their ids and times; the records as the server stored them. A large
        batch goes in several imports of at most `IMPORT_BYTES` (one record at least each); if one fails,
        the records this call added are deleted again before raising, so the batch is all or nothing."""
        stored: list[MemoryRecord] = []
        added: list[str] = []
        try:
            for chunk in _chunks([_record_out(r) for r in records]):
                results = _list_of(self._import(chunk, offset=len(stored)), "results")
                if len(results) != len(chunk):
                    raise MalformedResponse(f"{len(results)} results for {len(chunk)} records", dialect=DIALECT,
                                            field="results")
                for result in results:
                    record = _record(_field(result, "memory"), "results.memory")
                    stored.append(record)
                    if _field(result, "event") == "ADD":
                        added.append(record.id)
        except MemdockError:
            for memory_id in added:
                with contextlib.suppress(MemdockError):
                    self._transport.call("DELETE", _path(memory_id))
            raise
        return stored

    def _import(self, chunk: builtins.list[dict[str, Any]], *, offset: int) -> Any:
        """One ``POST /import``; an error naming ``records[i]`` names the record's index in the whole batch."""
        try:
            return self._transport.call("POST", "/import", json_body={"records": chunk})
        except InvalidInput as exc:
            found = RECORD_FIELD.match(exc.field or "")
            if not found or offset == 0:
                raise
            field = f"records[{int(found[1] or found[2]) + offset}]{found[3]}"
            raise type(exc)(str(exc).removeprefix(f"{exc.field}: "), field=field) from None

    def update(self, record: MemoryRecord) -> None:
        """Replace text and metadata (the server re-embeds); `MemoryNotFound` when the server no longer has it."""
        self._transport.call("PATCH", _path(record.id), json_body={"text": record.text, "metadata": record.metadata})

    def delete(self, memory_ids: Sequence[str]) -> None:
        """Delete each; ids the server does not know are ignored."""
        for memory_id in memory_ids:
            try:
                self._transport.call("DELETE", _path(memory_id))
            except MemoryNotFound:
                continue

    def record_history(self, events: Sequence[HistoryEvent]) -> None:
        """Nothing: the server's `Memory` records each event as it performs the write."""

    def reset(self) -> None:
        """Delete everything on the server: `Unsupported` unless it runs with ``--allow-reset`` and the key
        is unrestricted (as ``GET /info`` said at open)."""
        if not self._reset_allowed:
            raise Unsupported(f"memdock at {self._transport.where} does not allow reset for this key "
                              "(the server needs --allow-reset and an unrestricted key)")
        self._transport.call("POST", "/reset", json_body={"confirm": True})

    # -- reads -------------------------------------------------------------------------------------------

    def get(self, memory_id: str) -> MemoryRecord | None:
        """The memory, or None."""
        try:
            return _record(self._transport.call("GET", _path(memory_id)), "memory")
        except MemoryNotFound:
            return None

    def find_duplicate(self, scope: Scope, text: str, text_hash: str) -> MemoryRecord | None:
        """The server's memory of exactly this scope holding this text (it hashes as memdock does)."""
        return self._lookup({**scope.ids(), "text": text})

    def find_duplicates(self, wanted: Sequence[tuple[Scope, str, str]]) -> builtins.list[MemoryRecord | None]:
        """``POST /lookups``, up to `LOOKUPS_PER_REQUEST` texts a request; one ``/lookup`` each on a server
        older than that route (it answers 404)."""
        found: builtins.list[MemoryRecord | None] = []
        for start in range(0, len(wanted), LOOKUPS_PER_REQUEST):
            chunk = wanted[start:start + LOOKUPS_PER_REQUEST]
            if self._single_lookups:
                found.extend(super().find_duplicates(chunk))
                continue
            body = {"lookups": [{**scope.ids(), "text": text} for scope, text, _ in chunk]}
            try:
                answer = _field(self._transport.call("POST", "/lookups", json_body=body), "memories")
            except (MemoryNotFound, MalformedResponse):  # a server from before the route
                self._single_lookups = True
                found.extend(super().find_duplicates(chunk))
                continue
            if not isinstance(answer, list) or len(answer) != len(chunk):
                raise MalformedResponse(f"expected {len(chunk)} answers", dialect=DIALECT, field="memories")
            found.extend(None if item is None else _record(item, "memories[]") for item in answer)
        return found

    def find_by_hash(self, scope: Scope, text_hash: str) -> MemoryRecord | None:
        """The server's memory of exactly this scope whose hash is `text_hash`."""
        return self._lookup({**scope.ids(), "hash": text_hash})

    def _lookup(self, body: dict[str, Any]) -> MemoryRecord | None:
        found = _field(self._transport.call("POST", "/lookup", json_body=body), "memory")
        return None if found is None else _record(found, "memory")

    def search(
        self, vector: Sequence[float] | None, text: str, scope: Scope, where: Filter | None, limit: int
    ) -> list[SearchHit]:
        """The server's vector search in the scope, filter applied there."""
        return self._search("vector", text, scope, where, limit)

    def keyword_search(self, text: str, scope: Scope, where: Filter | None, limit: int) -> list[SearchHit]:
        """The server's keyword search (when its backend declares `KEYWORD_SEARCH`)."""
        return self._search("keyword", text, scope, where, limit)

    def hybrid_search(
        self, vector: Sequence[float] | None, text: str, scope: Scope, where: Filter | None, limit: int
    ) -> list[SearchHit]:
        """The server's hybrid search (when its backend declares `KEYWORD_SEARCH`)."""
        return self._search("hybrid", text, scope, where, limit)

    def _search(self, mode: str, text: str, scope: Scope, where: Filter | None, limit: int) -> list[SearchHit]:
        """``POST /search`` in `mode`. The mode is sent only to a server whose backend has keyword search
        (its default is hybrid); a server without it searches by vector, and one older than search modes
        would refuse the field."""
        body: dict[str, Any] = {**scope.ids(), "query": text, "limit": limit}
        if Capability.KEYWORD_SEARCH in self.capabilities:
            body["mode"] = mode
        if where is not None:
            body["filter"] = filter_to_json(where)
        hits = _list_of(self._transport.call("POST", "/search", json_body=body), "results")
        try:
            return [SearchHit(record=_record(_field(h, "memory"), "results.memory"), score=_field(h, "score"))
                    for h in hits]
        except ValidationError:
            raise MalformedResponse("a score outside [0, 1]", dialect=DIALECT, field="results.score") from None

    def list(self, scope: Scope, where: Filter | None, limit: int, cursor: str | None) -> Page:
        """A page of the scope, with the server's own cursor."""
        params: dict[str, Any] = {**scope.ids(), **_filter_param(where), "limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        answer = self._transport.call("GET", "/memories", params=params)
        items = [_record(item, "items") for item in _list_of(answer, "items")]
        next_cursor = _field(answer, "next_cursor")
        if next_cursor is not None and not isinstance(next_cursor, str):
            raise MalformedResponse("must be a string or null", dialect=DIALECT, field="next_cursor")
        return Page(items=items, next_cursor=next_cursor)

    def count(self, scope: Scope, where: Filter | None) -> int:
        """How many memories of the scope match."""
        value = _field(self._transport.call("GET", "/count", params={**scope.ids(), **_filter_param(where)}), "count")
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise MalformedResponse("must be a count", dialect=DIALECT, field="count")
        return value

    def history(self, memory_id: str) -> builtins.list[HistoryEvent]:
        """The server's events of one memory, oldest first ([] when it knows none)."""
        try:
            answer = self._transport.call("GET", f"{_path(memory_id)}/history")
        except MemoryNotFound:
            return []
        try:
            return [HistoryEvent.model_validate(event) for event in _list_of(answer, "events")]
        except ValidationError as exc:
            raise MalformedResponse(_problem(exc), dialect=DIALECT, field="events") from None

    def server_embedder(self) -> str | None:
        """The memdock embedder the server embeds with (from ``GET /info``), or None when it does not say."""
        return self._embedder_name

    def close(self) -> None:
        """Close the HTTP connections."""
        self._transport.close()


# -- the wire ------------------------------------------------------------------------------------------------


def filter_to_json(expr: Filter) -> dict[str, Any]:
    """`expr` as the mem0-style JSON `memdock.filters.parse_mem0_filter` reads back into the same tree
    (every comparison in operator form, so no value is mistaken for ``"*"``). `InvalidFilter` for a
    field that JSON cannot name (``AND``, ``OR``, ``NOT`` in any case form the parser knows)."""
    if isinstance(expr, Comparison | Exists):
        if expr.field in LOGICAL_KEYS:
            raise InvalidFilter("a field with this name cannot be sent to a memdock server", field=expr.field)
        if isinstance(expr, Exists):
            return {expr.field: {"exists": True}}
        value = list(expr.value) if isinstance(expr.value, tuple) else expr.value
        return {expr.field: {expr.op: value}}
    if isinstance(expr, And):
        return {"AND": [filter_to_json(item) for item in expr.items]}
    if isinstance(expr, Or):
        return {"OR": [filter_to_json(item) for item in expr.items]}
    return {"NOT": filter_to_json(expr.item)}


def _filter_param(where: Filter | None) -> dict[str, str]:
    return {} if where is None else {"filter": json.dumps(filter_to_json(where), ensure_ascii=False)}


def _chunks(records: builtins.list[dict[str, Any]]) -> builtins.list[builtins.list[dict[str, Any]]]:
    """Consecutive runs of records whose JSON stays within `IMPORT_BYTES` (a record alone may exceed it) and
    `IMPORT_RECORDS`."""
    chunks: builtins.list[builtins.list[dict[str, Any]]] = []
    size = 0
    for record in records:
        weight = len(_encode(record))
        if not chunks or size + weight > IMPORT_BYTES or len(chunks[-1]) >= IMPORT_RECORDS:
            chunks.append([])
            size = 0
        chunks[-1].append(record)
        size += weight
    return chunks


def _encode(body: Any) -> bytes:
    """JSON as sent: UTF-8, no ASCII escapes, compact (so sizes are what the server's body limit counts)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8", errors="surrogatepass")


def _path(memory_id: str) -> str:
    return f"/memories/{quote(memory_id, safe='')}"


def _record_out(record: MemoryRecord) -> dict[str, Any]:
    return {"id": record.id, "text": record.text, **record.scope.ids(), "metadata": record.metadata,
            "created_at": record.created_at.isoformat(), "updated_at": record.updated_at.isoformat(),
            "expires_at": None if record.expires_at is None else record.expires_at.isoformat()}


def _record(item: Any, where: str) -> MemoryRecord:
    """A core record from the native API's memory object."""
    if not isinstance(item, Mapping):
        raise MalformedResponse("expected a memory object", dialect=DIALECT, field=where)
    try:
        scope = Scope(**{name: item.get(name) for name in SCOPE_FIELDS})
        return MemoryRecord(id=item["id"], text=item["text"], scope=scope, metadata=item.get("metadata") or {},
                            hash=item["hash"], created_at=item["created_at"], updated_at=item["updated_at"],
                            expires_at=item.get("expires_at"))
    except KeyError as exc:
        raise MalformedResponse(f"missing {exc.args[0]!r}", dialect=DIALECT, field=where) from None
    except ValidationError as exc:
        raise MalformedResponse(_problem(exc), dialect=DIALECT, field=where) from None


def _read_info(info: Any) -> tuple[frozenset[Capability], str | None]:
    """The capabilities the server's backend declares and its embedder's name, from ``GET /info``."""
    names = _list_of(info, "capabilities")
    known = {c.value: c for c in Capability}
    declared = frozenset(known[name] for name in names if isinstance(name, str) and name in known)
    embedder = _field(info, "embedder")
    name = embedder.get("name") if isinstance(embedder, Mapping) else None
    return declared, name if isinstance(name, str) and name else None


def _field(body: Any, name: str) -> Any:
    if not isinstance(body, Mapping) or name not in body:
        raise MalformedResponse(f"expected an object with {name!r}", dialect=DIALECT, field=name)
    return body[name]


def _list_of(body: Any, name: str) -> builtins.list[Any]:
    value = _field(body, name)
    if not isinstance(value, list):
        raise MalformedResponse("expected a list", dialect=DIALECT, field=name)
    return value


def _problem(exc: ValidationError) -> str:
    first = exc.errors()[0]
    return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"


class _Transport:
    """Requests to one native API (see the module docstring for the retry and error rules)."""

    def __init__(self, base_url: str, headers: Mapping[str, str], *, timeout: float, retries: int) -> None:
        import httpx  # here, not at module top: loading plugins must not load the HTTP client

        self.where = base_url
        self.timeout = timeout
        self.retries = retries
        self._client = httpx.Client(base_url=base_url, headers=dict(headers), timeout=timeout,
                                    follow_redirects=False, limits=httpx.Limits(max_keepalive_connections=10))

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def call(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
             json_body: Any = None) -> Any:
        """Send one request, retrying faults within the time budget; the parsed JSON answer."""
        import httpx

        deadline = time.monotonic() + self.timeout
        attempt = 0
        failure: MemdockError
        while True:
            try:
                response = self._client.request(
                    method, path, params=params, content=None if json_body is None else _encode(json_body),
                    headers=None if json_body is None else {"Content-Type": "application/json"},
                    timeout=httpx.Timeout(max(deadline - time.monotonic(), 0.001)))
                return self._check(method, path, response)
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                failure = BackendUnavailable(f"memdock at {self.where}: {type(exc).__name__} on {method} {path}")
            except httpx.HTTPError as exc:
                raise BackendUnavailable(
                    f"memdock at {self.where}: {type(exc).__name__} on {method} {path}") from None
            except _Retryable as exc:
                failure = exc.error
            attempt += 1
            pause = BACKOFF_SECONDS * 2 ** (attempt - 1)
            if attempt > self.retries or time.monotonic() + pause >= deadline:
                raise failure
            time.sleep(pause)

    def _check(self, method: str, path: str, response: httpx.Response) -> Any:
        status = response.status_code
        body = _json_or_none(response)
        if 200 <= status < 300:
            if body is None:
                raise MalformedResponse(f"HTTP {status} body is not JSON", dialect=DIALECT, field="body")
            return body
        error = body.get("error") if isinstance(body, Mapping) else None
        if not isinstance(error, Mapping):
            if status >= 500:  # a proxy's 502/504, or a server fault without the native body
                raise _Retryable(BackendUnavailable(f"memdock at {self.where}: HTTP {status} on {method} {path}"))
            raise MalformedResponse(f"HTTP {status} on {method} {path} is not a memdock native API answer "
                                    "(check the URL's host, port and mount)", dialect=DIALECT, field="error")
        raise _typed(status, error, self.where)


class _Retryable(Exception):
    """A fault worth another attempt; `error` is what the caller sees when attempts run out."""

    def __init__(self, error: BackendUnavailable) -> None:
        super().__init__(str(error))
        self.error = error


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content) if response.content else None
    except (ValueError, UnicodeDecodeError):
        return None


def _typed(status: int, error: Mapping[str, Any], where: str) -> Exception:
    """The memdock error for the server's ``{"type", "message", "field"}`` (a 503 comes back retryable)."""
    kind = error.get("type")
    field = error.get("field") if isinstance(error.get("field"), str) else None
    message = str(error.get("message") or f"HTTP {status}")
    if field and message.startswith(f"{field}: "):
        message = message[len(field) + 2:]  # the server's text already names the field; do not name it twice
    if status in (401, 403) or kind == "AuthenticationFailed":
        return AuthenticationFailed(f"memdock at {where} refused the request (HTTP {status}): {message}")
    if status == 404:
        return MemoryNotFound(message.removeprefix("memory not found: ").strip("'\""))
    if status in (400, 413, 422):
        if kind == "ScopeRequired":
            return ScopeRequired(message)
        return INPUT_ERRORS.get(str(kind), InvalidInput)(message, field=field or ("body" if status == 413 else None))
    if status == 501:
        return Unsupported(message)
    if status >= 500:
        return _Retryable(BackendUnavailable(f"memdock at {where}: HTTP {status}: {message}"))
    return MalformedResponse(f"HTTP {status} ({kind}): {message}", dialect=DIALECT, field="error")


@hookimpl
def register_backends(register: Callable[[type[Backend]], None]) -> None:
    """Register ``memdock+http://`` and ``memdock+https://``."""
    register(MemdockHttpBackend)
