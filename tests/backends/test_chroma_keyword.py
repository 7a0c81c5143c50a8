"""Keyword and hybrid search of the Chroma backend (embedded and a real `chroma run` server) against the
reference backend: the same rankings and scores on random multilingual data (scopes, filters, expiry), the
same after updates and deletes (made by another backend object, as another process would), one Chroma
request per search, and hybrid as the default mode."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import memdock
from memdock import InvalidInput
from memdock.backend import Backend
from memdock.capabilities import Capability
from memdock.models import Scope
from tests.backends.test_chroma import collection_url
from tests.helpers.keyword_data import (
    assert_same,
    compare_hybrid_search,
    compare_keyword_search,
    dataset,
    make_record,
    random_vector,
)


@pytest.fixture(params=["embedded", "server"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return collection_url(request.param, tmp_path, request)


@pytest.fixture
def pair(url: str) -> Iterator[tuple[Backend, Backend]]:
    """A Chroma collection and a reference store holding the same 300 records (same ids, same vectors)."""
    records = dataset(7, 300)
    with memdock.open(url) as chroma, memdock.open("memory://?embedder=hash") as ref:
        chroma.backend.add(records)
        ref.backend.add(records)
        yield chroma.backend, ref.backend


def test_keyword_search_equals_the_reference_exactly(pair: tuple[Backend, Backend]) -> None:
    hits = compare_keyword_search(*pair, queries=60, limits=(10,), tolerance=1e-12)
    assert hits > 150  # most comparisons had hits


def test_hybrid_search_equals_the_reference(pair: tuple[Backend, Backend]) -> None:
    """Same ranking; scores within float32's precision (Chroma keeps float32 vectors)."""
    compare_hybrid_search(*pair, queries=40)


def test_updates_and_deletes_by_another_writer_change_the_ranking_like_the_reference(url: str) -> None:
    """Nothing is kept beside the collection: a reader's next search sees another writer's changes."""
    rng = random.Random(3)
    scope = Scope(user_id="u1")
    records = [make_record(t, scope, rng) for t in
               ["green tea at noon", "green tea", "black coffee", "tea and coffee", "green walls", "matcha tea"]]
    with memdock.open(url) as reader, memdock.open(url) as writer, memdock.open("memory://?embedder=hash") as ref:
        writer.backend.add(records)
        ref.backend.add(records)
        changed = records[2].model_copy(update={"text": "green tea and black coffee"})
        for backend in (writer.backend, ref.backend):
            backend.update(changed)
            backend.delete([records[1].id])
        for query in ("green tea", "coffee", "tea"):
            want = ref.backend.keyword_search(query, scope, None, 10)
            assert_same(reader.backend.keyword_search(query, scope, None, 10), want, 1e-12)
            assert records[1].id not in {h.record.id for h in want}
            vector = random_vector(rng)
            assert_same(reader.backend.hybrid_search(vector, query, scope, None, 10),
                        ref.backend.hybrid_search(vector, query, scope, None, 10), 1e-6)


def test_a_search_in_each_mode_is_one_chroma_request(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with memdock.open(url) as memory:
        for n in range(12):
            memory.add(f"fact number {n} about tea", user_id="u1")
        collection = memory.backend._collection  # type: ignore[attr-defined]
        calls: list[str] = []
        for name in ("get", "query", "count"):
            real = getattr(collection, name)

            def traced(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
                calls.append(_name)
                return _real(*args, **kwargs)

            monkeypatch.setattr(collection, name, traced)
        for mode in ("keyword", "hybrid"):
            calls.clear()
            hits = memory.search("fact number 3", user_id="u1", limit=5, mode=mode)
            assert hits[0].record.text == "fact number 3 about tea" and calls == ["get"], (mode, calls)


def test_capability_default_mode_and_a_missing_vector(url: str) -> None:
    with memdock.open(url) as memory:
        assert Capability.KEYWORD_SEARCH in memory.capabilities
        assert memory.default_search_mode == "hybrid"
        with pytest.raises(InvalidInput) as caught:
            memory.backend.hybrid_search(None, "tea", Scope(user_id="u1"), None, 5)
        assert caught.value.field == "vector"
