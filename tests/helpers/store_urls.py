"""Fresh, empty stores of every kind the tests move data between, by name: memory://, embedded Chroma, a
Chroma server, pgvector, memdock+http (a real uvicorn-served memdock) and both mem0 dialects (through
their stand-ins, which answer as the recorded transcripts show)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers.mem0_server_standin import mem0_server_standin
from tests.helpers.mem0ai_api_standin import mem0ai_api_standin
from tests.helpers.memdock_server import memdock_app_server

KINDS = ("memory", "chroma", "chroma+http", "pgvector", "memdock+http", "mem0-server", "mem0ai-api")


@contextmanager
def store_url(kind: str, folder: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty store of `kind` (one of `KINDS`; the hash embedder where the client embeds), its files
    under `folder`; its server stopped afterwards. The Chroma server and PostgreSQL come from the session's
    ``chroma_http_url`` and ``pg_url`` fixtures."""
    tag = uuid.uuid4().hex[:10]
    if kind == "memory":
        yield f"memory://m-{tag}?embedder=hash"
    elif kind == "chroma":
        yield f"chroma://{folder}/chroma-{tag}?embedder=hash"
    elif kind == "chroma+http":
        yield f"{request.getfixturevalue('chroma_http_url')}?collection=c{tag}&embedder=hash"
    elif kind == "pgvector":
        yield f"{request.getfixturevalue('pg_url')}&table=t{tag}&embedder=hash"
    elif kind == "memdock+http":
        with memdock_app_server(f"memory://served-{tag}?embedder=hash") as base:
            yield f"memdock+http://{base.removeprefix('http://')}"
    elif kind == "mem0-server":
        with mem0_server_standin() as (service, _):
            yield f"mem0+http://{service.url}?dialect=server&server_embedder=hash"
    elif kind == "mem0ai-api":
        with mem0ai_api_standin() as (service, _):
            yield f"mem0+http://{service.url}?dialect=mem0ai-api&server_embedder=hash&max_items=20000"
    else:
        raise ValueError(f"unknown store kind {kind!r}")
