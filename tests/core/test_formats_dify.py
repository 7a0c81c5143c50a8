"""Dify's metadata conditions as `memdock.formats.dify` translates them: Dify's own knowledge-base semantics
record by record, the nulls Dify's models allow, the errors that remain, and the pushdown contract (a
`Filter` that never raises, exact or a necessary condition)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memdock.errors import InvalidInput
from memdock.filters import evaluate
from memdock.formats.dify import (
    KNOWN_OPERATORS,
    LESS_THAN_AS_DIFY_SPELLS_IT,
    Condition,
    DifyFilter,
    MetadataCondition,
    iso_seconds,
    stored_number,
    translate_metadata_condition,
)
from memdock.models import MemoryRecord, Scope

NOW = datetime(2026, 1, 1, tzinfo=UTC)
MISSING = object()
"""A stored value that is not there: the key is absent from the metadata."""


def record(value: Any, name: str = "f") -> MemoryRecord:
    metadata = {} if value is MISSING else {name: value}
    return MemoryRecord(id="m1", text="t", scope=Scope(user_id="u1"), metadata=metadata, hash="h",
                        created_at=NOW, updated_at=NOW)


def translated(op: str, value: Any, name: str | list[str] = "f", logical: str | None = "and") -> DifyFilter | None:
    return translate_metadata_condition(MetadataCondition.model_validate(
        {"logical_operator": logical, "conditions": [{"name": name, "comparison_operator": op, "value": value}]}))


def dify_matches(op: str, value: Any, stored: Any) -> bool:
    dify = translated(op, value)
    assert dify is not None
    return dify.matches(record(stored))


ISO_2025 = "2025-03-01T10:00:00Z"
SECONDS_2025 = 1740823200

CASES: list[tuple[str, Any, Any, bool]] = [
    # text operators: string values (and list elements for contains)
    ("contains", "ew", "news", True), ("contains", "x", ["x", "y"], True), ("contains", "ew", MISSING, False),
    ("not contains", "ew", "sports", True), ("not contains", "ew", "news", False),
    ("not contains", "ew", MISSING, False), ("not contains", "ew", None, False),
    ("start with", "ne", "news", True), ("start with", "ne", "anew", False),
    ("end with", "ws", "news", True), ("end with", "ws", 5, False),
    # is / is not with text: compares as text, so numbers and booleans spelled that way match
    ("is", "news", "news", True), ("is", "news", "News", False), ("is", "4", 4, True), ("is", "4", "4", True),
    ("is", "4.5", 4.5, True), ("is", "4", 5, False), ("is", "true", True, True), ("is", "news", MISSING, False),
    ("is not", "news", "sports", True), ("is not", "news", "news", False), ("is not", "4", 4, False),
    ("is not", "news", MISSING, False), ("is not", "news", None, False), ("is not", "news", 3, True),
    # empty: the key is missing; not empty: the key is present, whatever its value
    ("empty", None, MISSING, True), ("empty", None, "", False), ("empty", None, None, False),
    ("empty", None, [], False), ("not empty", None, "", True), ("not empty", None, None, True),
    ("not empty", None, MISSING, False),
    # in / not in: lists or comma-separated text, compared as text
    ("in", ["news", "sports"], "sports", True), ("in", "news, sports", "sports", True),
    ("in", ["4", "5"], 4, True), ("in", [4, 5], "4", True), ("in", ["news"], MISSING, False),
    ("in", [], "news", False), ("not in", [], MISSING, True),
    ("not in", ["news"], "sports", True), ("not in", ["news"], "news", False),
    ("not in", ["news"], MISSING, False), ("not in", ["news"], None, False),
    # = and ≠ with numbers: stored numbers and the strings that spell them
    ("=", 4, 4, True), ("=", 4, 4.0, True), ("=", 4, "4", True), ("=", 4, "four", False), ("=", 4, True, False),
    ("=", "4", 4, True), ("=", "news", "news", True),
    ("≠", 4, 5, True), ("≠", 4, 4, False), ("≠", 4, "4", False), ("≠", 4, MISSING, False), ("≠", 4, None, False),
    ("!=", 4, 5, True),
    # ordering: numbers and numeric strings; anything else does not match (and never raises)
    (">", 3, 4, True), (">", 3, "4", True), (">", 3, 3, False), (">", 3, "high", False), (">", 3, True, False),
    (">", 3, [4], False), (">", 3, {"v": 4}, False), (">", 3, None, False), (">", 3, MISSING, False),
    (">", "3", 4, True), ("<", 3, 2, True), (LESS_THAN_AS_DIFY_SPELLS_IT, 3, 2, True), ("≥", 3, 3, True),
    (">=", 3, 3, True), ("≤", 3, 3, True), ("<=", 3, 4, False), (">", 3, "2025-03-01", False),
    # time: Unix seconds against epoch numbers, numeric strings and ISO-8601 text
    ("after", SECONDS_2025 - 1, ISO_2025, True), ("after", SECONDS_2025, ISO_2025, False),
    ("before", SECONDS_2025 + 1, ISO_2025, True), ("before", SECONDS_2025 + 1, SECONDS_2025, True),
    ("before", SECONDS_2025 + 1, str(SECONDS_2025), True), ("after", 0, "2025-03-01", True),
    ("after", SECONDS_2025, "2025-03-01T12:00:00+01:00", True), ("after", SECONDS_2025, "2025-03-01 10:30", True),
    ("after", 0, "soon", False), ("after", 0, True, False), ("after", 0, ["2025-03-01"], False),
    ("after", 0, MISSING, False), ("after", "2025-01-01T00:00:00Z", ISO_2025, True),
    ("is", SECONDS_2025, ISO_2025, True), ("is", SECONDS_2025, SECONDS_2025, True),
    ("is", SECONDS_2025, SECONDS_2025 + 1, False), ("is", SECONDS_2025, "later", False),
]


@pytest.mark.parametrize(("op", "value", "stored", "expected"), CASES,
                         ids=[f"{c[0]}-{c[1]!r}-{'missing' if c[2] is MISSING else repr(c[2])}" for c in CASES])
def test_difys_own_semantics(op: str, value: Any, stored: Any, expected: bool) -> None:
    assert dify_matches(op, value, stored) is expected


def test_a_condition_with_a_null_value_is_ignored_as_dify_ignores_it() -> None:
    assert translated("is", None) is None
    both = translate_metadata_condition(MetadataCondition.model_validate({"logical_operator": "or", "conditions": [
        {"name": "f", "comparison_operator": "is", "value": None},
        {"name": "f", "comparison_operator": "is", "value": "x"}]}))
    assert both is not None and both.matches(record("x")) and not both.matches(record("y"))


def test_nulls_for_logical_operator_and_conditions_take_difys_defaults() -> None:
    model = MetadataCondition.model_validate({"logical_operator": None, "conditions": None})
    assert (model.logical_operator, model.conditions) == ("and", [])
    assert translate_metadata_condition(model) is None
    assert translate_metadata_condition(None) is None
    assert MetadataCondition.model_validate({"logical_operator": "OR"}).logical_operator == "or"


def test_and_or_and_a_list_of_names() -> None:
    two = [{"name": "a", "comparison_operator": "is", "value": "x"},
           {"name": "b", "comparison_operator": ">", "value": 1}]
    both = translate_metadata_condition(MetadataCondition.model_validate({"logical_operator": "and",
                                                                          "conditions": two}))
    either = translate_metadata_condition(MetadataCondition.model_validate({"logical_operator": "or",
                                                                            "conditions": two}))
    assert both is not None and either is not None
    only_a = MemoryRecord(id="m", text="t", scope=Scope(user_id="u"), metadata={"a": "x", "b": 0}, hash="h",
                          created_at=NOW, updated_at=NOW)
    assert not both.matches(only_a) and either.matches(only_a)
    any_name = translated("is", "x", name=["a", "c"])
    assert any_name is not None and any_name.matches(record("x", name="c")) and not any_name.matches(record("x", "d"))


def test_exact_translations_and_the_ones_checked_in_python() -> None:
    exact = translated("is not", "x")
    assert exact is not None and exact.exact
    for op, value in ((">", 1), ("before", 1), ("is", 1)):
        checked = translated(op, value)
        assert checked is not None and not checked.exact, op


@pytest.mark.parametrize(("op", "value", "message"), [
    ("~", 1, "unknown comparison_operator"),
    (">", "high", "needs a number"),
    (">", True, "needs a number"),
    ("=", [1], "not a list"),
    ("before", "someday", "Unix seconds or an ISO-8601 time"),
    ("contains", ["a"], "needs a string"),
    ("<", float("inf"), "finite"),
])
def test_what_cannot_be_read_is_invalid_input_naming_the_condition(op: str, value: Any, message: str) -> None:
    second = {"logical_operator": "and", "conditions": [{"name": "ok", "comparison_operator": "empty"},
                                                         {"name": "f", "comparison_operator": op, "value": value}]}
    with pytest.raises(InvalidInput, match=message) as caught:
        translate_metadata_condition(MetadataCondition.model_validate(second))
    assert caught.value.field == "metadata_condition.conditions[1]"


def test_stored_numbers_and_iso_times() -> None:
    assert stored_number(4) == 4.0 and stored_number(" 4.5 ") == 4.5 and stored_number(True) is None
    assert stored_number("nan") is None and stored_number(float("inf")) is None and stored_number([1]) is None
    assert stored_number(ISO_2025) is None and stored_number(ISO_2025, as_time=True) == SECONDS_2025
    assert iso_seconds("2025-03-01") == SECONDS_2025 - 36000 and iso_seconds("") is None
    assert iso_seconds("soon") is None and iso_seconds("2025-13-01") is None


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(-5, 5, allow_nan=False) |
    st.sampled_from(["", "4", "4.0", "-2", "news", "true", "2025-03-01", ISO_2025, "1740823200", "a,b"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["f", "g"]), inner, max_size=2),
    max_leaves=4,
)
CONDITION_VALUES = (st.none() | st.integers(-5, 5) | st.sampled_from([4.5, SECONDS_2025]) |
                    st.sampled_from(["4", "news", "true", "a, b", ISO_2025]) |
                    st.lists(st.sampled_from(["4", "news", 4, 2.5]), max_size=3))


@settings(max_examples=400, deadline=None)
@given(op=st.sampled_from(KNOWN_OPERATORS), value=CONDITION_VALUES, stored=JSON_VALUES | st.just(MISSING))
def test_the_pushdown_never_raises_and_is_exact_or_necessary(op: str, value: Any, stored: Any) -> None:
    try:
        dify = translate_metadata_condition(MetadataCondition(conditions=[
            Condition(name="f", comparison_operator=op, value=value)]))
    except InvalidInput:
        return
    if dify is None:
        assert value is None
        return
    row = record(stored)
    pushed = evaluate(dify.pushdown, row)
    answer = dify.matches(row)
    assert pushed == answer if dify.exact else (pushed or not answer)
