"""Search modes (`memdock.search_modes`) on the reference backend, the specification: what each mode
ranks by, what its score means, the default, and the typed refusals."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pytest

from memdock import Memory
from memdock.backend import Backend
from memdock.backends.reference import CAPABILITIES, ReferenceBackend
from memdock.capabilities import Capability
from memdock.embedding import Embedder
from memdock.errors import InvalidInput, Unsupported
from memdock.filters import Filter
from memdock.keyword import BM25Index
from memdock.models import Scope, SearchHit
from memdock.search_modes import fuse_hits, hybrid_hits, keyword_hits
from tests.helpers.support import make_test_embedder

TEXTS = [
    "My sister Ana moved to Porto in 2021",
    "I am allergic to peanuts and shellfish",
    "Dentist appointment with Dr. Okafor on 12 March",
    "We adopted a cat called Luna",
    "Mi hermano trabaja en Sevilla como enfermero",
    "東京駅の近くに住んでいます",
    "I prefer green tea in the morning",
    "The garden needs watering every Tuesday",
]


@pytest.fixture
def mem() -> Iterator[Memory]:
    with Memory.open("memory://", embedder=make_test_embedder()) as memory:
        memory.add([{"role": "user", "content": t} for t in TEXTS], user_id="u1")
        memory.add("Ana from Porto is someone else's sister", user_id="u2")
        yield memory


def test_the_default_is_hybrid_where_keyword_search_is_declared(mem: Memory) -> None:
    assert Capability.KEYWORD_SEARCH in mem.capabilities
    assert mem.default_search_mode == "hybrid"
    query = "when is the Okafor appointment"
    default = [(h.record.id, h.score) for h in mem.search(query, user_id="u1")]
    assert default == [(h.record.id, h.score) for h in mem.search(query, user_id="u1", mode="hybrid")]
    assert default != [(h.record.id, h.score) for h in mem.search(query, user_id="u1", mode="vector")]


def test_keyword_mode_returns_only_texts_sharing_a_term_best_first(mem: Memory) -> None:
    hits = mem.search("Okafor", user_id="u1", mode="keyword", limit=10)
    assert [h.record.text for h in hits] == ["Dentist appointment with Dr. Okafor on 12 March"]
    assert 0.0 < hits[0].score <= 1.0
    assert mem.search("zeppelin", user_id="u1", mode="keyword") == []
    ranked = mem.search("sister Porto", user_id="u1", mode="keyword", limit=10)
    assert ranked[0].record.text.startswith("My sister Ana")
    assert [h.score for h in ranked] == sorted((h.score for h in ranked), reverse=True)


def test_keyword_mode_folds_accents_and_case_and_reads_cjk(mem: Memory) -> None:
    assert [h.record.text for h in mem.search("SEVÍLLA", user_id="u1", mode="keyword")] == [TEXTS[4]]
    assert [h.record.text for h in mem.search("東京", user_id="u1", mode="keyword")] == [TEXTS[5]]


def test_keyword_score_is_bm25_over_the_candidates_divided_by_the_bound(mem: Memory) -> None:
    """The score equals an index holding only the scope's texts (other scopes never weigh in)."""
    index = BM25Index()
    records = {r.text: r.id for r in mem.export(user_id="u1")}
    index.add_many((memory_id, text) for text, memory_id in records.items())
    query = "Ana sister Porto 2021"
    expected = index.normalised_scores(query, method="bound")
    hits = mem.search(query, user_id="u1", mode="keyword", limit=100)
    assert {h.record.id: h.score for h in hits} == {i: pytest.approx(s, abs=1e-12) for i, s in expected.items()}
    assert all(h.record.scope.user_id == "u1" for h in hits)


def test_the_filter_confines_the_keyword_statistics_too(mem: Memory) -> None:
    mem.add("Porto wine tasting with Ana", user_id="u1", metadata={"topic": "trip"})
    [only] = mem.search("Porto Ana", user_id="u1", mode="keyword", filter={"topic": "trip"})
    index = BM25Index()
    index.add(only.record.id, only.record.text)
    assert only.score == pytest.approx(index.normalised_scores("Porto Ana", method="bound")[only.record.id])


