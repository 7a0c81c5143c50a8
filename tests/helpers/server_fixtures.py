"""Session fixtures for the servers many tests share (tests/conftest.py provides them to every test): a
real `chroma run` server and a real PostgreSQL with pgvector."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.helpers.chroma_server import chroma_server
from tests.helpers.pg_server import PG_URL_ENV, pg_server


@pytest.fixture(scope="session")
def chroma_http_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL (``chroma+http://127.0.0.1:PORT``) of a `chroma run` server started for this test session."""
    with chroma_server(tmp_path_factory.mktemp("chroma-server") / "data") as url:
        yield url


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A ``pgvector://`` URL: ``MEMDOCK_TEST_PG_URL`` when set, else a throwaway server for this session."""
    configured = os.environ.get(PG_URL_ENV)
    if configured:
        yield configured
        return
    with pg_server() as server:
        yield server.url
