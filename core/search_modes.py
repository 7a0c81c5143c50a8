"""Search modes: what a search ranks by, and what its scores mean.

``mode`` is one of:

* ``"vector"``: the cosine similarity of the query's and the memory's embeddings, clamped to [0, 1]
  (`memdock.scoring`). Every backend has it.
* ``"keyword"``: Okapi BM25 over memdock's multilingual terms (`memdock.keyword`), normalised by the
  query's bound, so in [0, 1]: how much of the query's idf-weighted words the memory holds (a memory
  holding every query word once scores about 0.4-0.6). The statistics (number of texts, document
  frequencies, average length) are those of the search's candidates: the live memories of the scope that
  match the filter, so other scopes never influence a score. A memory sharing no term with the query is
  not returned at all. No query embedding is computed.
* ``"hybrid"``: ``0.5 * vector score + 0.5 * keyword score`` (`memdock.fusion.hybrid_fusion`, the weight
  chosen on the project's retrieval-quality set, docs/retrieval.md): a memory that matches in meaning and
  in words ranks first; a memory sharing no word can still be found by meaning.

A backend that declares `memdock.capabilities.Capability.KEYWORD_SEARCH` answers all three; the default
(``mode=None``) is then ``"hybrid"``. Without it, the default is ``"vector"`` and asking for the others is
`memdock.errors.Unsupported`. Scores stay in [0, 1] in every mode, best first, ties broken by id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_args

from memdock.errors import InvalidInput
from memdock.fusion import hybrid_fusion, hybrid_scores
from memdock.keyword import BM25Index
from memdock.models import MemoryRecord, SearchHit
from memdock.scoring import TIE_DIGITS, cosine_to_score, row_cosines

__all__ = [
    "HYBRID_CANDIDATES",
    "SEARCH_MODES",
    "SearchMode",
    "check_mode",
    "fuse_hits",
    "hybrid_hits",
    "hybrid_ranking",
    "keyword_hits",
    "keyword_ranking",
]

SearchMode = Literal["hybrid", "vector", "keyword"]
SEARCH_MODES: tuple[str, ...] = get_args(SearchMode)

HYBRID_CANDIDATES = 100
"""How many hits of each ranking `fuse_hits` (a backend's default hybrid search) fuses, at least."""


def check_mode(mode: Any) -> SearchMode | None:
    """None (the backend's default) or one of `SEARCH_MODES`; anything else is `InvalidInput` naming ``mode``."""
    if mode is None:
        return None
    if not isinstance(mode, str) or mode not in SEARCH_MODES:
        raise InvalidInput(f"must be one of {', '.join(SEARCH_MODES)}", field="mode")
    return mode  # type: ignore[return-value]  # checked against the Literal's values


def _ordered(scores: Mapping[str, float], limit: int) -> list[tuple[str, float]]:
    """(id, score rounded to `TIE_DIGITS`) best first, ties by id, at most `limit`."""
    rounded = {doc_id: round(score, TIE_DIGITS) for doc_id, score in scores.items()}
    return sorted(rounded.items(), key=lambda item: (-item[1], item[0]))[:limit]


def keyword_ranking(index: BM25Index, text: str, candidate_ids: Sequence[str], limit: int) -> list[tuple[str, float]]:
    """The keyword mode's ranking of `candidate_ids` (all indexed in `index`) for the query `text`:
    (id, score in [0, 1]) best first, ties by id; candidates sharing no term are left out."""
    return _ordered(index.normalised_scores(text, candidate_ids, method="bound"), limit)


def hybrid_ranking(
    index: BM25Index, text: str, vector: Sequence[float], candidate_ids: Sequence[str], matrix: Any, limit: int,
    *, norms: Any = None,
) -> list[tuple[str, float]]:
    """The exact hybrid ranking of `candidate_ids` (all indexed in `index`; row i of the 2-D float array
    `matrix` is the vector of ``candidate_ids[i]``; `norms`, when given, its `row_norms`): every
    candidate's vector score and keyword score fused by `hybrid_fusion` (its scores, `hybrid_scores`, ordered
    here once); (id, score) best first, ties by id."""
    if not candidate_ids:
        return []
    cosines = {doc_id: cosine_to_score(round(cosine, TIE_DIGITS))
               for doc_id, cosine in zip(candidate_ids, row_cosines(vector, matrix, norms=norms).tolist(), strict=True)}
    keyword = index.normalised_scores(text, candidate_ids, method="bound")
    return _ordered(hybrid_scores(cosines, keyword), limit)


def fuse_hits(
    vector_hits: Sequence[SearchHit], keyword_hits: Sequence[SearchHit], limit: int
) -> list[SearchHit]:
    """The hybrid ranking of two rankings of the same candidates (a vector search's hits and a keyword
    search's, each best first): `hybrid_fusion` of their scores, a memory missing from one ranking
    scoring 0 there; at most `limit` hits, best first, ties by id.

    Exact when each ranking holds every candidate with a score above 0 (then it equals `hybrid_ranking`);
    with truncated rankings a memory just below one ranking's cut-off loses that ranking's share.
    """
    records: dict[str, MemoryRecord] = {}
    for hit in (*vector_hits, *keyword_hits):
        records.setdefault(hit.record.id, hit.record)
    fused = hybrid_fusion({h.record.id: h.score for h in vector_hits}, {h.record.id: h.score for h in keyword_hits})
    ranked = _ordered({f.id: f.score for f in fused}, limit)
    return [SearchHit(record=records[doc_id], score=min(1.0, max(0.0, score))) for doc_id, score in ranked]


def keyword_hits(candidates: Sequence[MemoryRecord], text: str, limit: int) -> list[SearchHit]:
    """The keyword mode's hits among `candidates` (every live record of the scope matching the filter):
    exact, for a backend that can fetch its candidates cheaply and keeps no keyword index of its own."""
    by_id = {record.id: record for record in candidates}
    index = BM25Index()
    index.add_many((record.id, record.text) for record in by_id.values())
    return [SearchHit(record=by_id[i], score=score) for i, score in keyword_ranking(index, text, list(by_id), limit)]


def hybrid_hits(candidates: Sequence[MemoryRecord], vector: Sequence[float], text: str, limit: int) -> list[SearchHit]:
    """The hybrid mode's hits among `candidates` (as for `keyword_hits`; those without a vector are left
    out, as vector search leaves them out): every candidate scored both ways, exactly."""
    import numpy as np  # here, not at module top: importing memdock stays cheap

    by_id = {record.id: record for record in candidates if record.vector is not None}
    if not by_id:
        return []
    ids = list(by_id)
    index = BM25Index()
    index.add_many((record.id, record.text) for record in by_id.values())
    matrix = np.asarray([by_id[i].vector for i in ids], dtype=np.float64)
    return [SearchHit(record=by_id[i], score=score)
            for i, score in hybrid_ranking(index, text, vector, ids, matrix, limit)]
