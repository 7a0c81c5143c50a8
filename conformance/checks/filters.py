"""filters: the backend answers every filter exactly as the reference evaluator does."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from memdock.capabilities import Capability
from memdock.conformance.context import CheckContext
from memdock.conformance.registry import check
from memdock.errors import InvalidFilter
from memdock.filters import evaluate, parse_mem0_filter

DATASET: list[tuple[str, dict[str, Any]]] = [
    ("green tea every morning", {"kind": "drink", "rating": 5, "tags": ["tea", "green"], "vegan": True}),
    ("black coffee after lunch", {"kind": "drink", "rating": 3.5, "tags": ["coffee"], "vegan": False}),
    ("drives a red hatchback", {"kind": "car", "rating": 2, "owner": {"name": "Ana"}}),
    ("plays chess on Sundays", {"kind": "hobby", "rating": 4, "note": None}),
    ("Reads Science Fiction", {"kind": "Hobby", "flag": 1, "nums": [1, True]}),
    ("has no metadata", {}),
    ("Dotted And Cased", {"a.b": 1, "a": {"b": 2}, "kind": "Drink", "tags": ["Green tea", "TEA"], "rating": True,
                          "caf\u00e9": "nfc", "note": "Mixed Case Note"}),
]


def _agree(ctx: CheckContext, flt: dict[str, Any]) -> None:
    for text, metadata in DATASET:
        ctx.memory.add(text, user_id=ctx.user, metadata=metadata)
    records = ctx.memory.list(user_id=ctx.user, limit=100).items
    try:
        expected = sorted(r.text for r in records if evaluate(parse_mem0_filter(flt), r))
    except InvalidFilter:
        _raises(ctx, flt)
        return
    listed = sorted(r.text for r in ctx.memory.list(user_id=ctx.user, filter=flt, limit=100).items)
    assert listed == expected, f"list {flt}: got {listed}, reference says {expected}"
    counted = ctx.memory.count(user_id=ctx.user, filter=flt)
    assert counted == len(expected), f"count {flt}: got {counted}, reference says {len(expected)}"
    for mode in ctx.search_modes():
        found = sorted(h.record.text for h in ctx.memory.search("tea", user_id=ctx.user, filter=flt, limit=100,
                                                                  mode=mode))
        if mode == "keyword":  # only the matching texts holding the word
            assert set(found) <= set(expected), f"keyword search {flt}: got {found}, reference allows {expected}"
        else:
            assert found == expected, f"{mode} search {flt}: got {found}, reference says {expected}"


def _raises(ctx: CheckContext, flt: dict[str, Any]) -> None:
    """The reference raises InvalidFilter on `flt` over the dataset: list, count and search must too."""
    calls: dict[str, Callable[[], object]] = {
        "list": lambda: ctx.memory.list(user_id=ctx.user, filter=flt),
        "count": lambda: ctx.memory.count(user_id=ctx.user, filter=flt),
        **{f"{mode} search": functools.partial(ctx.memory.search, "tea", user_id=ctx.user, filter=flt, mode=mode)
           for mode in ctx.search_modes()},
    }
    for name, call in calls.items():
        try:
            call()
        except InvalidFilter:
            continue
        raise AssertionError(f"{name} {flt}: expected InvalidFilter, as the reference evaluator raises")


def _make(name: str, flt: dict[str, Any], requires: Capability, doc: str) -> None:
    def run(ctx: CheckContext) -> None:
        _agree(ctx, flt)

    run.__name__ = f"check_{name}"
    run.__doc__ = (
        f"{doc} Filter: {flt}.\n\nTroubleshooting: compare your filter compiler with "
        "`memdock.filters.evaluate`; evaluate what you cannot express exactly on a superset of candidates."
    )
    check("filters", requires=requires)(run)


EQ = Capability.FILTER_EQUALITY
CASES: list[tuple[str, dict[str, Any], Capability, str]] = [
    ("eq_string", {"kind": "drink"}, EQ, "eq matches equal strings only (case-sensitive)."),
    ("eq_number_int_equals_float", {"rating": 5.0}, EQ, "eq on numbers: 5 equals 5.0."),
    ("eq_bool_is_not_number", {"flag": True}, EQ, "eq True does not match the number 1."),
    ("ne_list_bool_is_not_number", {"nums": {"ne": [1, 1]}}, EQ,
     "inside lists too, True is not 1: [1, True] differs from [1, 1] (equality is JSON's)."),
    ("eq_null", {"note": None}, EQ, "eq null matches a stored null, not a missing field."),
    ("eq_object", {"owner": {"eq": {"name": "Ana"}}}, EQ, "eq on an object compares deeply."),
    ("ne_matches_missing_fields", {"kind": {"ne": "drink"}}, EQ, "ne includes records lacking the field."),
    ("in_list", {"kind": {"in": ["car", "hobby"]}}, EQ, "in matches any listed value."),
    ("nin_matches_missing_fields", {"rating": {"nin": [5, 2]}}, EQ, "nin includes records lacking the field."),
    ("exists", {"owner": "*"}, EQ, "'*' matches records having the field."),
    ("exists_with_null_value", {"note": "*"}, EQ, "'*' matches a field whose value is null."),
    ("and", {"AND": [{"kind": "drink"}, {"vegan": True}]}, EQ, "AND needs every item."),
    ("or", {"OR": [{"kind": "car"}, {"flag": 1}]}, EQ, "OR needs one item."),
    ("not", {"NOT": {"kind": "drink"}}, EQ, "NOT complements, including records lacking the field."),
    ("implicit_and", {"kind": "drink", "vegan": False}, EQ, "several keys in one object are AND-ed."),
    ("gt", {"rating": {"gt": 3.5}}, Capability.FILTER_RANGE, "gt is strict."),
    ("gte", {"rating": {"gte": 3.5}}, Capability.FILTER_RANGE, "gte includes the bound."),
    ("lt_lte_range", {"rating": {"gt": 2, "lte": 4}}, Capability.FILTER_RANGE, "two bounds in one object."),
    ("contains_list", {"tags": {"contains": "tea"}}, Capability.CONTAINS, "contains finds a list element."),
    ("contains_string", {"kind": {"contains": "ink"}}, Capability.CONTAINS, "contains finds a substring."),
    ("icontains", {"kind": {"icontains": "HOB"}}, Capability.CONTAINS, "icontains ignores case."),
    ("startswith", {"kind": {"startswith": "dr"}}, Capability.CONTAINS, "startswith is a case-sensitive prefix."),
    ("endswith", {"kind": {"endswith": "by"}}, Capability.CONTAINS,
     "endswith is a case-sensitive suffix that ignores non-string values."),
    ("eq_empty_list_or_missing", {"OR": [{"tags": {"eq": []}}, {"NOT": {"tags": "*"}}]}, EQ,
     "eq [] matches only an empty list; NOT exists matches records lacking the field."),
    ("dotted_field_is_a_top_level_key", {"a.b": 1}, EQ,
     "a dotted field names the top-level key 'a.b', not the path a -> b."),
    ("dotted_field_ne", {"a.b": {"ne": 2}}, EQ, "ne on a dotted key: the nested a.b = 2 is not that key."),
    ("eq_is_case_sensitive_on_values", {"kind": {"in": ["drink"]}}, EQ, "in compares strings case-sensitively."),
    ("startswith_case_variant", {"kind": {"startswith": "Dr"}}, Capability.CONTAINS,
     "startswith is case-sensitive: 'Dr' matches 'Drink' only."),
    ("icontains_case_variant", {"note": {"icontains": "mixed CASE"}}, Capability.CONTAINS,
     "icontains folds case on both sides."),
    ("contains_case_variant", {"kind": {"contains": "Dri"}}, Capability.CONTAINS,
     "contains on a string is case-sensitive."),
    ("contains_list_element_not_substring", {"tags": {"contains": "Green"}}, Capability.CONTAINS,
     "contains on a list matches a whole element, not a substring inside one."),
    ("endswith_on_list_values", {"tags": {"endswith": "tea"}}, Capability.CONTAINS,
     "endswith matches string values only, not list elements."),
    ("bool_is_not_ordered_like_a_number", {"rating": {"gte": 1}}, Capability.FILTER_RANGE,
     "gte on a field holding true raises InvalidFilter (booleans are not numbers)."),
    ("or_raises_when_a_later_branch_raises", {"OR": [{"kind": "car"}, {"kind": {"gt": 1}}]}, Capability.FILTER_RANGE,
     "OR whose later branch compares a string with gt raises for records the first branch rejects."),
    ("nfc_key_is_not_nfd", {"cafe\u0301": "*"}, EQ, "keys are compared as given: an NFD key does not name an NFC one."),
]
for _name, _flt, _cap, _doc in CASES:
    _make(_name, _flt, _cap, _doc)


@check("filters", requires=Capability.FILTER_RANGE)
def check_ordering_on_a_stored_string_raises(ctx: CheckContext) -> None:
    """gt against a field holding a string raises InvalidFilter, as the reference evaluator does.

    Troubleshooting: evaluate ordering operators where you can see the stored type, or evaluate them
    client-side with `memdock.filters.evaluate`.
    """
    ctx.memory.add("typed", user_id=ctx.user, metadata={"kind": "drink"})
    try:
        ctx.memory.list(user_id=ctx.user, filter={"kind": {"gt": 1}})
    except InvalidFilter:
        return
    raise AssertionError("expected InvalidFilter")


@check("filters", requires=Capability.FILTER_RANGE)
def check_a_raise_follows_the_evaluation_order(ctx: CheckContext) -> None:
    """AND is evaluated left to right and stops at the first false item, raises included: with a stored
    string under `rating`, `rating > 1 AND kind = car` raises InvalidFilter (the string is compared before
    `kind` rules its record out) in list, count and search, while `kind = car AND rating > 1` finds the car.

    Troubleshooting: narrowing candidates by a condition that comes after an ordering operator hides the
    raise; push down only the items before it (`memdock.filters.may_raise`), or compile the raise itself.
    """
    ctx.memory.add("rated in words", user_id=ctx.user, metadata={"kind": "drink", "rating": "high"})
    ctx.memory.add("rated in numbers", user_id=ctx.user, metadata={"kind": "car", "rating": 2})
    raising = {"AND": [{"rating": {"gt": 1}}, {"kind": "car"}]}
    calls: dict[str, Callable[[], object]] = {
        "list": lambda: ctx.memory.list(user_id=ctx.user, filter=raising),
        "count": lambda: ctx.memory.count(user_id=ctx.user, filter=raising),
        "search": lambda: ctx.memory.search("rated", user_id=ctx.user, filter=raising),
    }
    for name, call in calls.items():
        try:
            call()
        except InvalidFilter:
            continue
        raise AssertionError(f"{name} {raising}: expected InvalidFilter (the reference raises on 'rated in words')")
    safe = {"AND": [{"kind": "car"}, {"rating": {"gt": 1}}]}
    listed = [r.text for r in ctx.memory.list(user_id=ctx.user, filter=safe).items]
    assert listed == ["rated in numbers"], f"list {safe}: got {listed}"


@check("filters")
def check_unknown_operator_is_refused_by_name(ctx: CheckContext) -> None:
    """An unknown operator raises InvalidFilter naming it, before the backend is asked.

    Troubleshooting: parse filters with `memdock.filters.parse_mem0_filter`; do not accept unknown keys.
    """
    try:
        ctx.memory.search("x", user_id=ctx.user, filter={"rating": {"near": 3}})
    except InvalidFilter as exc:
        assert "near" in str(exc), str(exc)
        return
    raise AssertionError("expected InvalidFilter")
