"""A real `chroma run` server on 127.0.0.1 for tests: started on a free port, stopped by its PID."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.helpers.local_process import free_port, serving


@contextmanager
def chroma_server(data_dir: Path, timeout: float = 60.0) -> Iterator[str]:
    """Run `chroma run` on a free port; yields its ``chroma+http://`` base URL; stops it afterwards."""
    exe = shutil.which("chroma", path=str(Path(sys.executable).parent)) or "chroma"
    port = free_port()
    command = [exe, "run", "--path", str(data_dir), "--host", "127.0.0.1", "--port", str(port)]
    with serving(command, f"http://127.0.0.1:{port}/api/v2/heartbeat", data_dir.parent / f"chroma-{port}.log",
                 timeout=timeout):
        yield f"chroma+http://127.0.0.1:{port}"
