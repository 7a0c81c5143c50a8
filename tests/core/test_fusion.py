"""Tests of `memdock.fusion`: reciprocal-rank fusion, weighted score fusion and memdock's default hybrid."""

from __future__ import annotations

import random

import pytest

from memdock.errors import InvalidInput
from memdock.fusion import (
    DEFAULT_VECTOR_WEIGHT,
    Fused,
    hybrid_fusion,
    hybrid_scores,
    min_max,
    reciprocal_rank_fusion,
    weighted_score_fusion,
    weighted_scores,
)

# -- RRF ------------------------------------------------------------------------------------------------------


def test_rrf_scores_are_the_normalised_reciprocal_rank_sums() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["b", "d"]], k=10)
    most = 2 / 11
    want = {"a": (1 / 11) / most, "b": (1 / 12 + 1 / 11) / most, "c": (1 / 13) / most, "d": (1 / 12) / most}
    assert [hit.id for hit in fused] == ["b", "a", "d", "c"]
    assert {hit.id: hit.score for hit in fused} == pytest.approx(want)


def test_rrf_first_in_every_ranking_scores_one() -> None:
    fused = reciprocal_rank_fusion([["x", "y"], ["x", "z"], ["x"]])
    assert fused[0] == Fused("x", 1.0)


def test_rrf_a_document_in_one_list_only_gets_its_one_share() -> None:
    fused = dict(reciprocal_rank_fusion([["only", "both"], ["both"]], k=60))
    assert fused["only"] == pytest.approx((1 / 61) / (2 / 61)) == 0.5
    assert fused["both"] > fused["only"]


def test_rrf_ties_break_by_best_rank_then_ranking_order_then_id() -> None:
    # "v" is first in the vector list, "k" first in the keyword list: equal fused scores
    fused = reciprocal_rank_fusion([["v", "s"], ["k", "s2"]])
    assert [hit.id for hit in fused] == ["v", "k", "s", "s2"]
    assert fused[0].score == fused[1].score
    same = reciprocal_rank_fusion([["b"], ["a"]], weights=[1, 1])
    assert [hit.id for hit in same] == ["b", "a"]  # same rank: the earlier ranking first, not the id


def test_rrf_weights_shift_the_balance() -> None:
    fused = reciprocal_rank_fusion([["v"], ["k"]], weights=[3, 1])
    assert [hit.id for hit in fused] == ["v", "k"]
    assert fused[0].score == pytest.approx(0.75) and fused[1].score == pytest.approx(0.25)


def test_rrf_limit_and_empty_inputs() -> None:
    assert [hit.id for hit in reciprocal_rank_fusion([["a", "b", "c"]], limit=2)] == ["a", "b"]
    assert reciprocal_rank_fusion([]) == []
    assert reciprocal_rank_fusion([[], []]) == []
    assert reciprocal_rank_fusion([["a"]], limit=0) == []


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: reciprocal_rank_fusion([["a"]], k=0), "k"),
        (lambda: reciprocal_rank_fusion([["a"]], k=float("nan")), "k"),
        (lambda: reciprocal_rank_fusion([["a"], ["b"]], weights=[1]), "weights"),
        (lambda: reciprocal_rank_fusion([["a"]], weights=[-1]), "weights"),
        (lambda: reciprocal_rank_fusion([["a"], ["b"]], weights=[0, 0]), "weights"),
        (lambda: reciprocal_rank_fusion([["a", "a"]]), "rankings[0]"),
        (lambda: reciprocal_rank_fusion([["a"]], limit=-1), "limit"),
        (lambda: weighted_score_fusion([{"a": 1.5}], [1]), "scored[0]"),
        (lambda: weighted_score_fusion([{"a": 0.5}, {"a": -0.1}], [1, 1]), "scored[1]"),
        (lambda: weighted_score_fusion([{"a": float("nan")}], [1]), "scored[0]"),
        (lambda: weighted_score_fusion([{"a": 0.5}], [1, 2]), "weights"),
        (lambda: hybrid_fusion({"a": 0.5}, {}, vector_weight=1.2), "vector_weight"),
        (lambda: hybrid_scores({"a": 0.5}, {}, vector_weight=-0.1), "vector_weight"),
        (lambda: weighted_scores([{"a": 0.5}, {"a": 1.01}], [1, 1]), "scored[1]"),
        (lambda: min_max({"a": float("inf")}), "scores"),
    ],
)
def test_bad_parameters_name_their_field(call: object, field: str) -> None:
    with pytest.raises(InvalidInput) as error:
        call()  # type: ignore[operator]
    assert error.value.field == field


