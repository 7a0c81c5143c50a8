"""`memdock.micro_batch.MicroBatcher`: concurrent query embeddings share one batch call, each caller gets
its own vector (or the batch's error), a lone caller is embedded at once; and `Memory.search` uses it."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from memdock import Memory
from memdock.errors import BackendUnavailable
from memdock.micro_batch import MicroBatcher
from tests.helpers.support import make_test_embedder


class _GatedEmbed:
    """An embed function whose first call blocks until `release` is set; records every call's texts."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.inner = make_test_embedder()

    def __call__(self, texts: list[str]) -> Sequence[list[float]]:
        self.calls.append(list(texts))
        if len(self.calls) == 1:
            self.entered.set()
            assert self.release.wait(10)
        return self.inner.embed(texts)


def _wait_for_queue(batcher: MicroBatcher, size: int) -> None:
    for _ in range(1000):
        with batcher._lock:
            if batcher._open is not None and len(batcher._open.texts) == size:
                return
        threading.Event().wait(0.005)
    raise AssertionError(f"the queue never reached {size} texts")


def test_a_lone_caller_is_embedded_at_once_and_alone() -> None:
    embed = _GatedEmbed()
    embed.release.set()
    batcher = MicroBatcher(embed)
    assert batcher.embed_one("tea") == make_test_embedder().embed(["tea"])[0]
    assert embed.calls == [["tea"]]


def test_callers_arriving_during_a_call_share_the_next_one_and_get_their_own_vectors() -> None:
    embed = _GatedEmbed()
    batcher = MicroBatcher(embed)
    texts = [f"query number {i}" for i in range(8)]
    results: dict[str, list[float]] = {}

    def ask(text: str) -> None:
        results[text] = batcher.embed_one(text)

    first = threading.Thread(target=ask, args=(texts[0],))
    first.start()
    assert embed.entered.wait(10)
    others = [threading.Thread(target=ask, args=(t,)) for t in texts[1:]]
    for thread in others:
        thread.start()
    _wait_for_queue(batcher, len(others))
    embed.release.set()
    for thread in (first, *others):
        thread.join(10)
    assert embed.calls[0] == [texts[0]]
    assert len(embed.calls) == 2 and sorted(embed.calls[1]) == sorted(texts[1:])
    expected = make_test_embedder().embed(texts)
    assert [results[t] for t in texts] == expected


def test_the_queue_is_split_at_max_batch() -> None:
    embed = _GatedEmbed()
    batcher = MicroBatcher(embed, max_batch=3)
    threads = [threading.Thread(target=batcher.embed_one, args=(f"t{i}",)) for i in range(7)]
    threads[0].start()
    assert embed.entered.wait(10)
    for thread in threads[1:4]:
        thread.start()
    _wait_for_queue(batcher, 3)
    for thread in threads[4:]:
        thread.start()
    _wait_for_queue(batcher, 3)
    embed.release.set()
    for thread in threads:
        thread.join(10)
    assert [len(c) for c in embed.calls] == [1, 3, 3]


def test_every_caller_of_a_failing_batch_gets_its_error() -> None:
    gate = threading.Event()
    entered = threading.Event()
    calls: list[list[str]] = []

    def failing(texts: list[str]) -> Sequence[list[float]]:
        calls.append(texts)
        if len(calls) == 1:
            entered.set()
            assert gate.wait(10)
            return make_test_embedder().embed(texts)
        raise BackendUnavailable("model server down")

    batcher = MicroBatcher(failing)
    errors: list[BaseException] = []

    def ask(text: str) -> None:
        try:
            batcher.embed_one(text)
        except BackendUnavailable as exc:
            errors.append(exc)

    first = threading.Thread(target=ask, args=("a",))
    first.start()
    assert entered.wait(10)
    others = [threading.Thread(target=ask, args=(t,)) for t in ("b", "c", "d")]
    for thread in others:
        thread.start()
    _wait_for_queue(batcher, 3)
    gate.set()
    for thread in (first, *others):
        thread.join(10)
    assert len(errors) == 3 and all("model server down" in str(e) for e in errors)
    assert [sorted(c) for c in calls] == [["a"], ["b", "c", "d"]]


def test_a_wrong_number_of_vectors_is_an_error_for_every_caller() -> None:
    batcher = MicroBatcher(lambda texts: [[1.0]] * (len(texts) + 1))
    with pytest.raises(ValueError, match="2 vectors for 1 texts"):
        batcher.embed_one("x")


def test_concurrent_searches_share_query_embeddings() -> None:
    embed = _GatedEmbed()
    embedder = make_test_embedder()
    with Memory.open("memory://", embedder=embedder) as memory:
        memory.add("green tea in the morning", user_id="u1")
        embedder_embed = embedder.embed
        memory._query_batcher = MicroBatcher(embed)  # the same embedder behind a gate, to make calls overlap
        hits: dict[str, float] = {}

        def search(query: str) -> None:
            [hit] = memory.search(query, user_id="u1", mode="vector")
            hits[query] = hit.score

        queries = ["tea", "morning tea", "green", "a hot drink", "breakfast"]
        first = threading.Thread(target=search, args=(queries[0],))
        first.start()
        assert embed.entered.wait(10)
        others = [threading.Thread(target=search, args=(q,)) for q in queries[1:]]
        for thread in others:
            thread.start()
        _wait_for_queue(memory._query_batcher, len(others))
        embed.release.set()
        for thread in (first, *others):
            thread.join(10)
        assert [len(c) for c in embed.calls] == [1, 4]
        memory._query_batcher = MicroBatcher(embedder_embed)  # now one search at a time: the same scores
        memory._query_vectors.clear()
        for query in queries:
            assert memory.search(query, user_id="u1", mode="vector")[0].score == pytest.approx(hits[query], abs=1e-12)
