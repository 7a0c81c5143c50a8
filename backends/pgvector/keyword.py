"""Keyword and hybrid search of the pgvector backend: the terms stored with each row, and the ONE statement
that ranks a keyword or a hybrid search (`memdock.search_modes` defines both; `memdock.keyword` the terms
and BM25).

Every row of a namespace carries three columns (schema version 2, `memdock.backends.pgvector.schema`):

- ``terms tsvector`` (GIN-indexed): the distinct terms, without positions; the index finds the rows that
  share a term with a query.
- ``term_freqs jsonb``: ``{term: occurrences}``, BM25's term frequencies.
- ``terms_length integer``: the number of terms with repeats, BM25's document length.

Which terms, by the namespace's ``text_search`` setting:

- ``memdock`` (the default): memdock's own `memdock.keyword.index_terms`, computed in Python when a row
  is written (multilingual, accents folded, CJK bigrams, prefix terms), so rankings and scores equal the
  reference backend's. A term longer than `MAX_LEXEME_BYTES` is indexed in the tsvector under a digest
  (PostgreSQL refuses longer lexemes), and a text whose terms would overflow a tsvector (1 MB of
  lexemes) is indexed under `EVERY_LEXEME` alone, which every query's tsquery also holds: such a row is
  always a match candidate and `term_freqs` decides. Both keep the ranking exact.
- any PostgreSQL text search configuration (``english``, ``german``, ``simple``, ...): the lexemes of
  ``to_tsvector(config, text)`` (that language's stemmer and stop words), computed by the server;
  frequencies are the lexemes' position counts (PostgreSQL keeps at most 256 positions per lexeme, so a
  term repeated more often counts 256 times).

The statement (`keyword_statement`, `hybrid_statement`) computes BM25 in SQL with the statistics of
exactly the search's candidates (the rows of the scope, live, matching the filter): ONE scan of them reads
each one's length and, where its tsvector matches the query, its term frequencies; the number of
candidates, their average length and each query term's document frequency come from that scan. Sums run in
the query terms' order and every operation is the one `memdock.keyword.BM25Index` does, so the database
computes the same floating-point numbers as the reference. Hybrid search computes each candidate's cosine
distance in the same scan and fuses EVERY candidate's two scores: the exact ranking of the reference (not
an approximation from the union of two top lists). It does not walk the HNSW index: the statistics need
every candidate row anyway, and the distance of a row already read is cheaper than a second pass, but a
hybrid search is therefore linear in the size of its scope (vector mode stays sub-linear on large scopes).
The GIN index is not needed for these scoped searches; it serves full-text queries of one's own.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from memdock.backends.pgvector.sql import Bound, params_of
from memdock.fusion import DEFAULT_VECTOR_WEIGHT
from memdock.keyword import DEFAULT_B, DEFAULT_K1, index_terms
from memdock.models import MemoryRecord, SearchHit
from memdock.scoring import TIE_DIGITS, cosine_to_score

MEMDOCK = "memdock"
"""The ``text_search`` value that indexes memdock's own terms."""
MAX_LEXEME_BYTES = 1024
"""Terms longer than this (UTF-8 bytes) are indexed in the tsvector under a digest (PostgreSQL's limit is 2046)."""
MAX_TSVECTOR_BYTES = 1_000_000
"""More lexeme bytes than this (PostgreSQL's limit is 1,048,575) and a row is indexed under `EVERY_LEXEME`."""
MAX_QUERY_LEXEMES = 10_000
"""A query with more distinct terms than this matches candidates through ``term_freqs`` alone (no tsquery)."""
EVERY_LEXEME = "#every"
"""The lexeme of a row that every query matches (no memdock term holds ``#``)."""

TERM_COLUMNS = ("terms", "term_freqs", "terms_length")


