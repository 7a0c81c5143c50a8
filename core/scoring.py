"""Similarity scores: every backend reports cosine similarity mapped onto [0, 1], higher = more similar."""

from __future__ import annotations


def cosine_to_score(cosine: float) -> float:
    """Map a cosine similarity in [-1, 1] to a score in [0, 1] (1 = same direction)."""
    return min(1.0, max(0.0, (1.0 + cosine) / 2.0))


def cosine_distance_to_score(distance: float) -> float:
    """Map a cosine distance (1 - cosine, in [0, 2]) to a score in [0, 1]."""
    return cosine_to_score(1.0 - distance)
