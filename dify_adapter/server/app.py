"""The memdock HTTP server as an ASGI app: one open `Memory`, five APIs at configurable mount points (MCP
off by default), request ids, body limits and access logs. `create_app` is all `memdock serve` and the tests need.

Routes are plain (synchronous) functions where they call the backend, so FastAPI runs them in its thread
pool: a slow backend call never blocks the event loop, and ``/healthz`` (which touches no backend)
stays responsive.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter, FastAPI, Request

from memdock.dify_adapter.server import mem0_server, mem0ai_api, native, retrieval
from memdock.dify_adapter.server.config import ServerConfig
from memdock.dify_adapter.server.middleware import RequestContextMiddleware
from memdock.errors import InvalidInput
from memdock.extras import require_extra
from memdock.memory import Memory

ROUTERS: dict[str, APIRouter] = {
    "native": native.router,
    "retrieval": retrieval.router,
    "mem0-server": mem0_server.router,
    "mem0ai-api": mem0ai_api.router,
}
"""Each API's module-level router by API name (`config.API_NAMES`); `create_app` includes each at its mount
point, or leaves it out when the mount is None."""

health = APIRouter(tags=["health"])
"""``/healthz``, always at the root and never authenticated."""


@health.get("/healthz", summary="Liveness: answers without touching the backend")
async def healthz(request: Request) -> dict[str, str]:
    return {"status": "ok", "version": request.app.version}


def memdock_version() -> str:
    """The installed memdock version ("unknown" when run from an uninstalled tree)."""
    try:
        return version("memdock")
    except PackageNotFoundError:
        return "unknown"


def create_app(memory: Memory, config: ServerConfig | None = None, *, close_memory: bool = False) -> FastAPI:
    """The server app over `memory`. With `close_memory`, the Memory is closed when the app shuts down.
    `memory` and `config` are kept on ``app.state`` for the routes' dependencies (`access.MemoryDep`,
    `access.ConfigDep`, `access.CallerDep`); each API's router is included at ``config.mounts[name]``.
    Raises `InvalidInput` (field ``mount``) when two mem0 dialects would share a mount point."""
    config = config or ServerConfig()
    mem0_mounts = [config.mounts.get(n) for n in ("mem0-server", "mem0ai-api") if config.mounts.get(n) is not None]
    if len(set(mem0_mounts)) != len(mem0_mounts):
        raise InvalidInput("the mem0-server and mem0ai-api dialects need different mount points", field="mount")

    mcp_prefix = config.mounts.get("mcp")
    mcp_app = None
    if mcp_prefix is not None:
        if not mcp_prefix:
            raise InvalidInput("the MCP API needs a path prefix of its own, e.g. mcp=/mcp", field="mount")
        require_extra("mcp", "the MCP API of memdock serve (--mount mcp=...)", "mcp")
        from memdock.dify_adapter.mcp_server.http import create_mountable_app

        mcp_app, mcp_starlette = create_mountable_app(memory, config.keys, host=config.host)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            if mcp_app is not None:  # the SDK's session manager lives in its app's lifespan
                await stack.enter_async_context(mcp_starlette.router.lifespan_context(mcp_starlette))
            yield
        if close_memory:
            memory.close()

    app = FastAPI(
        title="memdock",
        version=memdock_version(),
        description="A pluggable memory layer for AI agents: memdock's native API, Dify's External Knowledge "
        "API and mem0-compatible APIs over one memory backend.",
        lifespan=lifespan,
    )
    app.state.memory = memory
    app.state.config = config
    app.include_router(health)
    for name, router in ROUTERS.items():
        prefix = config.mounts.get(name)
        if prefix is not None:
            app.include_router(router, prefix=prefix)
    if mcp_app is not None:
        app.mount(mcp_prefix or "", mcp_app)
    app.add_middleware(RequestContextMiddleware, max_body_bytes=config.max_body_bytes)
    return app