# -- weighted ------------------------------------------------------------------------------------------------


def test_weighted_fusion_is_the_weighted_mean_with_missing_as_zero() -> None:
    fused = dict(weighted_score_fusion([{"a": 0.8, "b": 0.4}, {"b": 1.0, "c": 0.5}], [0.6, 0.4]))
    assert fused == pytest.approx({"a": 0.48, "b": 0.64, "c": 0.2})


def test_weighted_fusion_weights_need_not_sum_to_one() -> None:
    assert dict(weighted_score_fusion([{"a": 1.0}, {"a": 0.5}], [3, 1])) == pytest.approx({"a": 0.875})


def test_weighted_fusion_ties_break_by_best_rank() -> None:
    # a: 1.0 and 0 -> 0.5 ; b: 0 and 1.0 -> 0.5 ; c: 0.5 and 0.5 -> 0.5 (rank 2 in both)
    fused = weighted_score_fusion([{"a": 1.0, "c": 0.5}, {"b": 1.0, "c": 0.5}], [1, 1])
    assert [hit.id for hit in fused] == ["a", "b", "c"]
    assert {hit.score for hit in fused} == {0.5}


def test_hybrid_is_the_documented_weighted_fusion() -> None:
    vector, keyword = {"a": 0.9, "b": 0.2}, {"b": 0.6, "c": 0.3}
    fused = dict(hybrid_fusion(vector, keyword))
    w = DEFAULT_VECTOR_WEIGHT
    assert fused == pytest.approx({"a": w * 0.9, "b": w * 0.2 + (1 - w) * 0.6, "c": (1 - w) * 0.3})
    assert dict(hybrid_fusion(vector, keyword, vector_weight=1.0)) == pytest.approx({"a": 0.9, "b": 0.2, "c": 0.0})


@pytest.mark.parametrize("seed", range(5))
def test_fused_scores_stay_in_the_unit_interval(seed: int) -> None:
    rng = random.Random(seed)
    ids = [f"m{n}" for n in range(30)]
    vector = {i: rng.random() for i in rng.sample(ids, 20)}
    keyword = {i: rng.choice([0.0, 1.0, rng.random()]) for i in rng.sample(ids, 15)}
    results = [
        reciprocal_rank_fusion([sorted(vector, key=vector.__getitem__), list(keyword)], k=rng.choice([1, 10, 60])),
        weighted_score_fusion([vector, keyword], [rng.random() + 0.01, rng.random()]),
        hybrid_fusion(vector, keyword, vector_weight=rng.random()),
    ]
    for fused in results:
        assert {hit.id for hit in fused} == set(vector) | set(keyword)
        assert all(0.0 <= hit.score <= 1.0 for hit in fused)
        assert [hit.score for hit in fused] == sorted((hit.score for hit in fused), reverse=True)


@pytest.mark.parametrize("seed", range(5))
def test_unordered_scores_are_exactly_the_fusions_scores(seed: int) -> None:
    """`weighted_scores` and `hybrid_scores` give every fused document the very float the ordered fusions
    give it (callers that order the scores themselves rank exactly as the fusion would score)."""
    rng = random.Random(seed)
    ids = [f"m{n}" for n in range(40)]
    vector = {i: rng.random() for i in rng.sample(ids, 25)}
    keyword = {i: rng.choice([0.0, 1.0, rng.random()]) for i in rng.sample(ids, 18)}
    weight = rng.random()
    assert hybrid_scores(vector, keyword, vector_weight=weight) == {
        f.id: f.score for f in hybrid_fusion(vector, keyword, vector_weight=weight)}
    weights = [rng.random() + 0.01, rng.random()]
    assert weighted_scores([vector, keyword], weights) == {
        f.id: f.score for f in weighted_score_fusion([vector, keyword], weights)}


# -- min_max -------------------------------------------------------------------------------------------------


def test_min_max_maps_best_to_one_and_worst_to_zero() -> None:
    assert min_max({"a": 12.0, "b": 7.0, "c": 2.0}) == pytest.approx({"a": 1.0, "b": 0.5, "c": 0.0})
    assert min_max({"a": 3.0, "b": 3.0}) == {"a": 1.0, "b": 1.0}
    assert min_max({}) == {}
