"""Shared fixtures: a real Chroma server for the whole session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from chroma_server import chroma_server


@pytest.fixture(scope="session")
def chroma_http_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL (``chroma+http://127.0.0.1:PORT``) of a `chroma run` server started for this test session."""
    with chroma_server(tmp_path_factory.mktemp("chroma-server") / "data") as url:
        yield url
