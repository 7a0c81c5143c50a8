"""Data for comparing a backend's keyword and hybrid search with the reference backend's: random multilingual
texts over a few scopes (some expired), float32-exact vectors, queries, filters and a comparison of rankings."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from memdock.backend import Backend
from memdock.filters import Filter, parse_mem0_filter
from memdock.models import MemoryRecord, Scope, SearchHit
from memdock.validation import text_hash

DIM = 64  # the hash embedder's

WORDS = [
    "green", "tea", "coffee", "morning", "evening", "allergy", "allergic", "peanuts", "roof", "roofing",
    "kilometer", "kilometres", "meeting", "Straße", "STRASSE", "café", "Málaga", "naïve", "façade", "Zürich",
    "ørsted", "der", "die", "das", "Haus", "Häuser", "la", "le", "les", "maison", "maisons", "de", "el", "perro",
    "perros", "gato", "東京", "東京駅", "大阪", "京都", "ラーメン", "寿司", "서울", "한국어", "学校", "北京", "上海",
    "Москва", "книга", "книги", "το", "σπίτι", "10am", "3,5km", "2024", "42",
]


def random_text(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(1, 12))]
    return " ".join(words) + rng.choice(["", ".", "!", " ?"])


def random_vector(rng: random.Random) -> list[float]:
    """Positive components (cosines > 0, so no zero-score ties), each exactly a float32 (what pgvector keeps)."""
    return [float(np.float32(rng.uniform(0.05, 1.0))) for _ in range(DIM)]


def make_record(text: str, scope: Scope, rng: random.Random, **extra: Any) -> MemoryRecord:
    now = datetime.now(UTC)
    return MemoryRecord(id=str(uuid.UUID(int=rng.getrandbits(128))), text=text, scope=scope, hash=text_hash(text),
                        metadata=extra.pop("metadata", {}), created_at=now, updated_at=now,
                        vector=random_vector(rng), **extra)


SCOPES = [Scope(user_id="u1"), Scope(user_id="u2"), Scope(user_id="u1", agent_id="a1"), Scope(agent_id="a2")]


def dataset(seed: int, count: int) -> list[MemoryRecord]:
    """`count` records of random multilingual texts over `SCOPES` (one text per scope at most), some expired."""
    rng = random.Random(seed)
    records: list[MemoryRecord] = []
    seen: set[tuple[Scope, str]] = set()
    past = datetime.now(UTC) - timedelta(hours=1)
    while len(records) < count:
        scope, text = rng.choice(SCOPES), random_text(rng)
        if (scope, text) in seen:
            continue
        seen.add((scope, text))
        expires = past if rng.random() < 0.05 else None
        records.append(make_record(text, scope, rng, metadata={"n": len(records) % 7, "kind": rng.choice("abc")},
                                   expires_at=expires))
    return records


def ranked(hits: list[SearchHit]) -> list[tuple[str, float]]:
    return [(hit.record.id, hit.score) for hit in hits]


def assert_same(got: list[SearchHit], want: list[SearchHit], tolerance: float) -> None:
    assert [i for i, _ in ranked(got)] == [i for i, _ in ranked(want)]
    for (_, a), (_, b) in zip(ranked(got), ranked(want), strict=True):
        assert abs(a - b) <= tolerance, (a, b)
    for g, w in zip(got, want, strict=True):
        assert g.record.text == w.record.text and g.record.scope == w.record.scope


QUERIES = ["green tea", "allergies to peanuts", "strasse", "cafe malaga", "東京で寿司", "ラーメン", "서울 한국어",
           "Москва книги", "maisons de la", "10am meeting 42", "roofing kilometres", "the", "zzz unknown", "!!!",
           "Zurich Orsted naive facade", "北京 上海 学校"]


def random_queries(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    return QUERIES + [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 5))) for _ in range(count)]


FILTERS: list[Filter | None] = [None, parse_mem0_filter({"kind": "a"}), parse_mem0_filter({"n": {"gte": 3}}),
                                parse_mem0_filter({"kind": {"icontains": "B"}})]


def compare_keyword_search(backend: Backend, ref: Backend, queries: int, limits: tuple[int, ...],
                           tolerance: float) -> int:
    """`backend`'s keyword hits against the reference's (both holding `dataset`'s records) for `queries`
    random queries (plus `QUERIES`) in every scope, a scope with no records and, in the first scope, every
    filter of `FILTERS`: the same ids in the same order, scores within `tolerance`. Returns how many of the
    comparisons had hits."""
    compared = 0
    for query in random_queries(11, queries):
        for scope in (*SCOPES, Scope(user_id="nobody")):
            for where in FILTERS if scope == SCOPES[0] else [None]:
                for limit in limits:
                    want = ref.keyword_search(query, scope, where, limit)
                    assert_same(backend.keyword_search(query, scope, where, limit), want, tolerance)
                    compared += bool(want)
    return compared


def compare_hybrid_search(backend: Backend, ref: Backend, queries: int) -> None:
    """`backend`'s hybrid hits against the reference's, as `compare_keyword_search` does (top 10, a random
    query vector each), scores within float32's precision (1e-6): stores that keep float32 vectors."""
    rng = random.Random(5)
    for query in random_queries(13, queries):
        vector = random_vector(rng)
        for scope in SCOPES:
            for where in FILTERS if scope == SCOPES[0] else [None]:
                got = backend.hybrid_search(vector, query, scope, where, 10)
                assert_same(got, ref.hybrid_search(vector, query, scope, where, 10), 1e-6)
                assert all(scope.contains(h.record.scope) for h in got)
