"""Tests of `memdock.keyword`: the multilingual tokenizer and the incremental Okapi BM25 index."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memdock import keyword
from memdock.errors import InvalidInput
from memdock.keyword import BM25Index, index_terms, tokenize

# -- tokenize ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "terms"),
    [
        ("Anna moved to BERLIN", ["anna", "moved", "to", "berlin"]),
        ("Straße in MÜNCHEN", ["strasse", "in", "munchen"]),  # casefold: ß -> ss; umlaut folded
        ("Nací en Cádiz, señor", ["naci", "en", "cadiz", "senor"]),
        ("l'école d'été à Lyon", ["l", "ecole", "d", "ete", "a", "lyon"]),  # apostrophes split
        ("Øresund, Æbleskiver, Łódź", ["oresund", "aebleskiver", "lodz"]),  # letters NFD keeps whole
        ("\uff26\uff55\uff4c\uff4c\uff0d\uff57\uff49\uff44\uff54\uff48 \uff11\uff12", ["full", "width", "12"]),  # NFKC
        ("ﬁnal ﬂight", ["final", "flight"]),  # NFKC ligatures
        ("snake_case-word", ["snake", "case", "word"]),
        ("", []),
        ("?!, …", []),
    ],
)
def test_tokenize_latin_scripts(text: str, terms: list[str]) -> None:
    assert tokenize(text) == terms


def test_tokenize_keeps_digits_and_cuts_them_from_letters() -> None:
    assert tokenize("10am on 2025-03-12, 3,5km for 980€") == [
        "10", "am", "on", "2025", "03", "12", "3", "5", "km", "for", "980",
    ]


def test_tokenize_accents_fold_both_ways() -> None:
    """A query typed without accents meets a text written with them, and the other way round."""
    assert tokenize("cafe Malaga") == tokenize("Café Málaga") == tokenize("CAFÉ MÁLAGA")


def test_tokenize_cjk_runs_become_bigrams() -> None:
    assert tokenize("東京駅") == ["東京", "京駅"]
    assert tokenize("大阪の天王寺に住んでいます。") == [
        "大阪", "阪の", "の天", "天王", "王寺", "寺に", "に住", "住ん", "んで", "でい", "いま", "ます",
    ]
    assert tokenize("駅") == ["駅"]  # a single character stays one term
    assert tokenize("서울에 살아요") == ["서울", "울에", "살아", "아요"]


def test_tokenize_cjk_beside_latin_and_digits() -> None:
    assert tokenize("ICUに異動 2026年") == ["icu", "に異", "異動", "2026", "年"]


def test_tokenize_keeps_marks_that_are_not_accents() -> None:
    """Japanese voicing marks and Devanagari vowel signs are parts of letters, not accents."""
    assert tokenize("が") == ["が"] != tokenize("か")
    assert tokenize("नमस्ते दुनिया") == ["नमस्ते", "दुनिया"]
    assert tokenize("Ελληνικά Привет") == ["ελληνικα", "привет"]


def test_tokenize_has_no_stop_words() -> None:
    """Frequent words are kept in every language: IDF, not a list, makes them cheap."""
    assert tokenize("the der la de und") == ["the", "der", "la", "de", "und"]


# -- index_terms -------------------------------------------------------------------------------------------


def test_index_terms_add_prefixes_of_long_alphabetic_words() -> None:
    assert index_terms("Ich laufe 25 Kilometer") == ["ich", "laufe", "lauf", "25", "kilometer", "kilo"]
    assert index_terms("roof roofing", prefix=4) == ["roof", "roofing", "roof"]
    assert index_terms("東京駅 2025年", prefix=1) == ["東京", "京駅", "2025", "年"]  # no prefixes of CJK or digits
    assert index_terms("Kilometer", prefix=None) == index_terms("Kilometer", prefix=0) == ["kilometer"]


def test_prefix_terms_let_inflected_words_meet() -> None:
    docs = {"allergy": "I'm allergic to hazelnuts", "other": "I like hazel eyes"}
    words_only, index = BM25Index(prefix=None), BM25Index()
    words_only.add_many(docs.items())
    index.add_many(docs.items())
    assert words_only.scores("allergy") == {} and words_only.scores("allergic") != {}
    assert list(index.scores("allergy")) == ["allergy"]


# -- BM25: scores -------------------------------------------------------------------------------------------

CORPUS = {
    "d1": "Anna adopted a grey cat named Pixel",
    "d2": "Jonas works as a sound engineer in Leipzig",
    "d3": "The cat needs a vaccination booster in April, the cat is old",
    "d4": "Anna runs fifteen kilometres a week in Leipzig",
}


def _index(docs: dict[str, str]) -> BM25Index:
    index = BM25Index()
    index.add_many(docs.items())
    return index


def _bm25(
    query: str, docs: dict[str, str], k1: float = 1.2, b: float = 0.75, prefix: int | None = 4
) -> dict[str, float]:
    """Okapi BM25 written out from its formula, the oracle of the index."""
    tokens = {i: index_terms(t, prefix) for i, t in docs.items()}
    average = sum(len(t) for t in tokens.values()) / len(tokens)
    scores: dict[str, float] = {}
    for term in dict.fromkeys(index_terms(query, prefix)):
        frequency = sum(term in t for t in tokens.values())
        if not frequency:
            continue
        idf = math.log(1 + (len(docs) - frequency + 0.5) / (frequency + 0.5))
        for i, t in tokens.items():
            tf = t.count(term)
            if tf:
                denominator = tf + k1 * (1 - b + b * len(t) / average)
                scores[i] = scores.get(i, 0.0) + idf * tf * (k1 + 1) / denominator
    return scores


@pytest.mark.parametrize("query", ["cat", "Anna Leipzig", "sound engineer cat", "vaccination APRIL", "nothing"])
@pytest.mark.parametrize(("k1", "b", "prefix"), [(1.2, 0.75, 4), (0.0, 0.0, 4), (2.0, 1.0, None), (1.2, 0.75, 3)])
def test_scores_follow_the_okapi_formula(query: str, k1: float, b: float, prefix: int | None) -> None:
    index = BM25Index(k1=k1, b=b, prefix=prefix)
    index.add_many(CORPUS.items())
    got = index.scores(query)
    want = _bm25(query, CORPUS, k1, b, prefix)
    assert got.keys() == want.keys()
    for doc_id, score in want.items():
        assert got[doc_id] == pytest.approx(score)


def test_known_ranking_on_a_tiny_corpus() -> None:
    index = _index(CORPUS)
    assert [doc_id for doc_id, _ in index.rank("cat")] == ["d3", "d1"]  # two occurrences beat one
    assert index.rank("Anna Leipzig")[0][0] == "d4"  # both terms beat either alone
    assert index.rank("Jonas")[0][0] == "d2"
    assert index.rank("zebra") == []  # no shared term: no score at all, not 0


def test_rare_terms_weigh_more_than_frequent_ones() -> None:
    index = _index({"a": "the cat", "b": "the dog", "c": "the bird", "d": "the fish"})
    scores = index.scores("the cat")
    assert scores["a"] > scores["b"] == scores["c"] == scores["d"] > 0


def test_repeated_query_terms_count_once() -> None:
    index = _index(CORPUS)
    assert index.scores("cat cat cat") == index.scores("cat")


def test_accent_free_query_finds_accented_text() -> None:
    index = _index({"es": "Nací en Cádiz en 1984", "fr": "Je suis née à Nantes"})
    assert index.rank("cadiz")[0][0] == "es"
    assert index.rank("NEE nantes")[0][0] == "fr"


def test_japanese_query_finds_japanese_text() -> None:
    index = _index({"ja": "大阪の天王寺に住んでいます。", "en": "I live in Osaka"})
    assert [doc_id for doc_id, _ in index.rank("天王寺")] == ["ja"]


# -- BM25: incremental ----------------------------------------------------------------------------------------


def test_incremental_add_remove_update_equals_a_fresh_build() -> None:
    rng = random.Random(17)
    words = ["anna", "cat", "leipzig", "jonas", "april", "booster", "engineer", "café", "cádiz", "東京", "大阪", "2025"]
    index = BM25Index()
    live: dict[str, str] = {}
    for step in range(400):
        doc_id = f"d{rng.randrange(40)}"
        action = rng.random()
        if action < 0.2:
            assert index.remove(doc_id) == (doc_id in live)
            live.pop(doc_id, None)
        else:
            text = " ".join(rng.choices(words, k=rng.randint(1, 8)))
            (index.update if action < 0.4 else index.add)(doc_id, text)
            live[doc_id] = text
        if step % 50 == 49:
            fresh = _index(live)
            assert len(index) == len(live)
            assert index.term_counts() == fresh.term_counts()
            for query in ("anna cat", "cadiz 2025", "東京大阪", "week run engineer"):
                got, want = index.scores(query), fresh.scores(query)
                assert got.keys() == want.keys()
                assert all(got[i] == pytest.approx(want[i]) for i in want)


def test_removing_everything_leaves_an_empty_index() -> None:
    index = _index(CORPUS)
    for doc_id in CORPUS:
        assert index.remove(doc_id)
    assert len(index) == 0 and index.term_counts() == {} and index.scores("cat") == {}
    assert index.remove("d1") is False


def test_add_of_an_existing_id_replaces_its_text() -> None:
    index = _index(CORPUS)
    index.add("d1", "a dog called Rex")
    assert "d1" not in index.scores("Pixel") and "d1" in index.scores("Rex")
    assert index.ids() == ["d2", "d3", "d4", "d1"]


def test_clear_forgets_every_document() -> None:
    index = _index(CORPUS)
    index.clear()
    assert len(index) == 0 and index.scores("cat") == {}


# -- BM25: subsets (scopes) ------------------------------------------------------------------------------------


def test_subset_scores_equal_an_index_of_the_subset_alone() -> None:
    """A scoped search uses the scope's statistics: other scopes' documents never influence it."""
    index = _index(CORPUS)
    index.add_many({f"other{n}": "cat cat cat everywhere" for n in range(20)}.items())
    subset = ["d1", "d3", "d4", "not-indexed"]
    alone = _index({i: CORPUS[i] for i in ("d1", "d3", "d4")})
    got, want = index.scores("cat Anna", subset), alone.scores("cat Anna")
    assert got.keys() == want.keys() == {"d1", "d3", "d4"}
    assert all(got[i] == pytest.approx(want[i]) for i in want)
    assert index.scores("cat", []) == {}


# -- normalisation -----------------------------------------------------------------------------------------------


def test_max_normalisation_puts_the_best_at_one() -> None:
    index = _index(CORPUS)
    scores = index.normalised_scores("cat Anna", method="max")
    assert max(scores.values()) == 1.0
    assert all(0 < s <= 1 for s in scores.values())
    raw = index.scores("cat Anna")
    best = max(raw.values())
    assert all(scores[i] == pytest.approx(raw[i] / best) for i in raw)


def test_bound_normalisation_is_absolute_and_below_one() -> None:
    index = _index(CORPUS)
    scores = index.normalised_scores("cat Anna", method="bound")
    bound = index.bound("cat Anna")
    raw = index.scores("cat Anna")
    assert all(scores[i] == pytest.approx(raw[i] / bound) for i in raw)
    assert all(0 < s < 1 for s in scores.values())
    # a document holding every query term, many times, in a text of average length scores high but < 1
    index.add("best", "cat Anna " * 20)
    assert 0.5 < index.normalised_scores("cat Anna", method="bound")["best"] < 1


def test_normalisation_of_a_query_without_matches_is_empty() -> None:
    index = _index(CORPUS)
    assert index.normalised_scores("zebra", method="max") == {}
    assert index.normalised_scores("zebra", method="bound") == {}
    assert index.bound("") == 0.0 == index.bound("?!")


def test_bound_counts_query_terms_that_no_document_holds() -> None:
    """A query whose rare words are missing everywhere matches only a small part of its bound."""
    index = _index(CORPUS)
    absent = math.log(1 + (len(CORPUS) + 0.5) / 0.5) * 2.2  # df = 0, k1 + 1 = 2.2; "yak": no prefix term
    assert index.bound("yak") == pytest.approx(absent)
    assert index.bound("cat yak") == pytest.approx(index.bound("cat") + absent)
    partial = index.normalised_scores("cat yak", method="bound")
    full = index.normalised_scores("cat", method="bound")
    assert partial.keys() == full.keys() and all(partial[i] < full[i] for i in full)
    assert index.bound("yak", ["d1"]) == pytest.approx(math.log(1 + 1.5 / 0.5) * 2.2)  # N of the subset


def test_bad_parameters_name_their_field() -> None:
    with pytest.raises(InvalidInput) as k1:
        BM25Index(k1=-1)
    assert k1.value.field == "k1"
    with pytest.raises(InvalidInput) as b:
        BM25Index(b=1.5)
    assert b.value.field == "b"
    with pytest.raises(InvalidInput) as prefix:
        BM25Index(prefix=-2)
    assert prefix.value.field == "prefix"
    with pytest.raises(InvalidInput) as method:
        _index(CORPUS).normalised_scores("cat", method="softmax")  # type: ignore[arg-type]
    assert method.value.field == "method"


@settings(max_examples=500)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=60))
def test_the_ascii_shortcut_gives_the_terms_of_the_written_rules(text: str) -> None:
    assert tokenize(text) == keyword._unicode_terms(text)


def test_text_beyond_ascii_takes_the_written_rules() -> None:
    assert tokenize("Straße 10am Zürich") == ["strasse", "10", "am", "zurich"]