def test_hybrid_is_the_mean_of_vector_and_keyword_scores(mem: Memory) -> None:
    query = "peanut allergy and shellfish"
    vector = {h.record.id: h.score for h in mem.search(query, user_id="u1", mode="vector", limit=100)}
    keyword = {h.record.id: h.score for h in mem.search(query, user_id="u1", mode="keyword", limit=100)}
    hybrid = mem.search(query, user_id="u1", mode="hybrid", limit=100)
    assert len(hybrid) == len(TEXTS)  # a text sharing no word is still found by meaning
    for hit in hybrid:
        expected = 0.5 * vector[hit.record.id] + 0.5 * keyword.get(hit.record.id, 0.0)
        assert hit.score == pytest.approx(expected, abs=1e-9)
    assert hybrid[0].record.text == "I am allergic to peanuts and shellfish"
    assert [h.score for h in hybrid] == sorted((h.score for h in hybrid), reverse=True)


@pytest.mark.parametrize("mode", ["hybrid", "vector", "keyword"])
def test_scope_filter_threshold_and_limit_hold_in_every_mode(mem: Memory, mode: str) -> None:
    mem.add("Ana lives in Porto now", user_id="u1", metadata={"topic": "family"})
    everything = mem.search("Ana Porto", user_id="u1", mode=mode, limit=100)  # type: ignore[arg-type]
    assert everything and all(h.record.scope == Scope(user_id="u1") for h in everything)
    assert all(0.0 <= h.score <= 1.0 for h in everything)
    filtered = mem.search("Ana Porto", user_id="u1", mode=mode, filter={"topic": "family"})  # type: ignore[arg-type]
    assert [h.record.text for h in filtered] == ["Ana lives in Porto now"]
    cut = everything[1].score
    above = mem.search("Ana Porto", user_id="u1", mode=mode, threshold=cut, limit=100)  # type: ignore[arg-type]
    assert {h.record.id for h in above} == {h.record.id for h in everything if h.score >= cut}
    assert len(mem.search("Ana Porto", user_id="u1", mode=mode, limit=1)) == 1  # type: ignore[arg-type]
    assert mem.search("Ana Porto", user_id="nobody", mode=mode) == []  # type: ignore[arg-type]


def test_keyword_index_follows_updates_and_deletes(mem: Memory) -> None:
    [cat] = mem.search("Luna", user_id="u1", mode="keyword")
    mem.update(cat.record.id, text="We adopted a dog called Rex")
    assert mem.search("Luna", user_id="u1", mode="keyword") == []
    assert [h.record.id for h in mem.search("Rex", user_id="u1", mode="keyword")] == [cat.record.id]
    mem.delete(cat.record.id)
    assert mem.search("Rex", user_id="u1", mode="keyword") == []
    mem.delete_all(user_id="u1")
    assert mem.search("Porto", user_id="u1", mode="keyword") == []
    assert [h.record.scope.user_id for h in mem.search("Porto", user_id="u2", mode="keyword")] == ["u2"]


class _CountingEmbedder(Embedder):
    """The test embedder, counting how many texts it embeds."""

    def __init__(self) -> None:
        self.inner = make_test_embedder()
        self.name, self.dimension = self.inner.name, self.inner.dimension
        self.texts = 0

    @property
    def identity(self) -> str:
        return self.inner.identity

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.texts += len(texts)
        return self.inner.embed(texts)


def test_keyword_mode_embeds_nothing() -> None:
    embedder = _CountingEmbedder()
    with Memory.open("memory://", embedder=embedder) as memory:
        memory.add("Dentist appointment with Dr. Okafor", user_id="u1")
        before = embedder.texts
        assert memory.search("Okafor", user_id="u1", mode="keyword")
        assert embedder.texts == before
        memory.search("Okafor dentist", user_id="u1", mode="hybrid")
        assert embedder.texts == before + 1


class _VectorOnly(ReferenceBackend):
    capabilities = CAPABILITIES - {Capability.KEYWORD_SEARCH}


def test_without_keyword_search_the_default_is_vector_and_other_modes_are_unsupported() -> None:
    embedder = make_test_embedder()
    memory = Memory(_VectorOnly(ReferenceBackend.Settings(), embedder), embedder, name="vector-only")
    memory.add("Dentist appointment with Dr. Okafor", user_id="u1")
    assert memory.default_search_mode == "vector"
    [hit] = memory.search("Dentist appointment with Dr. Okafor", user_id="u1")
    assert hit.score == pytest.approx(1.0)
    for mode in ("keyword", "hybrid"):
        with pytest.raises(Unsupported, match="mode") as info:
            memory.search("Okafor", user_id="u1", mode=mode)  # type: ignore[arg-type]
        assert mode in str(info.value)


