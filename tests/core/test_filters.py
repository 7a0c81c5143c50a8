"""The filter language: parsing mem0-style JSON and the reference evaluator's semantics."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memdock.errors import InvalidFilter, InvalidInput
from memdock.filters import (
    MAX_FILTER_CONDITIONS,
    MAX_FILTER_DEPTH,
    And,
    Comparison,
    Exists,
    Not,
    Or,
    coerce_filter,
    evaluate,
    matches_all,
    may_raise,
    parse_mem0_filter,
    referenced_fields,
)
from memdock.models import MemoryRecord, Scope

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def record(metadata: dict[str, Any] | None = None, **scope_ids: str) -> MemoryRecord:
    ids = scope_ids or {"user_id": "u1"}
    return MemoryRecord(
        id="m1", text="some text", scope=Scope(**ids), metadata=metadata or {}, hash="h",
        created_at=NOW, updated_at=NOW,
    )


def matches(filter_json: Any, metadata: dict[str, Any] | None = None, **scope_ids: str) -> bool:
    return evaluate(parse_mem0_filter(filter_json), record(metadata, **scope_ids))


# -- comparison operators ------------------------------------------------------------------------------


def test_plain_value_means_eq() -> None:
    assert parse_mem0_filter({"color": "red"}) == Comparison("color", "eq", "red")
    assert matches({"color": "red"}, {"color": "red"})
    assert not matches({"color": "red"}, {"color": "blue"})


def test_eq_operator() -> None:
    assert matches({"color": {"eq": "red"}}, {"color": "red"})
    assert not matches({"color": {"eq": "red"}}, {"color": "Red"})


def test_ne_operator() -> None:
    assert matches({"color": {"ne": "red"}}, {"color": "blue"})
    assert not matches({"color": {"ne": "red"}}, {"color": "red"})


@pytest.mark.parametrize(
    ("op", "operand", "value", "expected"),
    [
        ("gt", 4, 5, True), ("gt", 4, 4, False), ("gt", 4, 3, False),
        ("gte", 4, 5, True), ("gte", 4, 4, True), ("gte", 4, 3, False),
        ("lt", 4, 3, True), ("lt", 4, 4, False), ("lt", 4, 5, False),
        ("lte", 4, 3, True), ("lte", 4, 4, True), ("lte", 4, 5, False),
        ("gt", 4.5, 5, True), ("lt", 4, 3.9, True), ("gte", -1, -1.0, True),
    ],
)
def test_ordering_operators(op: str, operand: float, value: float, expected: bool) -> None:
    assert matches({"rating": {op: operand}}, {"rating": value}) is expected


def test_in_operator() -> None:
    assert matches({"color": {"in": ["red", "green"]}}, {"color": "green"})
    assert not matches({"color": {"in": ["red", "green"]}}, {"color": "blue"})
    assert not matches({"color": {"in": []}}, {"color": "blue"})


def test_nin_operator() -> None:
    assert matches({"color": {"nin": ["red", "green"]}}, {"color": "blue"})
    assert not matches({"color": {"nin": ["red", "green"]}}, {"color": "red"})
    assert matches({"color": {"nin": []}}, {"color": "blue"})


def test_contains_on_string_is_substring() -> None:
    assert matches({"note": {"contains": "tea"}}, {"note": "green tea please"})
    assert not matches({"note": {"contains": "Tea"}}, {"note": "green tea please"})
    assert not matches({"note": {"contains": "coffee"}}, {"note": "green tea please"})


def test_contains_on_list_is_membership() -> None:
    assert matches({"tags": {"contains": "b"}}, {"tags": ["a", "b"]})
    assert not matches({"tags": {"contains": "c"}}, {"tags": ["a", "b"]})
    # membership, not substring of an element
    assert not matches({"tags": {"contains": "bc"}}, {"tags": ["abcd"]})
    # non-string element of a list
    assert matches({"nums": {"contains": 2}}, {"nums": [1, 2, 3]})
    assert not matches({"flags": {"contains": 1}}, {"flags": [True]})


def test_contains_on_other_types_does_not_match() -> None:
    assert not matches({"rating": {"contains": "4"}}, {"rating": 4})
    assert not matches({"obj": {"contains": "a"}}, {"obj": {"a": 1}})


def test_startswith_and_endswith_match_string_values_case_sensitively() -> None:
    assert matches({"note": {"startswith": "Green"}}, {"note": "Green Tea"})
    assert not matches({"note": {"startswith": "green"}}, {"note": "Green Tea"})
    assert matches({"note": {"endswith": "Tea"}}, {"note": "Green Tea"})
    assert not matches({"note": {"endswith": "Green"}}, {"note": "Green Tea"})
    assert not matches({"tags": {"startswith": "a"}}, {"tags": ["ab"]})
    assert not matches({"note": {"startswith": "G"}}, {})


@pytest.mark.parametrize("op", ["startswith", "endswith", "icontains"])
def test_string_operators_refuse_non_string_operands(op: str) -> None:
    with pytest.raises(InvalidFilter) as caught:
        parse_mem0_filter({"note": {op: 4}})
    assert caught.value.field == "note"


def test_icontains_is_case_insensitive() -> None:
    assert matches({"note": {"icontains": "TEA"}}, {"note": "Green Tea"})
    assert matches({"note": {"icontains": "green tea"}}, {"note": "GREEN TEA"})
    assert matches({"note": {"icontains": "STRASSE"}}, {"note": "straße"})  # casefold
    assert not matches({"note": {"icontains": "coffee"}}, {"note": "Green Tea"})
    assert not matches({"tags": {"icontains": "A"}}, {"tags": ["a"]})  # strings only


def test_icontains_needs_a_string_operand() -> None:
    with pytest.raises(InvalidFilter):
        parse_mem0_filter({"note": {"icontains": 3}})
    with pytest.raises(InvalidFilter):
        parse_mem0_filter({"note": {"contains": None}})


def test_exists_star() -> None:
    assert parse_mem0_filter({"color": "*"}) == Exists("color")
    assert matches({"color": "*"}, {"color": "red"})
    assert matches({"color": "*"}, {"color": None})  # present, even if null
    assert not matches({"color": "*"}, {"other": 1})


def test_exists_operator_forms() -> None:
    assert matches({"color": {"exists": True}}, {"color": 1})
    assert not matches({"color": {"exists": True}}, {})
    assert matches({"color": {"exists": False}}, {})
    assert not matches({"color": {"exists": False}}, {"color": 1})
    assert matches({"color": {"*": True}}, {"color": 1})


# -- logical operators ---------------------------------------------------------------------------------


def test_and() -> None:
    f = {"AND": [{"user_id": "u1"}, {"rating": {"gte": 4}}]}
    assert matches(f, {"rating": 5}, user_id="u1")
    assert not matches(f, {"rating": 3}, user_id="u1")
    assert not matches(f, {"rating": 5}, user_id="u2")


def test_or() -> None:
    f = {"OR": [{"color": "red"}, {"rating": {"gt": 4}}]}
    assert matches(f, {"color": "red", "rating": 1})
    assert matches(f, {"color": "blue", "rating": 5})
    assert not matches(f, {"color": "blue", "rating": 4})


def test_not() -> None:
    assert matches({"NOT": {"color": "red"}}, {"color": "blue"})
    assert not matches({"NOT": {"color": "red"}}, {"color": "red"})
    # a list under NOT negates the conjunction of its items
    f = {"NOT": [{"color": "red"}, {"size": "L"}]}
    assert matches(f, {"color": "red", "size": "M"})
    assert not matches(f, {"color": "red", "size": "L"})


def test_lower_case_logical_keys() -> None:
    assert matches({"and": [{"a": 1}, {"or": [{"b": 2}, {"not": {"c": 3}}]}]}, {"a": 1, "c": 4})


def test_empty_and_matches_everything_empty_or_nothing() -> None:
    assert matches({"AND": []}, {})
    assert not matches({"OR": []}, {})


def test_implicit_and_of_several_keys() -> None:
    f = {"color": "red", "rating": {"gte": 4}, "user_id": "u1"}
    assert isinstance(parse_mem0_filter(f), And)
    assert matches(f, {"color": "red", "rating": 4}, user_id="u1")
    assert not matches(f, {"color": "red", "rating": 3}, user_id="u1")
    assert not matches(f, {"color": "blue", "rating": 4}, user_id="u1")


def test_several_operators_in_one_object_all_must_hold() -> None:
    f = {"rating": {"gte": 2, "lt": 5, "ne": 3}}
    assert [matches(f, {"rating": v}) for v in (1, 2, 3, 4, 5)] == [False, True, False, True, False]


def test_logical_key_needs_a_list() -> None:
    with pytest.raises(InvalidFilter):
        parse_mem0_filter({"AND": {"a": 1}})
    with pytest.raises(InvalidFilter):
        parse_mem0_filter({"OR": "x"})


# -- missing fields ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        {"eq": "red"}, {"in": ["red"]}, {"gt": 1}, {"gte": 1}, {"lt": 1}, {"lte": 1},
        {"contains": "r"}, {"icontains": "r"}, "red", None,
    ],
)
def test_positive_operators_do_not_match_a_missing_field(spec: Any) -> None:
    assert not matches({"color": spec}, {"other": "red"})


@pytest.mark.parametrize("spec", [{"ne": "red"}, {"nin": ["red"]}])
def test_ne_and_nin_match_a_missing_field(spec: Any) -> None:
    assert matches({"color": spec}, {"other": "red"})
    assert matches({"agent_id": spec}, {}, user_id="u1")  # unset scope id counts as missing


# -- types ---------------------------------------------------------------------------------------------


def test_bool_is_not_one() -> None:
    assert not matches({"flag": True}, {"flag": 1})
    assert not matches({"flag": 1}, {"flag": True})
    assert not matches({"flag": 0}, {"flag": False})
    assert matches({"flag": True}, {"flag": True})
    assert not matches({"flag": {"in": [1]}}, {"flag": True})
    assert matches({"flag": {"ne": 1}}, {"flag": True})
    assert matches({"flag": {"nin": [True]}}, {"flag": 1})


def test_bool_is_not_one_inside_lists_and_objects() -> None:
    assert not matches({"v": {"eq": [1, 2]}}, {"v": [True, 2]})
    assert matches({"v": {"eq": [1.0, 2]}}, {"v": [1, 2.0]})
    assert matches({"v": {"eq": [True, [False]]}}, {"v": [True, [False]]})
    assert not matches({"v": {"eq": {"a": 1}}}, {"v": {"a": True}})
    assert matches({"v": {"eq": {"a": [1.0], "b": None}}}, {"v": {"b": None, "a": [1]}})
    assert not matches({"v": {"eq": {"a": 1}}}, {"v": {"a": 1, "b": 2}})
    assert matches({"v": {"ne": [0]}}, {"v": [False]})
    assert not matches({"v": {"in": [[1], [0]]}}, {"v": [True]})
    assert not matches({"v": {"contains": [1]}}, {"v": [[True]]})
    assert matches({"v": {"contains": [True]}}, {"v": [[True]]})


def test_int_equals_float() -> None:
    assert matches({"n": 1}, {"n": 1.0})
    assert matches({"n": 1.0}, {"n": 1})
    assert matches({"n": {"in": [1.0]}}, {"n": 1})
    assert not matches({"n": {"ne": 1}}, {"n": 1.0})


def test_null_with_eq() -> None:
    assert matches({"color": None}, {"color": None})
    assert matches({"color": {"eq": None}}, {"color": None})
    assert not matches({"color": None}, {"color": "red"})
    assert not matches({"color": None}, {})  # absent is not null
    assert matches({"color": {"ne": None}}, {"color": "red"})
    assert matches({"color": {"in": [None, "x"]}}, {"color": None})


@pytest.mark.parametrize("op", ["gt", "gte", "lt", "lte"])
@pytest.mark.parametrize("operand", ["4", None, True, [4], {"a": 1}])
def test_ordering_operand_must_be_a_number_at_parse(op: str, operand: Any) -> None:
    with pytest.raises(InvalidFilter) as info:
        parse_mem0_filter({"rating": {op: operand}})
    assert info.value.field == "rating"


@pytest.mark.parametrize("op", ["gt", "gte", "lt", "lte"])
@pytest.mark.parametrize("stored", ["5", True, None, [5], {"a": 5}])
def test_ordering_against_a_non_number_stored_value_raises_at_evaluation(op: str, stored: Any) -> None:
    expr = parse_mem0_filter({"rating": {op: 4}})  # parses fine
    with pytest.raises(InvalidFilter) as info:
        evaluate(expr, record({"rating": stored}))
    assert info.value.field == "rating"


def test_ordering_against_a_scope_id_raises_at_evaluation() -> None:
    with pytest.raises(InvalidFilter):
        matches({"user_id": {"gt": 1}}, {}, user_id="u1")


@pytest.mark.parametrize("op", ["in", "nin"])
@pytest.mark.parametrize("operand", ["red", 1, None, {"a": 1}])
def test_in_and_nin_need_a_list(op: str, operand: Any) -> None:
    with pytest.raises(InvalidFilter):
        parse_mem0_filter({"color": {op: operand}})


@pytest.mark.parametrize("op", ["regex", "like", "between", "EQ", "$eq", "exists_not"])
def test_unknown_operator_is_named(op: str) -> None:
    with pytest.raises(InvalidFilter) as info:
        parse_mem0_filter({"color": {op: "x"}})
    assert op in str(info.value)


def test_invalid_filter_is_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        parse_mem0_filter({"color": {"nope": 1}})


def test_plain_list_value_is_refused() -> None:
    with pytest.raises(InvalidFilter) as info:
        parse_mem0_filter({"color": ["red", "blue"]})
    assert info.value.field == "color"
    assert "in" in str(info.value)


@pytest.mark.parametrize("data", [[{"a": 1}], "a=1", 3, None, True])
def test_non_object_filter_is_refused(data: Any) -> None:
    with pytest.raises(InvalidFilter):
        parse_mem0_filter(data)


def test_non_object_inside_a_logical_list_is_refused() -> None:
    with pytest.raises(InvalidFilter):
        parse_mem0_filter({"AND": [{"a": 1}, "b"]})


def test_empty_operator_object_is_refused() -> None:
    with pytest.raises(InvalidFilter):
        parse_mem0_filter({"color": {}})


def nested(depth: int) -> dict[str, Any]:
    data: dict[str, Any] = {"a": 1}
    for _ in range(depth):
        data = {"AND": [data]}
    return data


def test_nesting_up_to_max_depth_is_accepted() -> None:
    assert matches(nested(MAX_FILTER_DEPTH), {"a": 1})


def test_nesting_deeper_than_max_depth_is_refused() -> None:
    with pytest.raises(InvalidFilter):
        parse_mem0_filter(nested(MAX_FILTER_DEPTH + 1))
    with pytest.raises(InvalidFilter):
        parse_mem0_filter(nested(MAX_FILTER_DEPTH * 10))


def test_deep_not_nesting_is_refused() -> None:
    data: dict[str, Any] = {"a": 1}
    for _ in range(MAX_FILTER_DEPTH + 1):
        data = {"NOT": data}
    with pytest.raises(InvalidFilter):
        parse_mem0_filter(data)


def test_a_filter_tree_built_in_python_meets_the_same_bounds() -> None:
    tree: Any = Comparison("a", "eq", 1)
    for _ in range(MAX_FILTER_DEPTH * 40):  # deeper than Python's recursion limit: still measured
        tree = Not(tree)
    with pytest.raises(InvalidFilter, match="deeper") as caught:
        coerce_filter(tree)
    assert caught.value.field == "filter"


def test_more_conditions_than_the_bound_are_refused_before_any_backend_work() -> None:
    fine = {"AND": [{"rating": {"gt": n}} for n in range(MAX_FILTER_CONDITIONS)]}
    assert coerce_filter(fine) is not None
    for too_many in ({"AND": [{"rating": {"gt": n}} for n in range(MAX_FILTER_CONDITIONS + 1)]},
                     {"kind": {"in": [str(n) for n in range(MAX_FILTER_CONDITIONS + 1)]}}):
        with pytest.raises(InvalidFilter, match="conditions") as caught:
            coerce_filter(too_many)
        assert caught.value.field == "filter"


@pytest.mark.parametrize(("flt", "field"), [
    ({"rating": float("nan")}, "rating"),
    ({"rating": {"ne": float("inf")}}, "rating"),
    ({"rating": {"in": [1, float("-inf")]}}, "rating"),
    ({"rating": {"lt": float("nan")}}, "rating"),
    ({"kind": "a\x00b"}, "kind"),
    ({"kind": {"in": ["ok", "half \ud800"]}}, "kind"),
    ({"bad\x00field": 1}, "filter"),
    ({"owner": {"eq": {"name": float("nan")}}}, "owner"),
])
def test_operands_no_store_can_compare_are_refused_as_bad_filters(flt: Any, field: str) -> None:
    """NaN, infinities, NUL and lone surrogates were answered as an outage (503) by pgvector and Chroma,
    and `lt NaN` matched on pgvector but nothing in the reference: now a typed refusal naming the field."""
    with pytest.raises(InvalidFilter) as caught:
        coerce_filter(flt)
    assert caught.value.field == field


# -- scope fields ----------------------------------------------------------------------------------------


def test_scope_fields_are_read_from_the_record_scope() -> None:
    assert matches({"user_id": "u1"}, {}, user_id="u1", agent_id="a1")
    assert matches({"agent_id": "a1"}, {}, user_id="u1", agent_id="a1")
    assert matches({"agent_id": {"in": ["a0", "a1"]}}, {}, user_id="u1", agent_id="a1")
    assert not matches({"run_id": "r1"}, {}, user_id="u1")
    assert matches({"run_id": {"exists": False}}, {}, user_id="u1")
    assert matches({"app_id": "*"}, {}, app_id="x")


def test_scope_field_is_not_read_from_metadata() -> None:
    rec = MemoryRecord(
        id="m", text="t", scope=Scope(agent_id="a1"), metadata={}, hash="h", created_at=NOW, updated_at=NOW,
    )
    # a record whose metadata was (improperly) given a user_id key is still judged by its scope
    rec.metadata["user_id"] = "u1"
    assert not evaluate(parse_mem0_filter({"user_id": "u1"}), rec)


# -- helpers ---------------------------------------------------------------------------------------------


def test_coerce_filter_accepts_trees_json_and_none() -> None:
    tree = Comparison("a", "eq", 1)
    assert coerce_filter(tree) is tree
    assert coerce_filter(None) is None
    assert coerce_filter({"a": 1}) == tree


def test_matches_all_keeps_order() -> None:
    records = [record({"n": n}).model_copy(update={"id": f"m{n}"}) for n in (3, 1, 2)]
    assert [r.id for r in matches_all(parse_mem0_filter({"n": {"gte": 2}}), records)] == ["m3", "m2"]
    assert len(matches_all(None, records)) == 3


def test_referenced_fields() -> None:
    expr = parse_mem0_filter({"AND": [{"a": 1}, {"OR": [{"b": 2}, {"NOT": {"c": "*"}}]}]})
    assert referenced_fields(expr) == {"a", "b", "c"}


def test_may_raise_spots_an_ordering_operator_at_any_depth() -> None:
    assert may_raise(parse_mem0_filter({"AND": [{"a": 1}, {"OR": [{"b": 2}, {"NOT": {"c": {"lt": 3}}}]}]}))
    assert not may_raise(parse_mem0_filter({"AND": [{"a": {"in": [1, 2]}}, {"NOT": {"b": {"contains": "x"}}}]}))


# -- properties ------------------------------------------------------------------------------------------

FIELDS = ["a", "b", "c", "user_id"]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.floats(-3, 3, allow_nan=False),
    st.sampled_from(["x", "y", "xy", "X"]),
)
values = st.one_of(scalars, st.lists(scalars, max_size=3))
metadata_st = st.dictionaries(st.sampled_from(["a", "b", "c"]), values, max_size=3)
field_st = st.sampled_from(FIELDS)


def leaf_st() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.builds(lambda f, v: Comparison(f, "eq", v), field_st, scalars),
        st.builds(lambda f, v: Comparison(f, "ne", v), field_st, scalars),
        st.builds(lambda f, v: Comparison(f, "in", tuple(v)), field_st, st.lists(scalars, max_size=3)),
        st.builds(lambda f, v: Comparison(f, "nin", tuple(v)), field_st, st.lists(scalars, max_size=3)),
        st.builds(
            lambda f, op, v: Comparison(f, op, v), field_st, st.sampled_from(["gt", "gte", "lt", "lte"]),
            st.integers(-3, 3),
        ),
        st.builds(lambda f, v: Comparison(f, "contains", v), field_st, st.sampled_from(["x", "y", 1])),
        st.builds(lambda f, v: Comparison(f, "icontains", v), field_st, st.sampled_from(["x", "Y"])),
        st.builds(Exists, field_st),
    )


filters_st = st.recursive(
    leaf_st(),
    lambda children: st.one_of(
        st.builds(lambda items: And(tuple(items)), st.lists(children, max_size=3)),
        st.builds(lambda items: Or(tuple(items)), st.lists(children, max_size=3)),
        st.builds(Not, children),
    ),
    max_leaves=8,
)
records_st = st.builds(
    lambda md, user: record(md, **({"user_id": user} if user else {"agent_id": "a"})),
    metadata_st, st.sampled_from([None, "x", "u1"]),
)


def safe_eval(expr: Any, rec: MemoryRecord) -> bool | None:
    try:
        return evaluate(expr, rec)
    except InvalidFilter:
        return None


@settings(max_examples=300, deadline=None)
@given(filters_st, st.lists(records_st, max_size=8))
def test_not_matches_exactly_the_complement(expr: Any, recs: list[MemoryRecord]) -> None:
    for rec in recs:
        positive = safe_eval(expr, rec)
        if positive is None:
            continue
        assert safe_eval(Not(expr), rec) is (not positive)


@settings(max_examples=300, deadline=None)
@given(st.lists(filters_st, max_size=4), records_st)
def test_and_or_agree_with_all_any(items: list[Any], rec: MemoryRecord) -> None:
    results = [safe_eval(item, rec) for item in items]
    if any(r is None for r in results):
        return
    assert evaluate(And(tuple(items)), rec) is all(results)
    assert evaluate(Or(tuple(items)), rec) is any(results)


@settings(max_examples=200, deadline=None)
@given(field_st, scalars, records_st)
def test_ne_is_not_eq_and_nin_is_not_in(field: str, value: Any, rec: MemoryRecord) -> None:
    eq = evaluate(Comparison(field, "eq", value), rec)
    assert evaluate(Comparison(field, "ne", value), rec) is (not eq)
    assert evaluate(Comparison(field, "in", (value,)), rec) is eq
    assert evaluate(Comparison(field, "nin", (value,)), rec) is (not eq)
