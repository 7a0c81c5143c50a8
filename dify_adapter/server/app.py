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
from starlette.responses import JSONResponse, Response
from starlette.types import Scope

from memdock.dify_adapter.server import mem0_server, mem0ai_api, native, retrieval
from memdock.dify_adapter.server.config import ServerConfig
from memdock.dify_adapter.server.errors import BodyTooLarge, Translate, native_error
from memdock.dify_adapter.server.middleware import BodyOverLimit, RequestContextMiddleware, TooLarge
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

TRANSLATORS: dict[str, Translate] = {
    "native": native_error,
    "mem0-server": mem0_server.mem0_server_error,
    "mem0ai-api": mem0ai_api.mem0ai_api_error,
}
"""The error translator of each API that has one, by API name: how a request sent under its mount point is
told that its body is too large."""


def dify_error(request: Request, exc: Exception) -> Response:
    """Dify's error body ``{"error_code", "error_msg"}`` for a body over the limit on ``/retrieval``."""
    return JSONResponse({"error_code": 413, "error_msg": str(exc)}, status_code=413)


def too_large_by_path(config: ServerConfig) -> TooLarge:
    """The 413 answer of the API a request's path belongs to (by its mount point, the longest first), in
    that API's envelope; the native one for any other path."""
    prefixes = sorted(((prefix, translate) for name, translate in TRANSLATORS.items()
                       if (prefix := config.mounts.get(name)) is not None), key=lambda item: -len(item[0]))
    retrieval_mount = config.mounts.get("retrieval")
    dify_paths = set() if retrieval_mount is None else {
        retrieval_mount + path for path in (retrieval.RETRIEVAL_PATH, *retrieval.ALIASES)}

    def answer(scope: Scope, limit: int) -> Response:
        path: str = scope.get("path", "")
        translate = dify_error if path in dify_paths else next(
            (t for prefix, t in prefixes if path == prefix or path.startswith(prefix.rstrip("/") + "/")),
            native_error)
        return translate(Request(scope), BodyTooLarge(f"request body exceeds {limit} bytes", field="body"))

    return answer


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
    too_large = too_large_by_path(config)

    async def over_limit(request: Request, exc: Exception) -> Response:
        return too_large(request.scope, exc.limit if isinstance(exc, BodyOverLimit) else config.max_body_bytes)

    app.add_exception_handler(BodyOverLimit, over_limit)
    app.add_middleware(RequestContextMiddleware, max_body_bytes=config.max_body_bytes, too_large=too_large)
    return app
