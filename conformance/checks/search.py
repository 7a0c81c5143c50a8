"""search (the vector mode): ordering by similarity, the score contract, threshold direction, limits, empty stores."""

from __future__ import annotations

import math

from memdock.conformance.context import CheckContext
from memdock.conformance.registry import NotApplicable, check
from memdock.embedding import Embedder
from memdock.urls import make_embedder

TEXTS = ["green tea in the morning", "a red hatchback car", "chess on Sunday afternoons", "black coffee"]


def _load(ctx: CheckContext) -> None:
    for text in TEXTS:
        ctx.memory.add(text, user_id=ctx.user)


@check("search")
def check_exact_text_ranks_first(ctx: CheckContext) -> None:
    """Searching for a stored text returns that memory first.

    Troubleshooting: rank by cosine similarity, most similar first; check your distance metric.
    """
    _load(ctx)
    for text in TEXTS:
        assert ctx.memory.search(text, user_id=ctx.user, limit=1)[0].record.text == text, text


@check("search")
def check_scores_are_similarities_in_unit_range(ctx: CheckContext) -> None:
    """Scores lie in [0, 1], descend along the list, and the exact match comes first, scoring above 0.9.

    Troubleshooting: convert distances with `memdock.scoring` (higher must mean more similar).
    """
    _load(ctx)
    hits = ctx.memory.search(TEXTS[0], user_id=ctx.user, limit=10, mode="vector")
    scores = [h.score for h in hits]
    assert all(0.0 <= s <= 1.0 for s in scores), scores
    assert scores == sorted(scores, reverse=True), scores
    assert hits[0].record.text == TEXTS[0], [h.record.text for h in hits]
    assert scores[0] > 0.9 and scores[0] > scores[-1], scores


def _cosine(a: list[float], b: list[float]) -> float:
    norms = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return 0.0 if norms == 0 else sum(x * y for x, y in zip(a, b, strict=True)) / norms


def _query_embedder(ctx: CheckContext) -> Embedder:
    if ctx.memory.embedder is not None:
        return ctx.memory.embedder
    name = ctx.memory.backend.server_embedder()
    if name is None:
        raise NotApplicable("the backend embeds server-side and does not say with which memdock embedder, "
                            "so the stored vectors cannot be recomputed")
    return make_embedder(name)


@check("search")
def check_score_is_the_clamped_cosine(ctx: CheckContext) -> None:
    """Every hit's score is the cosine similarity of its vector and the query's, clamped to [0, 1], within 1e-4.

    Troubleshooting: report `memdock.scoring.cosine_to_score(cosine)` (or `cosine_distance_to_score`
    for a distance); not (1 + cosine) / 2, not a rank, not a blend with keyword scores.
    """
    embedder = _query_embedder(ctx)
    _load(ctx)
    query = "green tea and black coffee in the morning"
    hits = ctx.memory.search(query, user_id=ctx.user, limit=10, threshold=0.0, mode="vector")
    assert sorted(h.record.text for h in hits) == sorted(TEXTS), hits
    vectors = embedder.embed([query, *(h.record.text for h in hits)])
    expected = [min(1.0, max(0.0, _cosine(vectors[0], v))) for v in vectors[1:]]
    assert any(0.05 < e < 0.95 for e in expected), f"no hit with a telling cosine: {expected}"
    got = [h.score for h in hits]
    assert all(abs(g - e) <= 1e-4 for g, e in zip(got, expected, strict=True)), \
        f"scores {got} are not the clamped cosines {expected}"


@check("search")
def check_threshold_keeps_the_better_hits(ctx: CheckContext) -> None:
    """A higher threshold returns a prefix of the lower threshold's hits, all at or above it.

    Troubleshooting: threshold is a minimum similarity; if it drops the best hits, your scores are inverted.
    """
    _load(ctx)
    loose = ctx.memory.search(TEXTS[0], user_id=ctx.user, threshold=0.0, mode="vector")
    cut = (loose[0].score + loose[-1].score) / 2
    strict = ctx.memory.search(TEXTS[0], user_id=ctx.user, threshold=cut, mode="vector")
    assert strict and all(h.score >= cut for h in strict), strict
    assert [h.record.id for h in strict] == [h.record.id for h in loose[: len(strict)]]


@check("search")
def check_limit_larger_than_store_returns_everything(ctx: CheckContext) -> None:
    """limit above the number of memories returns them all, once each.

    Troubleshooting: clamp the requested result count to what exists (Chroma-like stores error otherwise).
    """
    _load(ctx)
    hits = ctx.memory.search("anything", user_id=ctx.user, limit=1000, mode="vector")
    assert sorted(h.record.text for h in hits) == sorted(TEXTS), hits


@check("search")
def check_limit_is_respected(ctx: CheckContext) -> None:
    """limit=2 returns at most 2 hits.

    Troubleshooting: pass the limit down to the index query.
    """
    _load(ctx)
    assert len(ctx.memory.search("tea", user_id=ctx.user, limit=2)) == 2


@check("search")
def check_empty_store_returns_no_hits(ctx: CheckContext) -> None:
    """Searching an empty namespace returns [] rather than raising.

    Troubleshooting: handle an empty collection before querying the index.
    """
    assert ctx.memory.search("anything", user_id=ctx.user) == []


@check("search")
def check_filter_and_search_together(ctx: CheckContext) -> None:
    """search with a filter ranks only the matching memories.

    Troubleshooting: apply the filter before taking the top k, not after (post-filtering returns too few).
    """
    for n in range(12):
        ctx.memory.add(f"tea note {n}", user_id=ctx.user, metadata={"keep": n % 4 == 0})
    hits = ctx.memory.search("tea note 1", user_id=ctx.user, filter={"keep": True}, limit=10, mode="vector")
    assert sorted(h.record.text for h in hits) == ["tea note 0", "tea note 4", "tea note 8"], hits
