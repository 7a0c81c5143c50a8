"""A real `memdock serve` on 127.0.0.1 for tests: started as a subprocess on a free port, stopped by its PID."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from chroma_server import free_port


@contextmanager
def memdock_server(
    backend_url: str, *extra_args: str, env: dict[str, str] | None = None, timeout: float = 60.0,
    default_url: bool = False,
) -> Iterator[str]:
    """Run ``memdock --url BACKEND serve --port PORT ...``; yields ``http://127.0.0.1:PORT``. With
    `default_url`, no ``--url`` is passed (the server opens ``MEMDOCK_URL`` or the embedded default).
    `env` is the whole environment of the server (default: this process's).

    The server's stderr (startup line and access log) is kept in a temporary file, readable through
    `server_log(base_url)` while the server runs.
    """
    exe = shutil.which("memdock", path=str(Path(sys.executable).parent)) or "memdock"
    port = free_port()
    log_path = Path(tempfile.mkdtemp(prefix="memdock-serve-")) / "server.log"
    log = log_path.open("w")
    process = subprocess.Popen(
        [exe, *([] if default_url else ["--url", backend_url]), "serve", "--port", str(port), *extra_args],
        stdout=log, stderr=subprocess.STDOUT, env=env if env is not None else dict(os.environ),
    )
    base = f"http://127.0.0.1:{port}"
    _logs[base] = log_path
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"memdock serve did not start on port {port}:\n{log_path.read_text()}")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        _logs.pop(base, None)


_logs: dict[str, Path] = {}


def server_log(base_url: str) -> str:
    """Everything the server at `base_url` has written so far."""
    return _logs[base_url].read_text()
