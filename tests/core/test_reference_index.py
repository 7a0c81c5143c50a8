"""The reference backend's indexes (ids by scope id and by exact scope + hash, events by memory id, the
vector matrix) answer exactly what a plain scan of its records answers, after any mix of adds, updates,
deletes and resets: search order and scores (`rank_by_cosine`), lists, counts, duplicate lookups and
histories."""

from __future__ import annotations

import random
import uuid
from datetime import timedelta

import numpy as np
import pytest

from memdock.backends.reference import ReferenceBackend, _scope_key
from memdock.embedders.hashing import HashEmbedder
from memdock.filters import Comparison
from memdock.keyword import BM25Index
from memdock.models import EventKind, HistoryEvent, MemoryRecord, Scope, utcnow
from memdock.scoring import rank_by_cosine
from memdock.search_modes import hybrid_ranking
from memdock.validation import text_hash

SCOPES = [Scope(user_id="u1"), Scope(user_id="u1", agent_id="a"), Scope(user_id="u2"), Scope(agent_id="a"),
          Scope(user_id="u2", run_id="r")]
READ_SCOPES = [*SCOPES, Scope(user_id="u1", agent_id="b"), Scope()]


def record(rng: random.Random, embedder: HashEmbedder, expiring_share: float = 0.1) -> MemoryRecord:
    text = f"fact {rng.randrange(40)}"
    now = utcnow()
    expires = now - timedelta(seconds=1) if rng.random() < expiring_share else None
    return MemoryRecord(id=str(uuid.uuid4()), text=text, scope=rng.choice(SCOPES), metadata={"n": rng.randrange(5)},
                        hash=text_hash(text), vector=embedder.embed([text])[0], created_at=now, updated_at=now,
                        expires_at=expires)


def scanned_hybrid(visible: list[MemoryRecord], query: list[float], text: str, limit: int) -> list[tuple[str, float]]:
    """The hybrid ranking of `visible` computed from scratch: a fresh keyword index and vector matrix."""
    if not visible:
        return []
    index = BM25Index()
    index.add_many((r.id, r.text) for r in visible)
    matrix = np.asarray([r.vector for r in visible], dtype=np.float64)
    return [(i, round(score, 12)) for i, score in hybrid_ranking(index, text, query, [r.id for r in visible], matrix,
                                                                  limit)]


@pytest.mark.parametrize("expiring_share", [0.1, 0.0], ids=["some-expiring", "none-expiring"])
def test_indexes_answer_as_a_scan_after_random_writes(expiring_share: float) -> None:
    """With no expiring record in the store a vector or hybrid search ranks the scope's kept matrix rows
    (`_scope_rows`), otherwise every candidate; both answer as the scan, also when asked again before the
    next write."""
    rng = random.Random(7)
    embedder = HashEmbedder(dimension=16)
    backend = ReferenceBackend(ReferenceBackend.Settings(), embedder)
    truth: dict[str, MemoryRecord] = {}
    events: dict[str, list[HistoryEvent]] = {}
    now = utcnow()
    for step in range(400):
        roll = rng.random()
        if roll < 0.5 or not truth:
            batch = [record(rng, embedder, expiring_share) for _ in range(rng.randrange(1, 4))]
            new_events = [HistoryEvent(id=str(uuid.uuid4()), memory_id=r.id, event=EventKind.ADD, scope=r.scope,
                                       created_at=now, new_text=r.text) for r in batch]
            backend.add_with_history(batch, new_events)
            truth.update((r.id, r) for r in batch)
            for event in new_events:
                events.setdefault(event.memory_id, []).append(event)
        elif roll < 0.7:
            old = truth[rng.choice(sorted(truth))]
            changed = record(rng, embedder, expiring_share).model_copy(update={"id": old.id, "scope": old.scope})
            backend.update(changed)
            truth[old.id] = changed
        elif roll < 0.95:
            gone = rng.sample(sorted(truth), k=min(len(truth), rng.randrange(1, 3)))
            backend.delete([*gone, "no-such-id"])
            for memory_id in gone:
                del truth[memory_id]
        elif step % 7 == 0:
            backend.reset()
            truth.clear()
            events.clear()
        live = [r for r in truth.values() if not r.is_expired(utcnow())]
        query = embedder.embed([f"fact {rng.randrange(40)}"])[0]
        for scope in READ_SCOPES:
            visible = [r for r in live if scope.contains(r.scope)]
            hits = backend.search(query, "", scope, None, 5)
            expected = rank_by_cosine(query, sorted(visible, key=lambda r: r.id), 5)
            assert [(h.record.id, round(h.score, 12)) for h in hits] == [
                (h.record.id, round(h.score, 12)) for h in expected]
            again = backend.search(query, "", scope, None, 5)
            assert [(h.record.id, h.score) for h in again] == [(h.record.id, h.score) for h in hits]
            words = f"fact {rng.randrange(40)}"
            fused = [(h.record.id, round(h.score, 12)) for h in backend.hybrid_search(query, words, scope, None, 5)]
            assert fused == scanned_hybrid(visible, query, words, 5)
            assert fused == [(h.record.id, round(h.score, 12))
                             for h in backend.hybrid_search(query, words, scope, None, 5)]
            where = Comparison("n", "gte", 2)
            assert backend.count(scope, where) == sum(1 for r in visible if r.metadata["n"] >= 2)
            assert backend.count(scope, None) == len(visible)
        wanted = [(scope, f"fact {n}", text_hash(f"fact {n}")) for scope in SCOPES for n in range(0, 40, 7)]
        found = backend.find_duplicates(wanted)
        for (scope, _, digest), answer in zip(wanted, found, strict=True):
            holders = [r.id for r in live if r.scope == scope and r.hash == digest]
            assert (answer.id if answer else None) in (holders or [None])
        sample = rng.sample(sorted(truth), k=min(3, len(truth)))
        assert {i: [e.id for e in h] for i, h in backend.history_many(sample).items()} == {
            i: [e.id for e in events.get(i, [])] for i in sample}
    assert backend.count_every() == len([r for r in truth.values() if not r.is_expired(utcnow())])


def test_kept_scope_rows_stay_within_twice_the_stores_rows_and_answer_as_a_scan() -> None:
    """Searching scope after scope (the whole store, each user, each pair) keeps the scopes' rows for the
    next search, but never more than twice the store's rows at once; every answer is still the scan's."""
    rng = random.Random(11)
    embedder = HashEmbedder(dimension=16)
    backend = ReferenceBackend(ReferenceBackend.Settings(), embedder)
    records = [record(rng, embedder, expiring_share=0.0) for _ in range(120)]
    backend.add(records)
    query = embedder.embed(["fact 3"])[0]
    most = 0
    for scope in [Scope(), *READ_SCOPES, Scope(), *reversed(READ_SCOPES)]:
        hits = backend.search(query, "", scope, None, 7)
        expected = rank_by_cosine(query, sorted((r for r in records if scope.contains(r.scope)), key=lambda r: r.id), 7)
        assert [(h.record.id, round(h.score, 12)) for h in hits] == [
            (h.record.id, round(h.score, 12)) for h in expected]
        kept = backend._rows_cache[1]
        assert _scope_key(scope) in kept  # kept for the next search in this scope
        most = max(most, sum(len(rows.ids) for rows in kept.values() if rows is not None))
    assert 120 < most <= 240
