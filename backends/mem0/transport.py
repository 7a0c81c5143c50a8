"""HTTP for the mem0 backend: one reused httpx client, a time budget per call, bounded retries for reads
only, and every failure mapped to a memdock error.

- Connection errors, timeouts, dropped connections and 5xx -> `BackendUnavailable`. A call marked
  idempotent (a read) is retried up to `retries` times with exponential backoff, all within `timeout`
  seconds in total; a write is sent once, because a write that timed out may have landed.
- 401/403 (and mem0ai-api's HTTP-200 envelope ``code: 401``) -> `AuthenticationFailed`.
- 404 (and envelope ``code: 404``) -> `NotFoundAnswer`, which callers turn into None or `MemoryNotFound`.
- 400/422 -> `InvalidInput` with the service's message; 501 -> `Unsupported`.
- A body that is not JSON, or an envelope of the wrong shape -> `MalformedResponse` naming the dialect.
The API key travels in a header and never appears in an error.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from memdock.errors import (
    AuthenticationFailed,
    BackendUnavailable,
    InvalidInput,
    MalformedResponse,
    MemdockError,
    Unsupported,
)

if TYPE_CHECKING:
    import httpx

BACKOFF_SECONDS = 0.1


class NotFoundAnswer(MemdockError):
    """The service answered "no such thing" (HTTP 404 or an envelope code 404)."""


@dataclass(frozen=True)
class Answer:
    """A successful answer: HTTP status and the parsed JSON body (None for an empty body)."""

    status: int
    body: Any


class Transport:
    """Requests to one mem0 service (see the module docstring)."""

    def __init__(self, base_url: str, headers: Mapping[str, str], *, dialect: str, timeout: float, retries: int,
                 envelope: bool = False) -> None:
        self.dialect = dialect
        self.timeout = timeout
        self.retries = retries
        self.envelope = envelope
        self.where = base_url
        import httpx  # here, not at module top: loading plugins must not load the HTTP client

        self._client = httpx.Client(base_url=base_url, headers=dict(headers), timeout=timeout,
                                    follow_redirects=False, limits=httpx.Limits(max_keepalive_connections=10))

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def request(self, method: str, path: str, *, idempotent: bool, params: Mapping[str, Any] | None = None,
                json_body: Any = None, content: bytes | None = None) -> Answer:
        """Send one request (retrying reads within the time budget) and check its answer."""
        import httpx

        deadline = time.monotonic() + self.timeout
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            try:
                response = self._client.request(
                    method, path, params=_clean(params), json=json_body, content=content,
                    timeout=httpx.Timeout(max(remaining, 0.001)),
                )
                if response.status_code >= 500 and response.status_code != 501:
                    raise BackendUnavailable(
                        f"{self.dialect} at {self.where}: HTTP {response.status_code} on {method} {path}")
                return self._check(method, path, response)
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                failure = BackendUnavailable(f"{self.dialect} at {self.where}: {type(exc).__name__} on {method} {path}")
            except BackendUnavailable as exc:
                if isinstance(exc, MalformedResponse):
                    raise
                failure = exc
            except httpx.HTTPError as exc:
                raise BackendUnavailable(
                    f"{self.dialect} at {self.where}: {type(exc).__name__} on {method} {path}") from None
            attempt += 1
            pause = BACKOFF_SECONDS * 2 ** (attempt - 1)
            if not idempotent or attempt > self.retries or time.monotonic() + pause >= deadline:
                raise failure
            time.sleep(pause)

    def _check(self, method: str, path: str, response: httpx.Response) -> Answer:
        status = response.status_code
        body = self._json(response) if response.content else None
        if self.envelope and isinstance(body, Mapping) and isinstance(body.get("code"), int) and body["code"] != 0:
            status = body["code"]
        if status in (401, 403):
            raise AuthenticationFailed(f"{self.dialect} at {self.where} refused the credentials (HTTP {status})")
        if status == 404:
            raise NotFoundAnswer(f"{method} {path}: not found")
        if status in (400, 409, 422):
            raise InvalidInput(f"{self.dialect} refused the request: {_detail(body)}", field=_field(body))
        if status == 501:
            raise Unsupported(f"{self.dialect}: {_detail(body)}")
        if status >= 400:
            raise BackendUnavailable(f"{self.dialect} at {self.where}: HTTP {status} on {method} {path}")
        if self.envelope and status == 200 and response.status_code == 200:
            if not isinstance(body, Mapping) or body.get("code") != 0:
                raise MalformedResponse("expected {\"code\": 0, \"data\": ...}", dialect=self.dialect, field="code")
            return Answer(status, body.get("data"))
        return Answer(status, body)

    def _json(self, response: httpx.Response) -> Any:
        try:
            return json.loads(response.content)
        except (ValueError, UnicodeDecodeError):
            raise MalformedResponse(f"HTTP {response.status_code} body is not JSON", dialect=self.dialect,
                                    field="body") from None


def _clean(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if params is None else {k: v for k, v in params.items() if v is not None}


def _detail(body: Any) -> str:
    if isinstance(body, Mapping):
        for key in ("detail", "message", "error"):
            if key in body:
                value = body[key]
                return value if isinstance(value, str) else json.dumps(value)[:300]
    return str(body)[:300]


def _field(body: Any) -> str | None:
    if isinstance(body, Mapping) and isinstance(body.get("detail"), list) and body["detail"]:
        first = body["detail"][0]
        if isinstance(first, Mapping) and isinstance(first.get("loc"), list):
            return ".".join(str(p) for p in first["loc"] if p not in ("body", "query", "path")) or None
    return None