def lexeme(term: str) -> str:
    """The tsvector lexeme of a memdock term: the term, or a digest of it when it is too long for one."""
    if len(term.encode("utf-8")) <= MAX_LEXEME_BYTES:
        return term
    return "#" + hashlib.sha256(term.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class DocumentTerms:
    """What the ``memdock`` text search stores for one text: its lexemes joined by spaces (no lexeme holds
    one), its term frequencies and its length."""

    lexemes: str
    freqs: dict[str, int]
    length: int

    def freqs_json(self) -> Jsonb:
        """`freqs` as a jsonb parameter."""
        return Jsonb(self.freqs, dumps=lambda v: json.dumps(v, ensure_ascii=False))


def document_terms(text: str) -> DocumentTerms:
    """The ``memdock`` terms of `text` (see the module docstring)."""
    terms = index_terms(text)
    freqs = dict(Counter(terms))
    lexemes = sorted({lexeme(term) for term in freqs})
    if sum(len(item.encode("utf-8")) for item in lexemes) > MAX_TSVECTOR_BYTES:
        lexemes = [EVERY_LEXEME]
    return DocumentTerms(" ".join(lexemes), freqs, len(terms))


def query_terms(text: str) -> list[str]:
    """The distinct ``memdock`` terms of a query, in first-occurrence order (BM25's summation order)."""
    return list(dict.fromkeys(index_terms(text)))


def _tsquery_text(terms: Sequence[str]) -> str:
    """``'a' | 'b' | ... | '#every'``: any of the terms' lexemes, or a row indexed under `EVERY_LEXEME`."""
    quoted = ("'" + item.replace("\\", "\\\\").replace("'", "''") + "'"
              for item in dict.fromkeys([*(lexeme(t) for t in terms), EVERY_LEXEME]))
    return " | ".join(quoted)


def stored_terms_sql(text_search: str, text: sql.Composable, given: sql.Composable) -> list[sql.Composable]:
    """The values of `TERM_COLUMNS` for a row being written: with ``memdock``, from `given` (an expression
    prefix whose ``lexemes``, ``term_freqs`` and ``terms_length`` hold `document_terms`); with a PostgreSQL
    configuration, computed by the server from the expression `text`."""
    if text_search == MEMDOCK:
        return [sql.SQL("array_to_tsvector(string_to_array({}lexemes, ' '))").format(given),
                sql.SQL("{}term_freqs").format(given), sql.SQL("{}terms_length").format(given)]
    vector = sql.SQL("to_tsvector({}::regconfig, {})").format(sql.Literal(text_search), text)
    return [vector,
            sql.SQL("(SELECT COALESCE(jsonb_object_agg(lexeme, COALESCE(cardinality(positions), 1)), '{{}}')"
                    " FROM unnest({}))").format(vector),
            sql.SQL("(SELECT COALESCE(sum(COALESCE(cardinality(positions), 1)), 0)::integer FROM unnest({}))").format(
                vector)]


def _float(value: float) -> sql.Composable:
    """A float8 constant that parses to exactly `value`."""
    return sql.SQL(f"{value!r}::float8")


@dataclass(frozen=True)
class RankingParts:
    """The pieces of a ranking statement that depend on the query text: the ``q`` rows (term, lexeme, ord)
    and the predicate a candidate must meet to be a keyword match. `empty` when the query has no term."""

    terms: sql.Composable
    match: sql.Composable
    empty: bool
    kind: str = "tsquery"
    """What the statement's text depends on besides the scope and filter (statements are cached by it)."""

    @property
    def params(self) -> list[Any]:
        """The parameters of `terms` then `match`, in the order the statements hold them."""
        return [*params_of(self.terms), *params_of(self.match)]


def ranking_parts(text_search: str, text: str) -> RankingParts:
    """The query's terms and match predicate for `text_search` (see `RankingParts`)."""
    if text_search == MEMDOCK:
        terms = query_terms(text)
        rows = Bound(sql.SQL("SELECT term, ord FROM unnest(%s::text[]) WITH ORDINALITY AS q (term, ord)"), [terms])
        if not terms:
            return RankingParts(rows, sql.SQL("FALSE"), True, "none")
        if len(terms) > MAX_QUERY_LEXEMES:
            return RankingParts(rows, sql.SQL("TRUE"), False, "every")
        return RankingParts(rows, Bound(sql.SQL("terms @@ %s::tsquery"), [_tsquery_text(terms)]), False)
    rows = Bound(sql.SQL("SELECT lexeme AS term, row_number() OVER (ORDER BY lexeme) AS ord"
                         " FROM unnest(to_tsvector(%s::regconfig, %s))"), [text_search, text])
    # the OR of the query's lexemes, quoted for tsquery input (backslashes and quotes escaped)
    match = sql.SQL("terms @@ (SELECT string_agg('''' || replace(replace(term, '\\', '\\\\'), '''', '''''') || ''''"
                    ", ' | ') FROM q)::tsquery")
    return RankingParts(rows, match, False, "server")


def _bm25_ctes(table: sql.Composable, where: sql.Composable, parts: RankingParts,
               distance: sql.Composable | None) -> sql.Composable:
    """``q``; ``cand``: ONE scan of the candidates (id, length, the term frequencies of a keyword match, and
    with `distance` the cosine distance); ``stats``, ``tf``, ``idf``, ``bound`` and ``bm25`` (id, raw BM25)
    over it, each operation as `memdock.keyword.BM25Index` does it (same operands, same order, sums in
    query-term order). The match is tested on the rows the statistics read anyway, so the GIN index is not
    needed for it (it serves ad-hoc full-text queries)."""
    k1, b, k1p1 = _float(DEFAULT_K1), _float(DEFAULT_B), _float(DEFAULT_K1 + 1.0)
    return sql.SQL(
        "q AS MATERIALIZED ({terms}),"
        " cand AS MATERIALIZED (SELECT id, terms_length AS len, CASE WHEN {match} THEN term_freqs END AS freqs"
        "{distance} FROM {t} WHERE {w}),"
        " stats AS (SELECT count(*)::float8 AS n, COALESCE(sum(len), 0)::float8 AS total FROM cand),"
        # each match looks its query terms up once (a lateral subquery: not a join filter and a projection)
        " tf AS MATERIALIZED (SELECT cand.id, x.term, x.ord, x.f, cand.len::float8 AS len FROM cand CROSS JOIN"
        " LATERAL (SELECT q.term, q.ord, (cand.freqs ->> q.term)::float8 AS f FROM q OFFSET 0) AS x"
        " WHERE cand.freqs IS NOT NULL AND x.f IS NOT NULL),"
        " idf AS (SELECT q.term, q.ord,"
        " ln(1.0::float8 + (stats.n - COALESCE(d.df, 0) + 0.5::float8) / (COALESCE(d.df, 0) + 0.5::float8)) AS idf"
        " FROM q CROSS JOIN stats LEFT JOIN (SELECT term, count(*)::float8 AS df FROM tf GROUP BY term) d"
        " ON d.term = q.term),"
        " bound AS (SELECT sum(idf ORDER BY ord) * {k1p1} AS bound FROM idf),"
        " bm25 AS (SELECT tf.id, sum(idf.idf * tf.f * {k1p1} / (tf.f + {k1} * (1.0::float8 - {b} + {b} * tf.len"
        " / (stats.total / NULLIF(stats.n, 0)))) ORDER BY tf.ord) AS raw"
        " FROM tf JOIN idf ON idf.term = tf.term CROSS JOIN stats GROUP BY tf.id)"
    ).format(terms=parts.terms, t=table, w=where, match=parts.match, k1=k1, b=b, k1p1=k1p1,
             distance=sql.SQL("") if distance is None else sql.SQL(", {} AS distance").format(distance))


def _columns(columns: Sequence[str], alias: str) -> sql.Composable:
    return sql.SQL(", ").join(sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(c)) for c in columns)


