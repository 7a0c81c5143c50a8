"""The memdock server in the test process, without a socket: the app `create_app` builds, configured exactly
as ``memdock serve`` flags configure it, reached through Starlette's `TestClient`, with what it logs.

`memdock_client(backend, *serve_args)` is the in-process counterpart of
`tests.helpers.memdock_server.memdock_server(backend, *serve_args)`: same backend URL, same flags, same
answers; only the process and the socket are missing (tests about those use the subprocess).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from memdock.dify_adapter.server.app import create_app
from memdock.dify_adapter.server.config import ServerConfig
from memdock.dify_adapter.server.options import add_arguments
from memdock.dify_adapter.server.serve import build_config
from memdock.memory import Memory

SERVER_LOGGER = "memdock"
"""The logger tree the server writes to (``memdock.access``, ``memdock.retrieval``, ...)."""


def serve_config(*serve_args: str) -> ServerConfig:
    """The `ServerConfig` that ``memdock serve *serve_args`` runs with: the flags parsed by the serve
    command's own `add_arguments`, then `build_config` (which reads ``MEMDOCK_API_KEYS`` like the command).
    Raises `InvalidInput` for a bad option, as the command refuses it."""
    parser = argparse.ArgumentParser(prog="memdock serve")
    add_arguments(parser)
    return build_config(parser.parse_args(list(serve_args)))


def memdock_app(backend: str | Memory, *serve_args: str, config: ServerConfig | None = None) -> FastAPI:
    """The server app over `backend`: a backend URL (opened here, closed when the app shuts down, as
    ``memdock serve`` does) or an open `Memory` (left open: it stays the caller's). `config` wins over
    `serve_args`; give one or the other."""
    if config is not None and serve_args:
        raise ValueError("give serve_args or config, not both")
    chosen = config if config is not None else serve_config(*serve_args)
    if isinstance(backend, Memory):
        return create_app(backend, chosen)
    memory = Memory.open(backend)
    try:
        return create_app(memory, chosen, close_memory=True)
    except BaseException:
        memory.close()
        raise


class LogCapture(logging.Handler):
    """Every record of the `SERVER_LOGGER` tree while attached, formatted as ``memdock serve`` prints them
    (``%(message)s``, one per line). Routes log from the thread pool: `logging.Handler.handle` serialises
    `emit`, and `text` reads a copy."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logging.Formatter("%(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the formatted record."""
        self.lines.append(self.format(record))

    def text(self) -> str:
        """Everything captured so far, one record per line."""
        return "".join(f"{line}\n" for line in list(self.lines))


@contextmanager
def captured_server_log() -> Iterator[LogCapture]:
    """Capture the server's logs (INFO and up, as ``memdock serve --log-level info`` prints them) until
    the block ends; the logger's level is restored afterwards."""
    logger = logging.getLogger(SERVER_LOGGER)
    capture = LogCapture()
    previous = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addHandler(capture)
    try:
        yield capture
    finally:
        logger.removeHandler(capture)
        logger.setLevel(previous)


class ClientOfRunningApp(TestClient):
    """A `TestClient` over an app that another client runs: it sends its requests on that client's event
    loop (when it has one), and entering or leaving it never starts or stops the app's lifespan (which
    would close a Memory the app owns); leaving it only closes this client."""

    def __init__(self, owner: TestClient, **kwargs: Any) -> None:
        super().__init__(owner.app, **kwargs)
        self.portal = owner.portal

    def __enter__(self) -> ClientOfRunningApp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MemdockTestClient(TestClient):
    """A `TestClient` over a memdock app that also holds what the server logged while it ran."""

    def __init__(self, app: FastAPI, log: LogCapture, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.log = log

    def server_log(self) -> str:
        """Everything the server has logged since the client started (access log, failed retrievals)."""
        return self.log.text()

    def as_another(self, **kwargs: Any) -> ClientOfRunningApp:
        """Another client of the same running app (same Memory, same logs), e.g. with other default
        headers or another ``base_url``; `kwargs` go to `TestClient`. Use it while this client is open."""
        return ClientOfRunningApp(self, **kwargs)


@contextmanager
def memdock_client(
    backend: str | Memory, *serve_args: str, config: ServerConfig | None = None, **client_kwargs: Any
) -> Iterator[MemdockTestClient]:
    """A client of `memdock_app(backend, *serve_args, config=config)` whose lifespan runs for the block
    (so a Memory opened from a URL is closed at its end), capturing the server's log meanwhile.
    `client_kwargs` go to `TestClient` (``headers``, ``base_url``, ...). Unhandled errors in the app are
    raised in the test instead of answering 500."""
    app = memdock_app(backend, *serve_args, config=config)
    with captured_server_log() as log, MemdockTestClient(app, log, **client_kwargs) as client:
        yield client
