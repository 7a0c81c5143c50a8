"""`Memory.import_` of a record whose id a store already holds, on every backend that keeps the ids it is
given (memory://, embedded Chroma, a Chroma server, pgvector): the id of an expired memory is free again
(the import stores the new record, not the expired one), and the id of a live memory written by another
writer is never overwritten nor lost, even when the import must give up."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from memdock.errors import WriteConflict
from memdock.memory import Memory
from memdock.models import EventKind, MemoryRecord, Scope, utcnow
from memdock.validation import text_hash
from tests.helpers.store_urls import store_url


@pytest.fixture(params=["memory", "chroma", "chroma+http", "pgvector"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with store_url(request.param, tmp_path, request) as fresh:
        yield fresh


def record(memory_id: str, text: str, **extra: object) -> MemoryRecord:
    now = utcnow()
    return MemoryRecord(id=memory_id, text=text, scope=Scope(user_id="u1"), hash=text_hash(text), created_at=now,
                        updated_at=now, **extra)


def test_the_id_of_an_expired_memory_can_be_imported_again(url: str) -> None:
    memory_id = str(uuid.uuid4())
    with Memory.open(url) as memory:
        memory.import_([record(memory_id, "old text", expires_at=utcnow() + timedelta(seconds=1))])
        time.sleep(1.2)
        assert memory.count(user_id="u1") == 0
        [result] = memory.import_([record(memory_id, "new text")])
        assert result.event is EventKind.ADD
        assert memory.get(memory_id).text == "new text" and memory.count(user_id="u1") == 1
        assert [h.record.id for h in memory.search("new text", user_id="u1")] == [memory_id]
        assert EventKind.ADD in [e.event for e in memory.history(memory_id)]


def test_a_live_memory_keeping_the_id_is_neither_overwritten_nor_lost(url: str) -> None:
    """Two store objects of one store (as two processes): the second imports a record whose id the first
    stored meanwhile, with another text."""
    memory_id = str(uuid.uuid4())
    with Memory.open(url) as first, Memory.open(url) as second:
        first.import_([record(memory_id, "the first writer's text")])
        [result] = second.import_([record(memory_id, "the second writer's text")])
        assert result.event is EventKind.NONE and result.record.text == "the first writer's text"
        assert first.get(memory_id).text == "the first writer's text"
        # the race itself: the second writer's check saw nothing, then the first stored the id
        assert second.embedder is not None
        late = record(memory_id, "the late writer's text", vector=second.embedder.embed(["the late writer's text"])[0])
        with pytest.raises(WriteConflict):
            second.backend.add_with_history([late], [])
        assert first.get(memory_id).text == "the first writer's text"
        assert first.count(user_id="u1") == 1
