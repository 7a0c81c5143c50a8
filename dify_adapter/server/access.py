"""Who is calling: the API key a request presents, and what that key may touch.

Every API of the server uses this; each translates `Unauthenticated` and `Forbidden` into its own
dialect (401 JSON, Dify's 1001/1002, mem0ai-api's HTTP-200 ``code: 401`` envelope).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from starlette.requests import Request

from memdock.dify_adapter.auth import ApiKey, KeyRing
from memdock.memory import Memory
from memdock.models import Scope


class Unauthenticated(Exception):
    """No key, or a key that is not in the ring."""


class Forbidden(Exception):
    """A valid key that may not touch the requested scope."""


@dataclass(frozen=True)
class Caller:
    """The authenticated caller; `key` is None on an open server (no keys configured)."""

    key: ApiKey | None

    @property
    def label(self) -> str | None:
        """A name for logs (never the key itself)."""
        return self.key.label if self.key is not None else None

    def may_touch(self, scope: Scope) -> bool:
        """True when the caller may read or write memories in `scope` (or a record stored under it)."""
        return self.key is None or self.key.allows_scope(scope)

    def require(self, scope: Scope) -> Scope:
        """`scope`, or `Forbidden` when the key is restricted to other scopes."""
        if not self.may_touch(scope):
            raise Forbidden(f"this API key may not access scope {scope.ids()}")
        return scope

    @property
    def unrestricted(self) -> bool:
        """True for an open server or a key without restrictions."""
        return self.key is None or self.key.unrestricted


def presented_key(request: Request) -> str | None:
    """The key in ``Authorization: Bearer <key>`` (or ``Token <key>``) or ``X-API-Key``, if any."""
    header = request.headers.get("x-api-key")
    if header:
        return header.strip()
    scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() in ("bearer", "token") and token.strip():
        return token.strip()
    return None


def identify(request: Request, keys: KeyRing) -> Caller:
    """The caller of `request`; `Unauthenticated` when keys are configured and none of them was given.
    The key's label is stored on the request for the access log."""
    if keys.is_open():
        return Caller(None)
    presented = presented_key(request)
    key = keys.authenticate(presented) if presented else None
    if key is None:
        raise Unauthenticated("a valid API key is required (Authorization: Bearer <key> or X-API-Key)")
    request.state.key_label = key.label
    return Caller(key)


def request_caller(request: Request) -> Caller:
    """FastAPI dependency: authenticate the request against the app's key ring (cached per request).
    Every API router lists it as a router-level dependency, so no route runs unauthenticated."""
    return identify(request, request.app.state.config.keys)


def app_memory(request: Request) -> Memory:
    """FastAPI dependency: the app's open `Memory`."""
    memory: Memory = request.app.state.memory
    return memory


CallerDep = Annotated[Caller, Depends(request_caller)]
MemoryDep = Annotated[Memory, Depends(app_memory)]