@pytest.mark.parametrize("bad", ["semantic", "HYBRID", "", 1, True, ["vector"]])
def test_an_unknown_mode_is_refused_naming_the_field(mem: Memory, bad: object) -> None:
    with pytest.raises(InvalidInput) as info:
        mem.search("Okafor", user_id="u1", mode=bad)  # type: ignore[arg-type]
    assert info.value.field == "mode"


def test_the_default_hybrid_of_a_backend_equals_the_exact_one_when_the_rankings_are_complete(mem: Memory) -> None:
    """`Backend.hybrid_search` (fusing `search` and `keyword_search`) equals the reference's exact fusion
    when both rankings hold every candidate."""
    backend = mem.backend
    assert isinstance(backend, ReferenceBackend)
    query = "sister in Porto"
    [vector] = make_test_embedder().embed([query])
    scope: Scope = Scope(user_id="u1")
    where: Filter | None = None
    exact = backend.hybrid_search(vector, query, scope, where, 100)
    fused = Backend.hybrid_search(backend, vector, query, scope, where, 100)
    assert [(h.record.id, round(h.score, 9)) for h in fused] == [(h.record.id, round(h.score, 9)) for h in exact]


def test_fuse_hits_counts_a_missing_ranking_as_zero() -> None:
    embedder = make_test_embedder()
    with Memory.open("memory://", embedder=embedder) as memory:
        [a] = memory.add("alpha", user_id="u")
        [b] = memory.add("beta", user_id="u")
    vector_hits = [SearchHit(record=a.record, score=0.8)]
    keyword_hits = [SearchHit(record=b.record, score=0.6), SearchHit(record=a.record, score=0.2)]
    fused = fuse_hits(vector_hits, keyword_hits, 10)
    assert [(h.record.id, h.score) for h in fused] == [(a.record.id, 0.5), (b.record.id, 0.3)]
    assert fuse_hits([], [], 10) == []
    assert len(fuse_hits(vector_hits, keyword_hits, 1)) == 1


def test_hybrid_ranks_every_candidate_exactly_on_a_larger_scope() -> None:
    """200 random texts: the reference's hybrid order is the sorted exact fusion of every candidate."""
    rng = np.random.default_rng(17)
    words = ["tea", "porto", "ana", "cat", "luna", "garden", "march", "dentist", "sevilla", "peanut", "run"]
    texts = sorted({" ".join(rng.choice(words, size=int(rng.integers(2, 7)))) for _ in range(400)})[:200]
    embedder = make_test_embedder()
    with Memory.open("memory://", embedder=embedder) as memory:
        memory.add([{"role": "user", "content": t} for t in texts], user_id="u")
        for query in ("tea porto", "luna cat garden", "dentist march sevilla"):
            vector = {h.record.id: h.score for h in memory.search(query, user_id="u", mode="vector", limit=1000)}
            keyword = {h.record.id: h.score for h in memory.search(query, user_id="u", mode="keyword", limit=1000)}
            expected = sorted(((0.5 * vector[i] + 0.5 * keyword.get(i, 0.0), i) for i in vector),
                              key=lambda item: (-round(item[0], 12), item[1]))[:10]
            hits = memory.search(query, user_id="u", mode="hybrid", limit=10)
            assert [h.record.id for h in hits] == [i for _, i in expected]


def test_exact_hits_over_fetched_candidates_equal_the_reference(mem: Memory) -> None:
    """`keyword_hits` / `hybrid_hits` over a scope's records (as a store without a keyword index fetches
    them) rank and score exactly as the reference backend does."""
    backend = mem.backend
    assert isinstance(backend, ReferenceBackend)
    scope = Scope(user_id="u1")
    candidates = backend.list(scope, None, 1000, None).items
    for query in ("sister Porto", "Okafor appointment in March", "東京", "green tea morning"):
        [vector] = make_test_embedder().embed([query])
        assert [(h.record.id, h.score) for h in keyword_hits(candidates, query, 5)] == [
            (h.record.id, h.score) for h in backend.keyword_search(query, scope, None, 5)]
        assert [(h.record.id, h.score) for h in hybrid_hits(candidates, vector, query, 5)] == [
            (h.record.id, h.score) for h in backend.hybrid_search(vector, query, scope, None, 5)]
    assert hybrid_hits([], [1.0], "x", 5) == [] and keyword_hits([], "x", 5) == []