def keyword_statement(table: sql.Composable, clauses: Sequence[sql.Composable], columns: Sequence[str],
                      parts: RankingParts, limit: int) -> sql.Composable:
    """One statement returning the best `limit` keyword matches: `columns`, raw BM25, the query's bound.
    Like every search statement, a plain ``SELECT`` (its CTEs inside); callers sort the rows again."""
    where = sql.SQL(" AND ").join(clauses)
    return sql.SQL(
        "SELECT * FROM (WITH {ctes}, top AS (SELECT bm25.id, bm25.raw, bound.bound FROM bm25 CROSS JOIN bound"
        " WHERE bound.bound > 0 ORDER BY bm25.raw / bound.bound DESC, bm25.id COLLATE \"C\" {limit})"
        " SELECT {cols}, top.raw, top.bound FROM top JOIN {t} m ON m.id = top.id) AS ranked"
    ).format(ctes=_bm25_ctes(table, where, parts, None), cols=_columns(columns, "m"), t=table,
             limit=Bound(sql.SQL("LIMIT %s"), [limit]))


def hybrid_statement(table: sql.Composable, clauses: Sequence[sql.Composable], columns: Sequence[str],
                     parts: RankingParts, vector: Any, limit: int) -> sql.Composable:
    """One statement returning the best `limit` candidates by the hybrid score, every candidate scored both
    ways: `columns`, the cosine distance, raw BM25 (NULL without a match), the query's bound."""
    where = sql.SQL(" AND ").join(clauses)
    weight = _float(DEFAULT_VECTOR_WEIGHT)
    rest = _float(1.0 - DEFAULT_VECTOR_WEIGHT)
    return sql.SQL(
        "SELECT * FROM (WITH {ctes}, top AS (SELECT cand.id, cand.distance, bm25.raw, bound.bound"
        " FROM cand LEFT JOIN bm25 ON bm25.id = cand.id CROSS JOIN bound"
        # LEAST and GREATEST skip NULLs; a zero vector's NaN distance scores 0, as `vector_score` has it
        " ORDER BY {weight} * (CASE WHEN cand.distance = 'NaN' THEN 0 ELSE GREATEST(0, LEAST(1, 1 - cand.distance))"
        " END) + {rest} * LEAST(1, COALESCE(bm25.raw / NULLIF(bound.bound, 0), 0)) DESC, cand.id COLLATE \"C\""
        " {limit}) SELECT {cols}, top.distance, top.raw, top.bound FROM top JOIN {t} m ON m.id = top.id) AS ranked"
    ).format(ctes=_bm25_ctes(table, where, parts, sql.SQL("embedding <=> {}").format(Bound(sql.SQL("%b"), [vector]))),
             t=table, cols=_columns(columns, "m"), weight=weight, rest=rest,
             limit=Bound(sql.SQL("LIMIT %s"), [limit]))


