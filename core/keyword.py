"""Keyword ranking: a multilingual tokenizer and an incremental Okapi BM25 index over records' texts.

`tokenize` turns a short text in any script into index terms, with no language-specific rule:

1. NFKC normalisation (full-width forms, ligatures and compatibility digits become plain ones), then
   ``casefold`` (so German "Straße" and "STRASSE" meet as "strasse").
2. Accents are folded: canonical decomposition, then the combining diacritical marks (U+0300..U+036F,
   the accents of Latin, Greek and Cyrillic letters) are dropped ("é" -> "e", "ñ" -> "n", "ü" -> "u"),
   plus a few letters that do not decompose ("ø" -> "o", "æ" -> "ae", "ł" -> "l", ...). Marks of other
   scripts stay (Japanese voicing marks, Indic vowel signs are letters' parts, not accents). A query typed
   without accents therefore finds "café" and "Málaga".
3. Words are runs of letters, digits and combining marks; every other character (spaces, punctuation, apostrophes,
   underscores, symbols) separates them. A run is cut where letters meet digits ("10am" -> "10", "am";
   "3,5km" -> "3", "5", "km"), so numbers stand as terms of their own. Digits are kept.
4. Han, Hiragana, Katakana and Hangul have no spaces between words: each run of them becomes its
   overlapping character bigrams ("東京駅" -> "東京", "京駅"); a run of one character is one term.

There is no stop-word list: lists are per language and would break the others. Frequent words ("the",
"der", "la", "de") get a low inverse document frequency, which is what BM25's IDF is for. There is no
stemmer either (stemmers are per language too). Instead `index_terms` adds, for every alphabetic word longer
than ``prefix`` letters (default 4, not CJK), its first ``prefix`` letters as a further term: a language-
neutral stand-in for stemming ("allergy"/"allergic" share "alle", "Kilometer"/"kilometres" share "kilo",
"roof"/"roofing" share "roof"). Exact words still score on top of their shared prefix. On the project's
quality set the prefix raised keyword recall@10 from 0.79 to 0.84 on the half it was chosen on
(benchmarks/quality/README.md).

`BM25Index` indexes `index_terms` and scores with Okapi BM25::

    score(q, d) = sum over distinct terms t of q present in d of
                  idf(t) * tf(t, d) * (k1 + 1) / (tf(t, d) + k1 * (1 - b + b * len(d) / avglen))
    idf(t)      = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))      (never negative)

``k1`` (default 1.2) is how fast repeated occurrences of a term saturate (0 = presence only); ``b``
(default 0.75) is how much a long text is penalised (0 = not at all, 1 = fully proportional to its length
over the average). N, df and avglen are the statistics of the documents being scored: the whole index,
or the subset a search is confined to (a scope), so a scoped score equals the score in an index holding
only that scope's documents and other scopes never influence it.

Normalised scores (`BM25Index.normalised_scores`) lie in [0, 1] and mean, by method:

* ``"max"``: the score divided by the best score of this query over the scored documents, so the best
  match is 1 and the others are fractions of it (relative: says nothing about how good the best one is).
* ``"bound"``: the score divided by the query's bound ``sum idf(t) * (k1 + 1)`` over all its distinct
  terms (a term no scored document holds counts with the idf of a document frequency of 0), more than any
  document scores: every term, infinitely often, in an infinitely short text. Absolute: it says how much of
  the query's (idf-weighted) terms a text matches, comparably between queries; a text holding every query
  term once scores about 0.4-0.6, and a query whose rare words are absent from every text scores low.

Documents that share no term with the query get no score at all (they are absent, not 0).
"""

from __future__ import annotations

import itertools
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Literal

from memdock.errors import InvalidInput

__all__ = ["DEFAULT_B", "DEFAULT_K1", "DEFAULT_PREFIX", "BM25Index", "Normalisation", "index_terms", "tokenize"]

DEFAULT_K1 = 1.2
DEFAULT_B = 0.75
DEFAULT_PREFIX = 4

Normalisation = Literal["max", "bound"]

# Letters that NFD leaves whole (no combining mark to drop); folded to their usual Latin transliteration.
_FOLD = str.maketrans(
    {"ø": "o", "æ": "ae", "œ": "oe", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "\u0131": "i", "ħ": "h"}
)
_DIGITS_OR_LETTERS = re.compile(r"\d+|\D+")
_ASCII_TERMS = re.compile(r"[0-9]+|[a-z]+")


