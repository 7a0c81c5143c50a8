"""search_modes: the keyword and hybrid modes (`memdock.search_modes`) of a backend declaring
`KEYWORD_SEARCH`: who is found, what the scores mean, and that scope and filters hold in every mode."""

from __future__ import annotations

from memdock.capabilities import Capability
from memdock.conformance.context import CheckContext
from memdock.conformance.registry import check
from memdock.errors import InvalidInput, Unsupported

TEXTS = [
    "Dentist appointment with Dr. Okafor on 12 March",
    "My sister Ana moved to Porto in 2021",
    "We adopted a cat called Luna",
    "Mi hermano trabaja en Sevilla como enfermero",
    "I prefer green tea in the morning",
]
MODES = ("hybrid", "vector", "keyword")


def _load(ctx: CheckContext) -> None:
    for text in TEXTS:
        ctx.memory.add(text, user_id=ctx.user)


@check("search_modes")
def check_an_unknown_mode_is_refused(ctx: CheckContext) -> None:
    """``mode="semantic"`` is `InvalidInput` naming ``mode``; a backend without `KEYWORD_SEARCH` answers
    ``keyword`` and ``hybrid`` with `Unsupported`, and its default is ``vector``.

    Troubleshooting: `Memory.search` checks the mode; declare `KEYWORD_SEARCH` only with both modes.
    """
    _load(ctx)
    try:
        ctx.memory.search("Okafor", user_id=ctx.user, mode="semantic")  # type: ignore[arg-type]
    except InvalidInput as error:
        assert error.field == "mode", error.field
    else:
        raise AssertionError("mode='semantic' was accepted")
    if Capability.KEYWORD_SEARCH in ctx.memory.capabilities:
        assert ctx.memory.default_search_mode == "hybrid", ctx.memory.default_search_mode
        return
    assert ctx.memory.default_search_mode == "vector", ctx.memory.default_search_mode
    for mode in ("keyword", "hybrid"):
        try:
            ctx.memory.search("Okafor", user_id=ctx.user, mode=mode)
        except Unsupported:
            continue
        raise AssertionError(f"mode={mode!r} answered although KEYWORD_SEARCH is not declared")


@check("search_modes", requires=Capability.KEYWORD_SEARCH)
def check_keyword_finds_only_texts_holding_a_query_word(ctx: CheckContext) -> None:
    """Keyword mode finds the texts holding the query's words, the one holding more of them first, with
    scores in (0, 1], descending; a text sharing no word is not a hit; case and accents do not matter.

    Troubleshooting: tokenize with `memdock.keyword.index_terms` (or an index as close) and leave out
    texts scoring 0; normalise by the query's bound (`BM25Index.normalised_scores(method="bound")`).
    """
    _load(ctx)
    hits = ctx.memory.search("okafor", user_id=ctx.user, mode="keyword", limit=10)
    assert [h.record.text for h in hits] == [TEXTS[0]], [h.record.text for h in hits]
    hits = ctx.memory.search("Ana Porto sister", user_id=ctx.user, mode="keyword", limit=10)
    assert hits and hits[0].record.text == TEXTS[1], [h.record.text for h in hits]
    scores = [h.score for h in hits]
    assert all(0.0 < s <= 1.0 for s in scores) and scores == sorted(scores, reverse=True), scores
    accents = ctx.memory.search("SEVÍLLA", user_id=ctx.user, mode="keyword", limit=10)
    assert [h.record.text for h in accents] == [TEXTS[3]], [h.record.text for h in accents]
    assert ctx.memory.search("zeppelin", user_id=ctx.user, mode="keyword") == []


@check("search_modes", requires=Capability.KEYWORD_SEARCH)
def check_hybrid_is_the_mean_of_the_vector_and_keyword_scores(ctx: CheckContext) -> None:
    """Hybrid mode ranks every candidate by ``0.5 * vector score + 0.5 * keyword score`` (0 where the
    keyword mode does not find it), within 1e-4: a text sharing no word is still found by meaning.

    Troubleshooting: fuse with `memdock.fusion.hybrid_fusion`, or leave `Backend.hybrid_search` to its
    default (it fuses `search` and `keyword_search`).
    """
    _load(ctx)
    query = "when is the dentist appointment with Okafor"
    vector = {h.record.id: h.score for h in ctx.memory.search(query, user_id=ctx.user, mode="vector", limit=100)}
    keyword = {h.record.id: h.score for h in ctx.memory.search(query, user_id=ctx.user, mode="keyword", limit=100)}
    hybrid = ctx.memory.search(query, user_id=ctx.user, mode="hybrid", limit=100)
    assert len(hybrid) == len(TEXTS), [h.record.text for h in hybrid]
    assert hybrid[0].record.text == TEXTS[0], [h.record.text for h in hybrid]
    for hit in hybrid:
        expected = 0.5 * vector[hit.record.id] + 0.5 * keyword.get(hit.record.id, 0.0)
        assert abs(hit.score - expected) <= 1e-4, (hit.record.text, hit.score, expected)


@check("search_modes", requires=Capability.KEYWORD_SEARCH)
def check_scope_filter_and_limit_hold_in_every_mode(ctx: CheckContext) -> None:
    """In every mode: only the scope's memories that match the filter, at most `limit`, nothing of another
    scope holding the same words.

    Troubleshooting: apply the scope and the filter to the keyword candidates as to the vector ones.
    """
    _load(ctx)
    ctx.memory.add("Ana lives in Porto now", user_id=ctx.user, metadata={"topic": "family"})
    ctx.memory.add("Ana from Porto, another user's sister", user_id=ctx.other, metadata={"topic": "family"})
    for mode in MODES:
        hits = ctx.memory.search("Ana Porto", user_id=ctx.user, mode=mode, limit=100)  # type: ignore[arg-type]
        assert hits and all(h.record.scope.user_id == ctx.user for h in hits), (mode, hits)
        filtered = ctx.memory.search("Ana Porto", user_id=ctx.user, mode=mode,  # type: ignore[arg-type]
                                     filter={"topic": "family"}, limit=100)
        assert [h.record.text for h in filtered] == ["Ana lives in Porto now"], (mode, filtered)
        one = ctx.memory.search("Ana Porto", user_id=ctx.user, mode=mode, limit=1)  # type: ignore[arg-type]
        assert len(one) == 1, (mode, one)


@check("search_modes", requires=Capability.KEYWORD_SEARCH)
def check_keyword_search_follows_updates_and_deletes(ctx: CheckContext) -> None:
    """After an update the old words find nothing and the new ones find the memory; after a delete the
    words find nothing (no stale keyword index).

    Troubleshooting: update or remove the keyword index entry in the same write as the record.
    """
    _load(ctx)
    [cat] = ctx.memory.search("Luna", user_id=ctx.user, mode="keyword")
    ctx.memory.update(cat.record.id, text="We adopted a dog called Rex")
    assert ctx.memory.search("Luna", user_id=ctx.user, mode="keyword") == []
    assert [h.record.id for h in ctx.memory.search("Rex", user_id=ctx.user, mode="keyword")] == [cat.record.id]
    ctx.memory.delete(cat.record.id)
    assert ctx.memory.search("Rex", user_id=ctx.user, mode="keyword") == []
    after = ctx.memory.search("Rex", user_id=ctx.user, mode="hybrid", limit=100)
    assert all(h.record.id != cat.record.id for h in after), after
