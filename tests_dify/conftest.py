"""The Dify plugin's tests run in a pytest process of their own: `import dify_plugin` patches the whole
process with gevent. They reuse the server fixtures of ../tests."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))

from chroma_server import chroma_server  # noqa: E402
from pg_server import PG_URL_ENV, pg_server  # noqa: E402


@pytest.fixture(scope="session")
def chroma_http_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `chroma run` on 127.0.0.1 for this session."""
    with chroma_server(tmp_path_factory.mktemp("chroma-server") / "data") as url:
        yield url


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """PostgreSQL with pgvector: ``MEMDOCK_TEST_PG_URL`` or a throwaway server."""
    configured = os.environ.get(PG_URL_ENV)
    if configured:
        yield configured
        return
    with pg_server() as server:
        yield server.url
