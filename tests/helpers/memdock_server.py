"""memdock's HTTP server on a real 127.0.0.1 socket for tests, two ways:

- `memdock_app_server`: uvicorn in a background thread of the test process (fast; for tests that need
  real HTTP, such as a client library under test, streamed bodies or concurrent requests);
- `memdock_server`: a real ``memdock serve`` subprocess on a free port, stopped by its PID (for tests
  whose subject is the process: the command line, its output, start-up and shutdown).

Route behaviour is best tested without either: `tests.helpers.memdock_app.memdock_client`.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from memdock.dify_adapter.server.config import ServerConfig
from memdock.dify_adapter.server.in_thread import serving_in_thread
from memdock.memory import Memory
from tests.helpers.local_process import free_port, serving
from tests.helpers.memdock_app import memdock_app

_logs: dict[str, Path] = {}


def backend_url(kind: str, folder: Path, name: str) -> str:
    """The backend a server test runs on: ``memory`` (a named in-process store) or ``chroma`` (embedded,
    in `folder`), both with the fast deterministic embedder."""
    return f"memory://{name}?embedder=hash" if kind == "memory" else f"chroma://{folder}/db?embedder=hash"


def fresh_backend_url(kind: str, folder: Path, name: str) -> str:
    """`backend_url` for a store no other test shares, for servers in the test process: a named
    memory:// store lives as long as the process, so the name gets a unique suffix (as a fresh
    ``memdock serve`` process would start empty); Chroma lives in `folder`, which is the caller's."""
    return backend_url(kind, folder, f"{name}-{uuid.uuid4().hex[:12]}")


@contextmanager
def memdock_app_server(
    backend: str | Memory, *serve_args: str, config: ServerConfig | None = None, timeout: float = 30.0,
    without_routes: tuple[str, ...] = (),
) -> Iterator[str]:
    """Serve `memdock_app(backend, *serve_args, config=config)` with uvicorn on a free 127.0.0.1 port in a
    background thread; yields ``http://127.0.0.1:PORT`` once it accepts connections, then stops it
    (``server.should_exit = True``, thread joined) and, for a backend URL, closes the Memory it opened.

    `backend` is a backend URL or an open `Memory` (left open); `serve_args` are ``memdock serve`` flags
    (``--api-key``, ``--mount``, ...), `config` a ready `ServerConfig` instead; `without_routes` lists paths
    (e.g. ``/v1/lookups``) taken out of the app, as a server from before them. The socket is bound before
    the thread starts, so no other process can take the port in between. `RuntimeError` when uvicorn does
    not start within `timeout` seconds.
    """
    app: Any = memdock_app(backend, *serve_args, config=config)
    if without_routes:
        app = _answering_404(app, without_routes)
    with serving_in_thread(app, timeout=timeout) as base:
        yield base


def _answering_404(app: Any, paths: tuple[str, ...]) -> Any:
    """`app`, except that `paths` answer as a route the server does not have (FastAPI's own 404)."""
    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] in paths:
            await send({"type": "http.response.start", "status": 404,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": b'{"detail":"Not Found"}'})
            return
        await app(scope, receive, send)
    return wrapped


@contextmanager
def memdock_server(
    backend_url: str, *extra_args: str, env: dict[str, str] | None = None, timeout: float = 60.0,
    default_url: bool = False,
) -> Iterator[str]:
    """Run ``memdock --url BACKEND serve --port PORT ...``; yields ``http://127.0.0.1:PORT``. With
    `default_url`, no ``--url`` is passed (the server opens ``MEMDOCK_URL`` or the embedded default).
    `env` is the whole environment of the server (default: this process's). Its output (startup line
    and access log) is readable through `server_log(base_url)` while it runs.
    """
    exe = shutil.which("memdock", path=str(Path(sys.executable).parent)) or "memdock"
    port = free_port()
    log_path = Path(tempfile.mkdtemp(prefix="memdock-serve-")) / "server.log"
    command = [exe, *([] if default_url else ["--url", backend_url]), "serve", "--port", str(port), *extra_args]
    base = f"http://127.0.0.1:{port}"
    with serving(command, f"{base}/healthz", log_path, timeout=timeout, env=env):
        _logs[base] = log_path
        try:
            yield base
        finally:
            _logs.pop(base, None)


def server_log(base_url: str) -> str:
    """Everything the `memdock_server` at `base_url` has written so far."""
    return _logs[base_url].read_text()
