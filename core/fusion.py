"""Fusion of rankings (a vector ranking and a keyword ranking) into one ranking with scores in [0, 1].

Two methods, both pure functions of their inputs:

* `reciprocal_rank_fusion` (RRF) uses ranks only. A document at 1-based rank r in ranking i earns
  ``w_i / (k + r)``; a ranking it is absent from contributes 0. The sum is divided by the most a document
  can earn, ``sum w_i / (k + 1)`` (first in every ranking), so the fused score is in [0, 1] and means
  "how close to first place in every ranking": 1 = first everywhere. ``k`` (default 60, the value of
  Cormack et al. 2009) flattens the curve: a small k rewards top ranks strongly, a large k makes the
  fusion count mostly how many rankings hold the document.
* `weighted_score_fusion` uses scores. Each ranking's scores must already lie in [0, 1] (cosine scores
  do; keyword scores after `min_max` or `memdock.keyword.BM25Index.normalised_scores`); the fused score
  is ``sum w_i * s_i / sum w_i`` with a missing document scoring 0 in that ranking, so it is in [0, 1] and
  is a weighted mean of the per-ranking scores.

memdock's default hybrid (`hybrid_fusion`) is the weighted fusion of the cosine scores as they are and the
keyword scores normalised by ``"bound"`` (`memdock.keyword`), with equal weights (vector weight 0.5): of the
fusions whose score has an absolute meaning, the one with the best recall@10 (then MRR) on the half of the
project's retrieval-quality set it was chosen on, and the best of all variants there too
(benchmarks/quality/README.md; weights 0.3 to 0.8 were within two questions of each other). Its score,
``0.5 * cosine + 0.5 * bm25 / bound``, means the same for every query, so a threshold does too: it is the
mean of how similar the texts are and how much of the query's idf-weighted words the memory holds.

Ties in the fused score are broken by the best (lowest) rank the document has in any ranking, then by
the order of the rankings given (earlier ranking first), then by id, so the result is deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from memdock.errors import InvalidInput

__all__ = [
    "DEFAULT_RRF_K",
    "DEFAULT_VECTOR_WEIGHT",
    "Fused",
    "hybrid_fusion",
    "hybrid_scores",
    "min_max",
    "reciprocal_rank_fusion",
    "weighted_score_fusion",
    "weighted_scores",
]

DEFAULT_RRF_K = 60.0
DEFAULT_VECTOR_WEIGHT = 0.5  # chosen on the quality set, see the module docstring


class Fused(NamedTuple):
    """One fused result: the document id and its fused score in [0, 1]."""

    id: str
    score: float


def _check_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    if weights is None:
        return [1.0] * count
    if len(weights) != count:
        raise InvalidInput(f"needs one weight per ranking ({count}), got {len(weights)}", field="weights")
    checked = [float(w) for w in weights]
    if any(not math.isfinite(w) or w < 0 for w in checked) or sum(checked) <= 0:
        raise InvalidInput(f"must be finite, >= 0 and not all 0, got {list(weights)!r}", field="weights")
    return checked


def _check_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise InvalidInput(f"must be an integer >= 0 or None, got {limit!r}", field="limit")


def _order(totals: dict[str, float], rankings: Sequence[Sequence[str]], limit: int | None) -> list[Fused]:
    """Sort by fused score, then best rank, then ranking order, then id."""
    best: dict[str, tuple[int, int]] = {}
    for which, ranking in enumerate(rankings):
        for rank, doc_id in enumerate(ranking):
            if doc_id not in best or (rank, which) < best[doc_id]:
                best[doc_id] = (rank, which)
    ordered = sorted(totals, key=lambda doc_id: (-totals[doc_id], *best[doc_id], doc_id))
    return [Fused(doc_id, totals[doc_id]) for doc_id in (ordered if limit is None else ordered[:limit])]


def _distinct(ranking: Sequence[str], which: int) -> Sequence[str]:
    if len(set(ranking)) != len(ranking):
        raise InvalidInput("a ranking lists a document twice", field=f"rankings[{which}]")
    return ranking


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[str]],
    *,
    k: float = DEFAULT_RRF_K,
    weights: Sequence[float] | None = None,
    limit: int | None = None,
) -> list[Fused]:
    """Fuse rankings (ids, best first, each id at most once per ranking) by reciprocal rank.

    Returns every document of any ranking (at most `limit`), best first, scores in [0, 1] as the module
    docstring defines. `k` must be > 0; `weights` (default all 1) one finite weight >= 0 per ranking.
    """
    if isinstance(k, bool) or not isinstance(k, int | float) or not math.isfinite(k) or k <= 0:
        raise InvalidInput(f"must be a finite number > 0, got {k!r}", field="k")
    checked = _check_weights(weights, len(rankings))
    _check_limit(limit)
    if not rankings:
        return []
    most = sum(w / (k + 1.0) for w in checked)
    totals: dict[str, float] = {}
    for which, (ranking, weight) in enumerate(zip(rankings, checked, strict=True)):
        for rank, doc_id in enumerate(_distinct(ranking, which), start=1):
            totals[doc_id] = totals.get(doc_id, 0.0) + weight / (k + rank)
    return _order({d: min(1.0, t / most) for d, t in totals.items()}, rankings, limit)


def weighted_score_fusion(
    scored: Sequence[Mapping[str, float]],
    weights: Sequence[float],
    *,
    limit: int | None = None,
) -> list[Fused]:
    """Fuse scored rankings ({id: score in [0, 1]}) by the weighted mean of their scores.

    A document missing from a ranking scores 0 there. A score outside [0, 1] is `InvalidInput` (normalise
    first, e.g. with `min_max`). Ranks for tie-breaking come from each mapping's scores (best first).
    """
    _check_limit(limit)
    totals = weighted_scores(scored, weights)
    return _order(totals, [_ranked(scores) for scores in scored], limit)


def _ranked(scores: Mapping[str, float]) -> list[str]:
    """The ids of `scores`, best score first, ties by id."""
    return sorted(scores, key=lambda doc_id: (-scores[doc_id], doc_id))


def weighted_scores(scored: Sequence[Mapping[str, float]], weights: Sequence[float]) -> dict[str, float]:
    """`weighted_score_fusion`'s fused score of every document, unordered (for a caller that orders them
    itself): the same checks, the same arithmetic."""
    checked = _check_weights(weights, len(scored))
    total_weight = sum(checked)
    totals: dict[str, float] = {}
    for which, (scores, weight) in enumerate(zip(scored, checked, strict=True)):
        for doc_id, score in scores.items():
            if not (isinstance(score, int | float) and math.isfinite(score) and 0.0 <= score <= 1.0):
                raise InvalidInput(f"score of {doc_id!r} must be in [0, 1], got {score!r}", field=f"scored[{which}]")
            totals[doc_id] = totals.get(doc_id, 0.0) + weight * score
    return {d: min(1.0, t / total_weight) for d, t in totals.items()}


def min_max(scores: Mapping[str, float]) -> dict[str, float]:
    """Scores mapped linearly onto [0, 1]: the best becomes 1, the worst 0 (all 1 when they are equal).

    Relative to this list only: the same document scores differently in another list.
    """
    if not scores:
        return {}
    values = list(scores.values())
    if any(not math.isfinite(v) for v in values):
        raise InvalidInput("scores must be finite numbers", field="scores")
    low, high = min(values), max(values)
    if high == low:
        return dict.fromkeys(scores, 1.0)
    return {doc_id: (value - low) / (high - low) for doc_id, value in scores.items()}


def hybrid_fusion(
    vector: Mapping[str, float],
    keyword: Mapping[str, float],
    *,
    vector_weight: float = DEFAULT_VECTOR_WEIGHT,
    limit: int | None = None,
) -> list[Fused]:
    """memdock's default hybrid ranking: ``vector_weight * cosine + (1 - vector_weight) * keyword``.

    `vector` holds cosine scores in [0, 1] (memdock's vector scores), `keyword` keyword scores normalised
    into [0, 1] with the ``"bound"`` method of `memdock.keyword.BM25Index.normalised_scores`.
    `vector_weight` must be in [0, 1].
    """
    return weighted_score_fusion([vector, keyword], _hybrid_weights(vector_weight), limit=limit)


def hybrid_scores(
    vector: Mapping[str, float], keyword: Mapping[str, float], *, vector_weight: float = DEFAULT_VECTOR_WEIGHT
) -> dict[str, float]:
    """`hybrid_fusion`'s fused score of every document, unordered (`weighted_scores`)."""
    return weighted_scores([vector, keyword], _hybrid_weights(vector_weight))


def _hybrid_weights(vector_weight: float) -> list[float]:
    if isinstance(vector_weight, bool) or not isinstance(vector_weight, int | float) or not 0 <= vector_weight <= 1:
        raise InvalidInput(f"must be a number in [0, 1], got {vector_weight!r}", field="vector_weight")
    return [vector_weight, 1.0 - vector_weight]
