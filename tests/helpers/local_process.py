"""Servers the tests start themselves: a free port on 127.0.0.1, and a process that is waited for until
it answers and is stopped by its PID afterwards, with its output kept in a log file."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(command: Sequence[str], ready_url: str, log_path: Path, *, timeout: float = 60.0,
            env: Mapping[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run `command` until `ready_url` answers 200 (`RuntimeError` with the log if it never does), yield
    the process, then terminate it (kill after 15 s)."""
    log = log_path.open("w")
    process = subprocess.Popen(list(command), stdout=log, stderr=subprocess.STDOUT,
                               env=dict(env) if env is not None else None)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(ready_url, timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{command[0]} did not answer {ready_url}:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
