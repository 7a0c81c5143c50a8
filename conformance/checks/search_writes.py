"""search (after writes, at size): nothing stale after delete or update, no cap but `limit`, exact scores
under a filter."""

from __future__ import annotations

from memdock.capabilities import Capability
from memdock.conformance.checks.search import _cosine, _query_embedder
from memdock.conformance.context import CheckContext
from memdock.conformance.registry import check

BIG = 300


@check("search")
def check_search_after_delete_is_not_stale(ctx: CheckContext) -> None:
    """A deleted memory (one by id, then a scope by delete_all) is never found by search again.

    Troubleshooting: delete the vector from the index together with the record (and drop cached results).
    """
    gone = ctx.memory.add("green tea in the morning", user_id=ctx.user)[0].record
    ctx.memory.add("black coffee", user_id=ctx.user)
    ctx.memory.delete(gone.id)
    hits = ctx.memory.search("green tea in the morning", user_id=ctx.user, limit=10, mode="vector")
    assert [h.record.text for h in hits] == ["black coffee"], [h.record.text for h in hits]
    ctx.memory.delete_all(user_id=ctx.user)
    assert ctx.memory.search("black coffee", user_id=ctx.user, limit=10) == []


@check("search", requires=Capability.UPDATE)
def check_search_after_update_uses_the_new_text(ctx: CheckContext) -> None:
    """After update(text=), search ranks the memory by its new text (the old text no longer finds it first,
    the new one does, with the new text's score), and the hit carries the new text and metadata.

    Troubleshooting: re-write the vector on update (`record.vector` is the new text's embedding); an index
    keyed by id must replace, not append.
    """
    record = ctx.memory.add("plays the violin", user_id=ctx.user, metadata={"v": 1})[0].record
    ctx.memory.add("drives a red car", user_id=ctx.user)
    ctx.memory.update(record.id, text="black coffee after lunch", metadata={"w": 2})
    new = ctx.memory.search("black coffee after lunch", user_id=ctx.user, limit=2, mode="vector")
    assert new[0].record.id == record.id and new[0].score > 0.99, [(h.record.text, h.score) for h in new]
    assert (new[0].record.text, new[0].record.metadata) == ("black coffee after lunch", {"w": 2}), new[0].record
    old = ctx.memory.search("plays the violin", user_id=ctx.user, limit=2, mode="vector")
    assert all(h.score < 0.99 for h in old if h.record.id == record.id), [(h.record.text, h.score) for h in old]


@check("search")
def check_results_are_capped_only_by_limit(ctx: CheckContext) -> None:
    """Over 300 memories, search returns exactly `limit` hits for limits 60, 150 and 300, and all 300 for
    limit 1000, each once, best first; with a filter matching 30 less similar memories (FILTER_EQUALITY),
    limit 30 returns all 30 of them.

    Troubleshooting: pass `limit` to the index (Chroma `n_results`, SQL LIMIT, a service's top_k) and do
    not cap it with a page size or a default; raise your index's search breadth (ef / probes) with it;
    filter before taking the top `limit`, not after.
    """
    ctx.memory.add([{"role": "user", "content": f"memory number {n} about tea"} for n in range(BIG)],
                   user_id=ctx.user)
    for limit in (60, 150, BIG, 1000):
        hits = ctx.memory.search("memory about tea", user_id=ctx.user, limit=limit, mode="vector")
        ids = [h.record.id for h in hits]
        assert len(ids) == len(set(ids)) == min(limit, BIG), \
            f"limit {limit}: {len(ids)} hits ({len(set(ids))} distinct)"
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True), f"limit {limit}: scores not best first"
    if Capability.FILTER_EQUALITY in ctx.memory.capabilities:
        ctx.memory.add([{"role": "user", "content": f"rare entry {n}"} for n in range(30)], user_id=ctx.user,
                       metadata={"rare": True})
        rare = ctx.memory.search("memory about tea", user_id=ctx.user, filter={"rare": True}, limit=30,
                                 mode="vector")
        assert len(rare) == 30, f"filter matching 30 of 330, limit 30: {len(rare)} hits (filtered after the top k?)"


@check("search", requires=Capability.FILTER_EQUALITY)
def check_filtered_scores_are_the_clamped_cosine(ctx: CheckContext) -> None:
    """With a filter, every hit still scores the clamped cosine of its vector and the query's (within 1e-4)
    and only matching memories are ranked.

    Troubleshooting: a filtered query path must convert distances the same way as the unfiltered one.
    """
    embedder = _query_embedder(ctx)
    texts = ["green tea", "green tea with milk", "black coffee", "red car", "tea in the garden", "chess"]
    for n, text in enumerate(texts):
        ctx.memory.add(text, user_id=ctx.user, metadata={"keep": n % 2 == 0})
    query = "green tea in the garden"
    hits = ctx.memory.search(query, user_id=ctx.user, filter={"keep": True}, limit=10, mode="vector")
    assert sorted(h.record.text for h in hits) == sorted(texts[0::2]), [h.record.text for h in hits]
    vectors = embedder.embed([query, *(h.record.text for h in hits)])
    expected = [min(1.0, max(0.0, _cosine(vectors[0], v))) for v in vectors[1:]]
    got = [h.score for h in hits]
    assert all(abs(g - e) <= 1e-4 for g, e in zip(got, expected, strict=True)), \
        f"filtered scores {got} are not the clamped cosines {expected}"
