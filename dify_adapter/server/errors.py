"""Turning exceptions into each API's own error answers.

Each API mounts its routes with `translating_route(translate)`: memdock's typed errors, request
validation errors and auth failures raised while a route runs are handed to that API's `translate`,
which answers in the API's dialect. Nothing here decides a dialect's wording; `native_error` is the
native API's, and `STATUS_OF` is the one table from memdock errors to HTTP statuses that the native and
mem0 server dialects share.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from memdock.dify_adapter.server.access import Forbidden, Unauthenticated
from memdock.errors import (
    AuthenticationFailed,
    BackendUnavailable,
    InvalidInput,
    MemdockError,
    MemoryNotFound,
    Unsupported,
)

Translate = Callable[[Request, Exception], Response]
TRANSLATED: tuple[type[Exception], ...] = (MemdockError, RequestValidationError, Unauthenticated, Forbidden)

class UnreadableBody(InvalidInput):
    """A body that is not text in the declared encoding (FastAPI cannot even parse it as JSON)."""


class BodyTooLarge(InvalidInput):
    """A request body over the server's ``--max-body-bytes`` (413), answered in the envelope of the API the
    request was sent to (`memdock.dify_adapter.server.app` picks it by path)."""


STATUS_OF: tuple[tuple[type[Exception], int], ...] = (
    (Unauthenticated, 401),
    (Forbidden, 403),
    (MemoryNotFound, 404),
    (UnreadableBody, 400),
    (BodyTooLarge, 413),
    (InvalidInput, 422),
    (Unsupported, 501),
    (AuthenticationFailed, 502),
    (BackendUnavailable, 503),
)


def status_of(exc: Exception) -> int:
    """The HTTP status for an exception (422 for request validation, 500 for anything unknown)."""
    if isinstance(exc, RequestValidationError):
        return 400 if is_malformed_json(exc) else 422
    return next((status for kind, status in STATUS_OF if isinstance(exc, kind)), 500)


def is_malformed_json(exc: RequestValidationError) -> bool:
    """True when the body was not JSON at all (rather than JSON of the wrong shape)."""
    return any(error.get("type") == "json_invalid" for error in exc.errors())


def first_error(exc: RequestValidationError) -> tuple[str, str]:
    """(field, message) of the first validation error, the field as a dotted path without ``body``."""
    error = exc.errors()[0]
    if error.get("type") == "json_invalid":
        return "body", f"not valid JSON: {error.get('ctx', {}).get('error', error.get('msg'))}"
    location = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path")]
    return ".".join(location) or "body", str(error.get("msg", "invalid"))


def validation_errors(exc: RequestValidationError) -> list[Any]:
    """FastAPI's error list for a request, as JSON every encoder can write: non-finite numbers a client sent
    (``NaN``, ``Infinity``, ``1e400`` in the ``input`` echoed back) become their JSON-ish spelling
    (``"NaN"``, ``"Infinity"``, ``"-Infinity"``), so a refusal never fails to render (a 500)."""
    return [_finite(item) for item in jsonable_encoder(exc.errors())]


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def headers_for(status: int) -> dict[str, str]:
    """Extra headers a status needs: a Bearer challenge for 401, a retry hint for 503."""
    if status == 401:
        return {"WWW-Authenticate": "Bearer"}
    if status == 503:
        return {"Retry-After": "1"}
    return {}


def native_error(request: Request, exc: Exception) -> Response:
    """The native API's error body: ``{"error": {"type", "message", "field"}, "request_id"}``."""
    status = status_of(exc)
    field: str | None = getattr(exc, "field", None)
    message = str(exc)
    kind = type(exc).__name__
    if isinstance(exc, RequestValidationError | UnreadableBody):
        field, message = first_error(exc) if isinstance(exc, RequestValidationError) else ("body", exc.args[0])
        kind = "InvalidInput"
    body: dict[str, Any] = {
        "error": {"type": kind, "message": message, "field": field},
        "request_id": request.scope.get("state", {}).get("request_id"),
    }
    return JSONResponse(body, status_code=status, headers=headers_for(status))


def translating_route(translate: Translate) -> type[APIRoute]:
    """An `APIRoute` class whose handlers answer translated errors instead of raising them. A body FastAPI
    cannot decode (e.g. not UTF-8: FastAPI's own 400) is translated too, as `UnreadableBody` (field
    ``body``), so every API answers it in its own envelope."""

    class TranslatingRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            original = super().get_route_handler()

            async def handler(request: Request) -> Response:
                try:
                    return await original(request)
                except TRANSLATED as exc:
                    return translate(request, exc)
                except HTTPException as exc:
                    if exc.status_code != 400:
                        raise
                    unreadable = UnreadableBody("is not valid JSON text (UTF-8)", field="body")
                    return translate(request, unreadable)

            return handler

    return TranslatingRoute
