"""A real `memdock serve` on 127.0.0.1 for tests: started as a subprocess on a free port, stopped by its PID."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.helpers.local_process import free_port, serving

_logs: dict[str, Path] = {}


def backend_url(kind: str, folder: Path, name: str) -> str:
    """The backend a server test runs on: ``memory`` (a named in-process store) or ``chroma`` (embedded,
    in `folder`), both with the fast deterministic embedder."""
    return f"memory://{name}?embedder=hash" if kind == "memory" else f"chroma://{folder}/db?embedder=hash"


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
    """Everything the server at `base_url` has written so far."""
    return _logs[base_url].read_text()
