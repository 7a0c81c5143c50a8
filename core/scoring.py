"""Similarity scores: every backend reports the cosine similarity of the stored and query vectors,
clamped to [0, 1] (mem0's convention): 1 = same direction, 0 = unrelated or opposite. A threshold of 0.5
therefore means "clearly related". (memdock 0.1 reported (1 + cosine) / 2, which put unrelated
texts near 0.5.)"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from memdock.models import MemoryRecord, SearchHit

TIE_DIGITS = 12
"""Cosines that agree to this many decimals rank as equal (then by id)."""


def cosine_to_score(cosine: float) -> float:
    """The score of a cosine similarity in [-1, 1]: the cosine clamped to [0, 1] (negative -> 0)."""
    return min(1.0, max(0.0, cosine))


def cosine_distance_to_score(distance: float) -> float:
    """Map a cosine distance (1 - cosine, in [0, 2]) to a score in [0, 1]."""
    return cosine_to_score(1.0 - distance)


def rank_by_cosine(vector: Sequence[float], records: Sequence[MemoryRecord], limit: int) -> list[SearchHit]:
    """Exact search: the `limit` records (which must carry vectors) most similar to `vector`, best
    first, ties (cosines equal to `TIE_DIGITS` decimals: the same vector, whatever the summation order of
    the product) broken by id; scores are those rounded cosines, so they never rise down the list. A zero
    vector scores as cosine 0."""
    candidates = [r for r in records if r.vector is not None]
    if not candidates:
        return []
    import numpy as np  # here, not at module top: importing memdock and listing plugins stay cheap

    matrix = np.asarray([r.vector for r in candidates], dtype=np.float64)
    best = best_rows(vector, matrix, [r.id for r in candidates], limit)
    return [SearchHit(record=candidates[row], score=cosine_to_score(cosine)) for row, cosine in best]


def row_norms(matrix: Any) -> Any:
    """The Euclidean norm of every row of `matrix`, as `best_rows` computes them (for a caller that keeps
    them beside a matrix it ranks many times)."""
    import numpy as np

    return np.linalg.norm(matrix, axis=1)


def row_cosines(vector: Sequence[float], matrix: Any, *, norms: Any = None) -> Any:
    """The cosine of `vector` with every row of `matrix` (a 1-D array; a zero row or vector gives 0), as
    `best_rows` ranks them before rounding; `norms` as there."""
    import numpy as np

    query = np.asarray(vector, dtype=np.float64)
    lengths = (row_norms(matrix) if norms is None else norms) * (np.linalg.norm(query) or 1.0)
    return matrix @ query / np.where(lengths == 0, 1.0, lengths)


def best_rows(vector: Sequence[float], matrix: Any, ids: Sequence[str], limit: int, *,
              norms: Any = None) -> list[tuple[int, float]]:
    """The `limit` rows of `matrix` (a 2-D float array; row i is the vector of the record `ids[i]`) most
    similar to `vector`, as (row, cosine rounded to `TIE_DIGITS`), in `rank_by_cosine`'s order. `norms`,
    when given, must be `row_norms(matrix)` (computing them is most of the cost on a small matrix)."""
    import numpy as np

    if limit <= 0 or not ids:
        return []
    cosines = row_cosines(vector, matrix, norms=norms)
    chosen: Any = range(len(ids))
    if len(ids) > limit:  # the best `limit`, plus every row tied with the last of them
        cutoff = cosines[np.argpartition(-cosines, limit - 1)[:limit]].min()
        chosen = np.flatnonzero(cosines >= cutoff - 10.0 ** -TIE_DIGITS).tolist()
    rounded = {i: round(float(cosines[i]), TIE_DIGITS) for i in chosen}
    return [(i, rounded[i]) for i in sorted(chosen, key=lambda i: (-rounded[i], ids[i]))[:limit]]
