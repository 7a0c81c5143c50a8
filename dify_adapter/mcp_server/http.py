"""``memdock mcp --transport http``: the MCP server over Streamable HTTP, behind `memdock serve`'s key rules.

With keys configured (``--api-key``, ``MEMDOCK_API_KEYS``, ``--keys-file``) every HTTP request must present
one (``Authorization: Bearer <key>``, ``Token <key>`` or ``X-API-Key``), else it gets 401 before the MCP
layer sees it (only ``/healthz``, which touches no backend, is always open); a key limited to scopes
confines each call further (`memdock.dify_adapter.mcp_server.scope`).
Without keys the app may only be bound to a loopback address (`check_bind`), where the SDK's DNS-rebinding
protection (Host and Origin checks) is on.
"""

from __future__ import annotations

import json

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from memdock.dify_adapter.auth import SERVER_FORMS, CredentialError, KeyRing, authenticate_request
from memdock.dify_adapter.mcp_server.scope import ScopePolicy
from memdock.dify_adapter.mcp_server.server import create_server
from memdock.dify_adapter.server.serve import check_bind
from memdock.memory import Memory
from memdock.models import Scope as ScopeIds

UNAUTHENTICATED = "a valid API key is required (Authorization: Bearer <key> or X-API-Key)"
HEALTH_PATH = "/healthz"


class RequireKey:
    """ASGI middleware: HTTP requests without an accepted key get 401 (an open ring lets all through)."""

    def __init__(self, app: ASGIApp, keys: KeyRing) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.keys.is_open() and scope.get("path") != HEALTH_PATH:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            try:
                authenticate_request(self.keys, headers.get("authorization"), headers.get("x-api-key"), SERVER_FORMS)
            except CredentialError:
                body = json.dumps({"error": {"type": "AuthenticationFailed", "message": UNAUTHENTICATED}}).encode()
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def create_http_app(memory: Memory, policy: ScopePolicy, keys: KeyRing, *, host: str = "127.0.0.1",
                    path: str = "/mcp") -> RequireKey:
    """The ASGI app serving MCP at `path` behind the key check; run it with its lifespan (the SDK's session
    manager lives there, and the middleware passes lifespan events through). `InvalidInput` as `check_bind`."""
    check_bind(host, keys)
    server = create_server(memory, policy, keys)
    health = Route(HEALTH_PATH, _healthz, methods=["GET"])
    app = server.streamable_http_app(streamable_http_path=path, host=host, custom_starlette_routes=[health])
    return RequireKey(app, keys)


def create_mountable_app(memory: Memory, keys: KeyRing, *, host: str) -> tuple[RequireKey, Starlette]:
    """The MCP API inside ``memdock serve`` (``--mount mcp=/mcp``): Streamable HTTP at the mount's root,
    behind the server's keys; every call names its scope (`ScopePolicy` with no fixed ids, arguments
    allowed) and a restricted key confines it, as on the other APIs. Returns the app to mount and the
    SDK's Starlette app, whose lifespan (the session manager) the server must run."""
    server = create_server(memory, ScopePolicy(ScopeIds(), allow_arguments=True), keys)
    app = server.streamable_http_app(streamable_http_path="/", host=host)
    return RequireKey(app, keys), app


async def _healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})