def keyword_score(raw: float | None, bound: float | None) -> float | None:
    """The keyword mode's score of a raw BM25 score (`memdock.keyword.BM25Index.normalised_scores`,
    ``"bound"``); None for a row without a match."""
    if raw is None or bound is None or bound <= 0:
        return None
    return min(1.0, float(raw) / float(bound))


def vector_score(distance: Any) -> float:
    """The vector score of a cosine distance as the reference's hybrid ranking has it (the cosine rounded to
    `TIE_DIGITS`, clamped to [0, 1]); a zero vector (NaN distance) scores as cosine 0."""
    value = float(distance)
    return 0.0 if value != value else cosine_to_score(round(1.0 - value, TIE_DIGITS))


def keyword_hits(scored: Sequence[tuple[MemoryRecord, float]], limit: int) -> list[SearchHit]:
    """`memdock.search_modes.keyword_ranking`'s order and rounding of (record, keyword score) pairs."""
    rounded = [(record, round(score, TIE_DIGITS)) for record, score in scored]
    ranked = sorted(rounded, key=lambda item: (-item[1], item[0].id))[:limit]
    return [SearchHit(record=record, score=score) for record, score in ranked]


def hybrid_hits(scored: Sequence[tuple[MemoryRecord, float, float | None]], limit: int) -> list[SearchHit]:
    """The hybrid ranking of (record, vector score, keyword score or None) triples, best first, ties by id:
    `memdock.fusion.hybrid_fusion`'s score (its weighted mean, operation for operation: ``w * v``, plus
    ``(1 - w) * k`` when there is a keyword score, divided by the weights' sum, at most 1) rounded to
    `TIE_DIGITS` as `memdock.search_modes.fuse_hits` does (the parity tests compare with the reference)."""
    weight, rest = DEFAULT_VECTOR_WEIGHT, 1.0 - DEFAULT_VECTOR_WEIGHT
    total = weight + rest
    fused = []
    for record, v, k in scored:
        score = weight * v if k is None else weight * v + rest * k
        fused.append((record, round(min(1.0, score / total), TIE_DIGITS)))
    fused.sort(key=lambda item: (-item[1], item[0].id))
    return [SearchHit(record=record, score=min(1.0, max(0.0, score))) for record, score in fused[:limit]]
