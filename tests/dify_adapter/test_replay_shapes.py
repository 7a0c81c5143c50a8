"""The body-shape comparison the replay tests use (test_replay_mem0ai_api.py, test_replay_mem0_server.py),
and the on-purpose-difference record they share, with tests that the comparison catches what it must.

Two JSON bodies have the same shape when they have the same kinds of values (object, array, string, int,
float, bool, null) at the same places, objects the same keys and arrays the same length, recursively; the
values themselves (ids, texts, times, scores) are not compared. `extensions` names keys memdock may ADD to
an object (never keys it may leave out).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest


def kind(value: Any) -> str:
    """The JSON kind of a decoded value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    for python, name in ((int, "int"), (float, "float"), (str, "string"), (list, "array"), (dict, "object")):
        if isinstance(value, python):
            return name
    raise TypeError(f"not a JSON value: {value!r}")


def shape_differences(recorded: Any, actual: Any, extensions: Iterable[str] = (), path: str = "$") -> list[str]:
    """Where `actual` differs in shape from `recorded` (empty when the shapes agree), one line per place."""
    allowed = frozenset(extensions)
    if kind(recorded) != kind(actual):
        return [f"{path}: {kind(recorded)} recorded, {kind(actual)} answered"]
    if isinstance(recorded, dict):
        found = [f"{path}: key {key!r} missing" for key in sorted(recorded.keys() - actual.keys())]
        found += [f"{path}: key {key!r} added" for key in sorted(actual.keys() - recorded.keys() - allowed)]
        for key in sorted(recorded.keys() & actual.keys()):
            found += shape_differences(recorded[key], actual[key], allowed, f"{path}.{key}")
        return found
    if isinstance(recorded, list):
        if len(recorded) != len(actual):
            return [f"{path}: {len(recorded)} elements recorded, {len(actual)} answered"]
        return [line for n, (r, a) in enumerate(zip(recorded, actual, strict=True))
                for line in shape_differences(r, a, allowed, f"{path}[{n}]")]
    return []


@dataclass(frozen=True)
class Difference:
    """An exchange where memdock answers differently from the real service ON PURPOSE (docs/server.md lists
    each with its reason). With `status`, memdock's answer has that status and satisfies `answer` instead of
    the recorded shape; with only `extra_keys`, the recorded shape holds except that memdock adds those keys."""

    reason: str
    status: int | None = None
    answer: Callable[[Any], bool] = lambda body: True
    extra_keys: frozenset[str] = field(default_factory=frozenset)


def assert_replayed(label: str, recorded_status: int, recorded_body: Any, status: int, body: Any,
                    difference: Difference | None, extensions: Iterable[str] = ()) -> None:
    """memdock's answer (`status`, `body`) to the exchange `label`: the recorded status and body shape, or,
    for a listed `difference`, what the difference says memdock answers instead."""
    if difference is not None and difference.status is not None:
        assert status == difference.status, (label, difference.reason, status, body)
        assert difference.answer(body), (label, difference.reason, body)
        return
    assert status == recorded_status, (label, recorded_status, status, body)
    keys = {*extensions, *(difference.extra_keys if difference else ())}
    assert shape_differences(recorded_body, body, keys) == [], (label, body)


# -- the comparison itself ---------------------------------------------------------------------------------


def test_same_shape_ignores_values_but_not_kinds() -> None:
    recorded = {"code": 0, "data": [{"id": "<id>", "score": 0.47, "metadata": {"created_at": 1796115016}}]}
    assert shape_differences(recorded, {"code": 0, "data": [{"id": "x", "score": 0.9,
                                                              "metadata": {"created_at": 1}}]}) == []
    assert shape_differences(recorded, {"code": 0, "data": {"results": []}}) == [
        "$.data: array recorded, object answered"]
    assert shape_differences({"created_at": 1796115016}, {"created_at": "2026-01-01T00:00:00"}) == [
        "$.created_at: int recorded, string answered"]
    assert shape_differences({"is_deleted": 0}, {"is_deleted": False}) == ["$.is_deleted: int recorded, bool answered"]
    assert shape_differences({"data": None}, {"data": []}) == ["$.data: null recorded, array answered"]


@pytest.mark.parametrize(("actual", "expected"), [
    ({"id": "a"}, ["$: key 'text' missing"]),
    ({"id": "a", "text": "t", "memory": "t"}, ["$: key 'memory' added"]),
    ([], None),
])
def test_missing_and_added_keys_and_lengths_are_differences(actual: Any, expected: list[str] | None) -> None:
    if expected is None:
        assert shape_differences([{"id": "a", "text": "t"}], actual) == ["$: 1 elements recorded, 0 answered"]
    else:
        assert shape_differences({"id": "a", "text": "t"}, actual) == expected


def test_extensions_may_be_added_never_left_out() -> None:
    assert shape_differences({"id": "a"}, {"id": "a", "expires_at": "x"}, {"expires_at"}) == []
    assert shape_differences({"id": "a", "expires_at": "x"}, {"id": "a"}, {"expires_at"}) == [
        "$: key 'expires_at' missing"]


def test_a_listed_difference_checks_what_memdock_answers_instead() -> None:
    refused = Difference("no unscoped store", status=422, answer=lambda body: body["code"] == 422)
    assert_replayed("store no scope", 200, {"code": 0, "data": []}, 422, {"code": 422}, refused)
    with pytest.raises(AssertionError):
        assert_replayed("store no scope", 200, {"code": 0, "data": []}, 200, {"code": 0, "data": []}, refused)
    with pytest.raises(AssertionError):
        assert_replayed("plain", 200, {"code": 0, "data": []}, 200, {"code": 0, "data": {"results": []}}, None)