def _is_cjk(char: str) -> bool:
    """Han (with extensions and compatibility), Hiragana, Katakana, Hangul and CJK/Hangul compatibility."""
    code = ord(char)
    return (
        0x3040 <= code <= 0x30FF  # Hiragana, Katakana
        or 0x3400 <= code <= 0x4DBF  # Han extension A
        or 0x4E00 <= code <= 0x9FFF  # Han
        or 0xAC00 <= code <= 0xD7AF  # Hangul syllables
        or 0x1100 <= code <= 0x11FF  # Hangul jamo
        or 0x3130 <= code <= 0x318F  # Hangul compatibility jamo
        or 0x31F0 <= code <= 0x31FF  # Katakana phonetic extensions
        or 0xF900 <= code <= 0xFAFF  # Han compatibility
        or 0x20000 <= code <= 0x2FA1F  # Han extensions B..F and supplement
    )


def _fold(text: str) -> str:
    """NFKC, casefold, accents dropped, NFC again."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    decomposed = unicodedata.normalize("NFD", folded)
    stripped = "".join(c for c in decomposed if not "\u0300" <= c <= "\u036f")
    # NFC recomposes what decomposition split without a mark, e.g. Hangul syllables from their jamo.
    return unicodedata.normalize("NFC", stripped).translate(_FOLD)


def _split_word(word: str) -> Iterable[str]:
    """A run of word characters -> terms: CJK runs as bigrams, other runs cut between letters and digits."""
    start = 0
    for index in range(1, len(word) + 1):
        if index < len(word) and _is_cjk(word[index]) == _is_cjk(word[start]):
            continue
        run = word[start:index]
        if _is_cjk(run[0]):
            yield from (run,) if len(run) == 1 else (run[i : i + 2] for i in range(len(run) - 1))
        else:
            yield from _DIGITS_OR_LETTERS.findall(run)
        start = index


def _is_word_char(char: str) -> bool:
    """Letters, digits and (inside words of scripts such as Devanagari) combining marks."""
    return char.isalnum() or unicodedata.category(char)[0] == "M"


def _words(text: str) -> Iterable[str]:
    for is_word, chars in itertools.groupby(text, key=_is_word_char):
        if is_word:
            yield "".join(chars)


def tokenize(text: str) -> list[str]:
    """The index terms of `text`, in order, repeats kept (see the module docstring for the rules)."""
    if text.isascii():
        # The same rules, for ASCII: folding is lower-casing, word characters are [a-z0-9], no CJK runs.
        return _ASCII_TERMS.findall(text.lower())
    return _unicode_terms(text)


def _unicode_terms(text: str) -> list[str]:
    """`tokenize` for any text (the rules as written; `tokenize` takes a shortcut for ASCII)."""
    return [term for word in _words(_fold(text)) for term in _split_word(word)]


def index_terms(text: str, prefix: int | None = DEFAULT_PREFIX) -> list[str]:
    """`tokenize`, each alphabetic non-CJK word longer than `prefix` followed by its first `prefix` letters
    (``None`` or 0: the words only)."""
    terms = tokenize(text)
    if not prefix:
        return terms
    return [t for word in terms for t in (
        (word, word[:prefix]) if len(word) > prefix and word.isalpha() and not _is_cjk(word[0]) else (word,)
    )]


class BM25Index:
    """An Okapi BM25 index of texts by id, kept incrementally (`add`, `update`, `remove`).

    ``k1`` and ``b`` are BM25's parameters and ``prefix`` the length of the prefix terms (module docstring).

    The index holds term counts only (no text). Building it document by document, in any order, with any
    removals in between, gives exactly the scores of a fresh index of the documents it holds in the end.
    Not thread-safe: a caller that shares one index between threads holds its own lock.
    """

    def __init__(self, *, k1: float = DEFAULT_K1, b: float = DEFAULT_B, prefix: int | None = DEFAULT_PREFIX) -> None:
        if prefix is not None and (isinstance(prefix, bool) or not isinstance(prefix, int) or prefix < 0):
            raise InvalidInput(f"must be an integer >= 0 or None, got {prefix!r}", field="prefix")
        if not (math.isfinite(k1) and k1 >= 0):
            raise InvalidInput(f"must be a finite number >= 0, got {k1!r}", field="k1")
        if not (math.isfinite(b) and 0 <= b <= 1):
            raise InvalidInput(f"must be a number in [0, 1], got {b!r}", field="b")
        self.k1 = k1
        self.b = b
        self.prefix = prefix
        self._terms: dict[str, Counter[str]] = {}  # id -> term counts
        self._lengths: dict[str, int] = {}
        self._postings: dict[str, dict[str, int]] = {}  # term -> {id: count}
        self._total_length = 0

    def __len__(self) -> int:
        return len(self._terms)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._terms

    def ids(self) -> list[str]:
        """The ids indexed, in insertion order."""
        return list(self._terms)

    def add(self, doc_id: str, text: str) -> None:
        """Index `text` under `doc_id`; an id already indexed is replaced (same as `update`)."""
        if doc_id in self._terms:
            self.remove(doc_id)
        counts = Counter(index_terms(text, self.prefix))
        self._terms[doc_id] = counts
        length = sum(counts.values())
        self._lengths[doc_id] = length
        self._total_length += length
        for term, count in counts.items():
            self._postings.setdefault(term, {})[doc_id] = count

    def add_many(self, documents: Iterable[tuple[str, str]]) -> None:
        """`add` each (id, text) pair in turn."""
        for doc_id, text in documents:
            self.add(doc_id, text)

    def update(self, doc_id: str, text: str) -> None:
        """Replace the text indexed under `doc_id` (adds it when absent)."""
        self.add(doc_id, text)

    def remove(self, doc_id: str) -> bool:
        """Forget `doc_id`; False when it was not indexed."""
        counts = self._terms.pop(doc_id, None)
        if counts is None:
            return False
        self._total_length -= self._lengths.pop(doc_id)
        for term in counts:
            posting = self._postings[term]
            del posting[doc_id]
            if not posting:
                del self._postings[term]
        return True

    def clear(self) -> None:
        """Forget every document."""
        self._terms.clear()
        self._lengths.clear()
        self._postings.clear()
        self._total_length = 0

    def _statistics(self, ids: frozenset[str] | None) -> tuple[int, float]:
        if ids is None:
            count, total = len(self._lengths), self._total_length
        else:
            count, total = len(ids), sum(self._lengths[i] for i in ids)
        return count, (total / count if count else 0.0)

    def _weighted_terms(self, query: str, ids: frozenset[str] | None) -> list[tuple[float, dict[str, int]]]:
        """(idf, postings confined to `ids`) of each distinct query term; a term absent from the scored
        documents has empty postings and the idf of a document frequency of 0."""
        count, _ = self._statistics(ids)
        weighted = []
        for term in dict.fromkeys(index_terms(query, self.prefix)):
            posting = self._postings.get(term, {})
            if ids is not None and posting:  # walk the shorter side: a common term's posting spans the store
                posting = ({i: n for i, n in posting.items() if i in ids} if len(posting) <= len(ids)
                           else {i: posting[i] for i in ids if i in posting})
            frequency = len(posting)
            weighted.append((math.log(1.0 + (count - frequency + 0.5) / (frequency + 0.5)), posting))
        return weighted

    def scores(self, query: str, ids: Iterable[str] | None = None) -> dict[str, float]:
        """BM25 scores (> 0) of the documents sharing a term with `query`, keyed by id.

        `ids` confines the search (and the statistics) to those documents; ids not indexed are ignored.
        """
        subset = None if ids is None else frozenset(i for i in ids if i in self._terms)
        _, average = self._statistics(subset)
        totals: dict[str, float] = {}
        for idf, posting in self._weighted_terms(query, subset):
            for doc_id, count in posting.items():
                norm = self.k1 * (1.0 - self.b + self.b * self._lengths[doc_id] / average) if average else 0.0
                totals[doc_id] = totals.get(doc_id, 0.0) + idf * count * (self.k1 + 1.0) / (count + norm)
        return totals

    def bound(self, query: str, ids: Iterable[str] | None = None) -> float:
        """``sum idf(t) * (k1 + 1)`` over the distinct terms of `query`, those absent from the scored
        documents included (with the idf of a document frequency of 0): more than any document scores
        (equal only for k1 = 0 and a document holding every term), 0.0 for a query without terms. The
        ``"bound"`` normalisation's denominator."""
        subset = None if ids is None else frozenset(i for i in ids if i in self._terms)
        return sum(idf for idf, _ in self._weighted_terms(query, subset)) * (self.k1 + 1.0)

    def normalised_scores(
        self, query: str, ids: Iterable[str] | None = None, *, method: Normalisation = "max"
    ) -> dict[str, float]:
        """`scores` mapped into [0, 1] by `method` (``"max"`` or ``"bound"``, see the module docstring)."""
        subset = None if ids is None else list(ids)
        raw = self.scores(query, subset)
        if method == "max":
            top = max(raw.values(), default=0.0)
        elif method == "bound":
            top = self.bound(query, subset)
        else:
            raise InvalidInput(f"must be 'max' or 'bound', got {method!r}", field="method")
        if top <= 0:
            return {}
        return {doc_id: min(1.0, score / top) for doc_id, score in raw.items()}

    def rank(self, query: str, ids: Iterable[str] | None = None, limit: int | None = None) -> list[tuple[str, float]]:
        """(id, score) best first, ties broken by id; at most `limit` pairs."""
        ranked = sorted(self.scores(query, ids).items(), key=lambda item: (-item[1], item[0]))
        return ranked if limit is None else ranked[:limit]

    def term_counts(self) -> Mapping[str, int]:
        """Document frequency of every indexed term (for diagnostics and tests)."""
        return {term: len(posting) for term, posting in self._postings.items()}
