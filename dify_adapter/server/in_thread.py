"""Serve an ASGI app with uvicorn in a background thread of this process, on a free 127.0.0.1 port: what
tests and benchmarks use to talk HTTP to a real server without starting a process."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def serving_in_thread(app: Any, *, timeout: float = 30.0, name: str = "memdock-app") -> Iterator[str]:
    """Yield ``http://127.0.0.1:PORT`` once uvicorn serving `app` accepts connections; stop it afterwards
    (``should_exit``, thread joined, socket closed). The socket is bound before the thread starts, so no
    other process can take the port in between. `RuntimeError` when uvicorn does not start in `timeout`
    seconds."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, log_level="warning",
                                           access_log=False, server_header=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"{name}-{port}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on 127.0.0.1:{port}")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=timeout)
        sock.close()
