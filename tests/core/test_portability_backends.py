"""The optional backend methods migration relies on: `list_every` / `count_every` (every record of a store,
whatever its scope) where memory://, embedded Chroma and pgvector implement them, `Unsupported` where a
store cannot (mem0, through its stand-in), and `get_many` / `history_many` (the batched reads), whose
defaults work on any backend."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from memdock.errors import InvalidInput, Unsupported
from memdock.memory import Memory
from memdock.models import utcnow
from tests.helpers.mem0_server_standin import mem0_server_standin
from tests.helpers.store_urls import store_url


@pytest.fixture(params=["memory", "chroma", "pgvector"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with store_url(request.param, tmp_path, request) as fresh:
        yield fresh


def test_list_every_pages_every_scope_once_and_resumes_in_a_new_instance(url: str) -> None:
    with Memory.open(url) as memory:
        for n in range(23):
            memory.add(f"item {n}", user_id=f"u{n % 4}", agent_id="a" if n % 3 else None)
        memory.add("gone soon", user_id="x", expires_at=utcnow() + timedelta(hours=1))
        memory.backend.now = lambda: utcnow() + timedelta(hours=2)  # type: ignore[method-assign]
        first = memory.backend.list_every(10, None)
        assert len(first.items) <= 10 and first.next_cursor is not None
        assert memory.backend.count_every() >= 23
    seen = [r.text for r in first.items]
    with Memory.open(url) as again:  # the cursor works in another instance (a resumed process)
        again.backend.now = lambda: utcnow() + timedelta(hours=2)  # type: ignore[method-assign]
        cursor = first.next_cursor
        while cursor is not None:
            page = again.backend.list_every(10, cursor, vectors=True)
            assert all(r.vector is None or len(r.vector) == 64 for r in page.items)
            seen += [r.text for r in page.items]
            cursor = page.next_cursor
        assert sorted(seen) == sorted(f"item {n}" for n in range(23))  # once each, the expired one left out
        with pytest.raises(InvalidInput, match="cursor"):
            again.backend.list_every(10, "not-a-cursor!")


def test_get_many_and_history_many(url: str) -> None:
    with Memory.open(url) as memory:
        ids = [memory.add(f"fact {n}", user_id="u")[0].record.id for n in range(5)]
        memory.update(ids[0], text="fact zero")
        got = memory.get_many([*ids, "no-such-id"])
        assert sorted(r.id for r in got) == sorted(ids) and all(r.vector is None for r in got)
        events = memory.histories([ids[0], ids[1], "no-such-id"])
        assert [e.event for e in events[ids[0]]] == ["ADD", "UPDATE"]
        assert events[ids[0]] == memory.history(ids[0]) and len(events[ids[1]]) == 1
        assert events["no-such-id"] == []


def test_a_store_that_cannot_list_across_scopes_says_so() -> None:
    with mem0_server_standin() as (service, _), Memory.open(
            f"mem0+http://{service.url}?dialect=server&server_embedder=hash") as memory:
        memory.add("a fact", user_id="u")
        with pytest.raises(Unsupported, match="give scope ids"):
            memory.backend.list_every(10, None)
        with pytest.raises(Unsupported):
            memory.backend.count_every()
        stored = memory.export(user_id="u")[0]
        assert [r.id for r in memory.get_many([stored.id])] == [stored.id]  # the default: one get per id
