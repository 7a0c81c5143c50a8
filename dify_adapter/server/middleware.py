"""One ASGI middleware for every request: a request id (``X-Request-ID``, echoed or made), a body size
limit (413 before the app reads too much), and one structured access-log line per request.

The 413 is answered by `too_large`, which the app gives (each API's own error envelope, chosen by path);
a body that turns out too large while the app reads it raises `BodyOverLimit` (an HTTP 413) into the app,
whose exception handler answers it the same way.

The access log (logger ``memdock.access``, one JSON object per line) holds the request id, method, path
WITHOUT the query string, status, duration and the API key's label. It never holds a key, a query
string, a header or a body, so neither secrets nor memory text reach the logs.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TooLarge = Callable[[Scope, int], Response]
"""The answer to a request (its ASGI scope) whose body exceeds the limit (the second argument, in bytes)."""

access_log = logging.getLogger("memdock.access")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class BodyOverLimit(HTTPException):
    """The request body exceeded the limit while it was being read (an HTTP 413, however it surfaces)."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"request body exceeds {limit} bytes")
        self.limit = limit


def plain_too_large(scope: Scope, limit: int) -> Response:
    """The default 413: ``{"error": {"type": "BodyTooLarge", "message"}}``."""
    return JSONResponse({"error": {"type": "BodyTooLarge", "message": f"request body exceeds {limit} bytes"}},
                        status_code=413)


class RequestContextMiddleware:
    """Request ids, body limits and access logs (see the module docstring)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, too_large: TooLarge = plain_too_large) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.too_large = too_large

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        given = headers.get("x-request-id", "")
        request_id = given if _CLIENT_ID.match(given) else uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = {"code": 500}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            declared = int(headers.get("content-length", "0") or 0)
        except ValueError:
            declared = 0
        try:
            if declared > self.max_body_bytes:
                await self.too_large(scope, self.max_body_bytes)(scope, receive, send_with_id)
            else:
                await self.app(scope, self._limited(receive), send_with_id)
        except BodyOverLimit:  # raised past the app's own handler (no response was started)
            await self.too_large(scope, self.max_body_bytes)(scope, receive, send_with_id)
        finally:
            _log(scope, request_id, status["code"], started)

    def _limited(self, receive: Receive) -> Receive:
        seen = {"bytes": 0}

        async def limited() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                seen["bytes"] += len(message.get("body", b""))
                if seen["bytes"] > self.max_body_bytes:
                    raise BodyOverLimit(self.max_body_bytes)
            return message

        return limited


def _log(scope: Scope, request_id: str, status: int, started: float) -> None:
    state: dict[str, Any] = scope.get("state", {})
    access_log.info(json.dumps({
        "request_id": request_id,
        "method": scope.get("method"),
        "path": scope.get("path"),
        "status": status,
        "ms": round((time.perf_counter() - started) * 1000, 1),
        "key": state.get("key_label"),
    }))
