"""Who is calling, and what the app serves them from: the FastAPI dependencies every API router uses.

`CallerDep` is the authenticated caller (the API key a request presents, read by
`memdock.dify_adapter.auth.authenticate_request` in the forms `SERVER_FORMS` names, and what that key may
touch); `MemoryDep` and `ConfigDep` are the app's open `Memory` and its `ServerConfig`, both kept on
``request.app.state`` by `create_app`. Each API translates `Unauthenticated` and `Forbidden` into its own
dialect (401 JSON, mem0ai-api's HTTP-200 ``code: 401`` envelope); Dify's ``/retrieval`` reads its key
through `memdock.dify_adapter.external_knowledge.authorize` instead (1001/1002).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from starlette.requests import Request

from memdock.dify_adapter.auth import SERVER_FORMS, ApiKey, CredentialError, KeyRing, authenticate_request
from memdock.dify_adapter.server.config import ServerConfig
from memdock.errors import MemoryNotFound
from memdock.memory import Memory
from memdock.models import HistoryEvent, MemoryRecord, Scope

UNAUTHENTICATED = "a valid API key is required (Authorization: Bearer <key> or X-API-Key)"


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


def owned_record(memory: Memory, caller: Caller, memory_id: str, scope: Scope | None = None) -> MemoryRecord:
    """The memory with this id when it exists, lies in `scope` (when given) and `caller` may touch it;
    `MemoryNotFound` otherwise. A memory of another scope is answered exactly as a missing one, by the same
    path: one backend read (``Backend.get``) whatever the outcome, then one decision and one raise, so
    neither the answer nor the backend calls made tell a foreign id from a missing one."""
    try:
        record: MemoryRecord | None = memory.get(memory_id, scope=scope)
    except MemoryNotFound:
        record = None
    if record is None or not caller.may_touch(record.scope):
        raise MemoryNotFound(memory_id)
    return record


def owned_history(memory: Memory, caller: Caller, memory_id: str, scope: Scope | None = None) -> list[HistoryEvent]:
    """The events of the memory with this id (also once it is deleted) when they lie in `scope` (when
    given) and `caller` may touch every one of them; ``[]`` for a live memory of the caller's without
    events; `MemoryNotFound` otherwise. A foreign id and a missing one take the same path: one history
    read (``Backend.history_many``), then one record read (`owned_record`), which answers missing for both;
    `Unsupported` when the backend keeps no history."""
    events = memory.histories([memory_id])[memory_id]
    if scope is not None and not scope.is_empty():
        events = [e for e in events if scope.contains(e.scope)]
    if events and all(caller.may_touch(e.scope) for e in events):
        return events
    owned_record(memory, caller, memory_id, scope)
    return []


def note_key(request: Request, key: ApiKey | None) -> None:
    """Store the label of the key `request` was authenticated with (if any) for the access log."""
    if key is not None:
        request.state.key_label = key.label


def identify(request: Request, keys: KeyRing) -> Caller:
    """The caller of `request`: its key from ``X-API-Key`` or ``Authorization: Bearer|Token``
    (`SERVER_FORMS`). `Unauthenticated` when keys are configured and none of them was given; on an open
    server every request is an unrestricted caller. The key's label is stored on the request for the
    access log."""
    try:
        key = authenticate_request(keys, request.headers.get("authorization"), request.headers.get("x-api-key"),
                                   SERVER_FORMS)
    except CredentialError:
        raise Unauthenticated(UNAUTHENTICATED) from None
    note_key(request, key)
    return Caller(key)


def app_config(request: Request) -> ServerConfig:
    """FastAPI dependency: the app's `ServerConfig`."""
    config: ServerConfig = request.app.state.config
    return config


def app_memory(request: Request) -> Memory:
    """FastAPI dependency: the app's open `Memory`."""
    memory: Memory = request.app.state.memory
    return memory


ConfigDep = Annotated[ServerConfig, Depends(app_config)]
MemoryDep = Annotated[Memory, Depends(app_memory)]


def request_caller(request: Request, config: ConfigDep) -> Caller:
    """FastAPI dependency: authenticate the request against the app's key ring (cached per request).
    Every API router but ``/retrieval`` lists it as a router-level dependency, so no route runs
    unauthenticated."""
    return identify(request, config.keys)


CallerDep = Annotated[Caller, Depends(request_caller)]
