"""The filter language: a typed expression tree, a parser for mem0-style JSON, and the ONE reference
evaluator whose behaviour every backend must reproduce.

Semantics (the contract):
- A field is a scope id (`user_id`, `agent_id`, `run_id`, `app_id`) or a top-level metadata key.
- `eq`/`in`/`gt`/`gte`/`lt`/`lte`/`contains`/`icontains` never match a record lacking the field;
  `ne`/`nin` DO match a record lacking the field; `exists` (`"*"` in mem0 JSON) matches a present field.
- Booleans are not numbers: `True` does not equal `1`, also inside lists and objects (equality is JSON's).
- Ordering operators take a number operand (else `InvalidFilter` at parse time) and raise
  `InvalidFilter` when a record's value for the field is present but not a number.
- `in`/`nin` need a list operand. `contains` matches a substring of a string value or an element of a
  list value; `icontains` is the case-insensitive substring match on strings; `startswith`/`endswith`
  (memdock extensions, needed by Dify's "start with"/"end with") take a string and match string values
  with that prefix/suffix, case-sensitively.
- Unknown operators raise `InvalidFilter` naming the operator.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from memdock.errors import InvalidFilter
from memdock.models import SCOPE_FIELDS, MemoryRecord
from memdock.validation import MAX_INT, MIN_INT

ComparisonOp = Literal[
    "eq", "ne", "gt", "gte", "lt", "lte", "in", "nin", "contains", "icontains", "startswith", "endswith"
]
COMPARISON_OPS: tuple[str, ...] = (
    "eq", "ne", "gt", "gte", "lt", "lte", "in", "nin", "contains", "icontains", "startswith", "endswith"
)
STRING_OPS: frozenset[str] = frozenset({"icontains", "startswith", "endswith"})
"""Operators that take a string operand and match only string values."""
ORDERING_OPS: frozenset[str] = frozenset({"gt", "gte", "lt", "lte"})
MAX_FILTER_DEPTH = 32
MAX_FILTER_CONDITIONS = 128
"""The bounds every filter meets, whatever entry point it comes through and whichever backend runs it:
at most `MAX_FILTER_DEPTH` levels of AND/OR/NOT and `MAX_FILTER_CONDITIONS` comparisons (``in``/``nin``
count one per listed value). Checked before any backend work (`check_filter_bounds`)."""


@dataclass(frozen=True)
class Comparison:
    """`field <op> value`."""

    field: str
    op: ComparisonOp
    value: Any


@dataclass(frozen=True)
class Exists:
    """The field is present (any value, including null)."""

    field: str


@dataclass(frozen=True)
class And:
    """Every item matches (an empty And matches everything)."""

    items: tuple[Filter, ...]


@dataclass(frozen=True)
class Or:
    """At least one item matches (an empty Or matches nothing)."""

    items: tuple[Filter, ...]


@dataclass(frozen=True)
class Not:
    """The item does not match."""

    item: Filter


Filter = Comparison | Exists | And | Or | Not


def is_number(value: Any) -> bool:
    """True for int and float, False for bool (booleans are not numbers in filters)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def values_equal(left: Any, right: Any) -> bool:
    """Equality as filters see it: JSON equality. Like ==, but a bool equals only a bool at any depth
    (``[True]`` does not equal ``[1]``, nor ``{"a": True}`` ``{"a": 1}``), and a list equals a tuple with
    equal items (both are JSON arrays)."""
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if isinstance(left, list | tuple) and isinstance(right, list | tuple):
        return len(left) == len(right) and all(values_equal(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        return left.keys() == right.keys() and all(values_equal(left[key], right[key]) for key in left)
    return bool(left == right)


def comparison(field: str, op: str, value: Any) -> Comparison:
    """Build a validated `Comparison`; raises `InvalidFilter` for an unknown op or a bad operand."""
    if not isinstance(field, str) or not field:
        raise InvalidFilter("a filter field must be a non-empty string", field="filter")
    _check_operand(field, "filter", 0)
    if op not in COMPARISON_OPS:
        raise InvalidFilter(f"unknown operator {op!r} (known: {', '.join(COMPARISON_OPS)}, *)", field=field)
    if op in ORDERING_OPS and not is_number(value):
        raise InvalidFilter(f"operator {op!r} needs a number, got {type(value).__name__}", field=field)
    if op in ("in", "nin") and not isinstance(value, list | tuple):
        raise InvalidFilter(f"operator {op!r} needs a list, got {type(value).__name__}", field=field)
    if (op in STRING_OPS and not isinstance(value, str)) or (op == "contains" and value is None):
        raise InvalidFilter(f"operator {op!r} needs a string, got {type(value).__name__}", field=field)
    if op in ("in", "nin"):
        value = tuple(value)
    _check_operand(value, field, 0)
    return Comparison(field, op, value)  # type: ignore[arg-type]


def _check_operand(value: Any, field: str, depth: int) -> None:
    """Operands are JSON any store can compare: finite numbers, integers within 64 bits (as in metadata),
    strings without NUL or lone surrogates, nesting within `MAX_FILTER_DEPTH`."""
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidFilter("numbers in filters must be finite (no NaN or infinity)", field=field)
    if isinstance(value, int) and not isinstance(value, bool) and not MIN_INT <= value <= MAX_INT:
        raise InvalidFilter("integers in filters must fit in 64 bits (-2**63 .. 2**63 - 1)", field=field)
    if isinstance(value, str):
        if "\x00" in value or any("\ud800" <= c <= "\udfff" for c in value):
            raise InvalidFilter("strings in filters must not hold NUL characters or lone surrogates", field=field)
    elif isinstance(value, list | tuple | Mapping):
        if depth >= MAX_FILTER_DEPTH:
            raise InvalidFilter(f"a filter value nests deeper than {MAX_FILTER_DEPTH} levels", field=field)
        for item in value.values() if isinstance(value, Mapping) else value:
            _check_operand(item, field, depth + 1)
        if isinstance(value, Mapping):
            for key in value:
                _check_operand(key, field, depth + 1)


_LOGICAL_KEYS = {"AND": "and", "OR": "or", "NOT": "not", "and": "and", "or": "or", "not": "not"}


def parse_mem0_filter(data: Any) -> Filter:
    """Parse mem0-style JSON, e.g. ``{"AND": [{"user_id": "u1"}, {"rating": {"gte": 4}}]}``.

    A plain value means `eq`; ``"*"`` means exists; an operator object may hold several operators
    (all must hold); several keys in one object are AND-ed. Raises `InvalidFilter` on anything else.
    """
    return _parse(data, depth=0)


def _parse(data: Any, depth: int) -> Filter:
    if depth > MAX_FILTER_DEPTH:
        raise InvalidFilter(f"filter nests deeper than {MAX_FILTER_DEPTH} levels", field="filter")
    if not isinstance(data, Mapping):
        raise InvalidFilter(f"a filter must be a JSON object, got {type(data).__name__}", field="filter")
    parts: list[Filter] = []
    for key, value in data.items():
        logical = _LOGICAL_KEYS.get(key)
        if logical == "not":
            inner = [_parse(v, depth + 1) for v in value] if isinstance(value, list) else [_parse(value, depth + 1)]
            parts.append(Not(inner[0] if len(inner) == 1 else And(tuple(inner))))
        elif logical is not None:
            if not isinstance(value, list):
                raise InvalidFilter(f"{key} needs a list of filters", field=key)
            items = tuple(_parse(v, depth + 1) for v in value)
            parts.append(And(items) if logical == "and" else Or(items))
        else:
            parts.append(_parse_field(str(key), value))
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def _parse_field(field: str, spec: Any) -> Filter:
    if spec == "*":
        return Exists(field)
    if isinstance(spec, Mapping):
        if not spec:
            raise InvalidFilter("an operator object must not be empty", field=field)
        items: list[Filter] = []
        for op, operand in spec.items():
            if op == "*" or (op == "exists" and operand is True):
                items.append(Exists(field))
            elif op == "exists" and operand is False:
                items.append(Not(Exists(field)))
            else:
                items.append(comparison(field, str(op), operand))
        return items[0] if len(items) == 1 else And(tuple(items))
    if isinstance(spec, list):
        raise InvalidFilter("a list needs an operator: use {\"in\": [...]}", field=field)
    return comparison(field, "eq", spec)


_MISSING = object()


def field_value(record: MemoryRecord, field: str) -> Any:
    """The record's value for a filter field, or the private `_MISSING` marker when absent."""
    if field in SCOPE_FIELDS:
        value = getattr(record.scope, field)
        return _MISSING if value is None else value
    return record.metadata.get(field, _MISSING)


def evaluate(expr: Filter, record: MemoryRecord) -> bool:
    """The reference semantics: does `record` match `expr`? May raise `InvalidFilter` (see module doc)."""
    if isinstance(expr, And):
        return all(evaluate(item, record) for item in expr.items)
    if isinstance(expr, Or):
        return any(evaluate(item, record) for item in expr.items)
    if isinstance(expr, Not):
        return not evaluate(expr.item, record)
    if isinstance(expr, Exists):
        return field_value(record, expr.field) is not _MISSING
    return _compare(expr, field_value(record, expr.field))


def _compare(expr: Comparison, actual: Any) -> bool:
    op, operand = expr.op, expr.value
    if actual is _MISSING:
        return op in ("ne", "nin")
    if op == "eq":
        return values_equal(actual, operand)
    if op == "ne":
        return not values_equal(actual, operand)
    if op == "in":
        return any(values_equal(actual, item) for item in operand)
    if op == "nin":
        return not any(values_equal(actual, item) for item in operand)
    if op in ORDERING_OPS:
        if not is_number(actual):
            raise InvalidFilter(
                f"operator {op!r} compares numbers but the stored value is {type(actual).__name__}",
                field=expr.field,
            )
        return bool(
            {"gt": actual > operand, "gte": actual >= operand, "lt": actual < operand, "lte": actual <= operand}[op]
        )
    if op == "icontains":
        return isinstance(actual, str) and operand.casefold() in actual.casefold()
    if op == "startswith":
        return isinstance(actual, str) and actual.startswith(operand)
    if op == "endswith":
        return isinstance(actual, str) and actual.endswith(operand)
    # contains
    if isinstance(actual, str):
        return isinstance(operand, str) and operand in actual
    if isinstance(actual, list):
        return any(values_equal(item, operand) for item in actual)
    return False


def matches_all(expr: Filter | None, records: Sequence[MemoryRecord]) -> list[MemoryRecord]:
    """The records that match `expr` (all of them when `expr` is None), in their given order."""
    if expr is None:
        return list(records)
    return [record for record in records if evaluate(expr, record)]


def parse_filter_text(text: str, field: str = "filter") -> Any:
    """JSON text holding a filter (a query parameter, a command-line option), parsed but not yet checked;
    `InvalidFilter` naming `field` when it is not JSON or nests too deeply for the parser (Python's decoder
    recurses: about 1,000 levels raise `RecursionError`, refused here as the filter bound it is)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise InvalidFilter(f"filter nests deeper than {MAX_FILTER_DEPTH} levels", field=field) from None
    except ValueError as exc:
        raise InvalidFilter(f"not valid JSON: {exc}", field=field) from None


def coerce_filter(value: Filter | Mapping[str, Any] | None) -> Filter | None:
    """Accept a `Filter`, mem0-style JSON (a mapping), or None; either way within the bounds
    (`check_filter_bounds`)."""
    if value is None:
        return None
    expr = value if isinstance(value, Comparison | Exists | And | Or | Not) else parse_mem0_filter(value)
    check_filter_bounds(expr)
    return expr


def check_filter_bounds(expr: Filter) -> None:
    """`InvalidFilter` (field ``filter``) for a tree deeper than `MAX_FILTER_DEPTH` or with more than
    `MAX_FILTER_CONDITIONS` conditions. Iterative, so no tree is too deep to be measured."""
    conditions, stack = 0, [(expr, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_FILTER_DEPTH:
            raise InvalidFilter(f"filter nests deeper than {MAX_FILTER_DEPTH} levels", field="filter")
        if isinstance(node, And | Or):
            stack.extend((item, depth + 1) for item in node.items)
        elif isinstance(node, Not):
            stack.append((node.item, depth + 1))
        elif isinstance(node, Comparison) and node.op in ("in", "nin"):
            conditions += max(1, len(node.value))  # in/nin hold a tuple
        else:
            conditions += 1
        if conditions > MAX_FILTER_CONDITIONS:
            raise InvalidFilter(f"filter holds more than {MAX_FILTER_CONDITIONS} conditions", field="filter")


def referenced_fields(expr: Filter) -> set[str]:
    """Every field a filter names (useful to backends deciding what they can push down)."""
    if isinstance(expr, And | Or):
        return set().union(*(referenced_fields(item) for item in expr.items)) if expr.items else set()
    if isinstance(expr, Not):
        return referenced_fields(expr.item)
    return {expr.field}


def may_raise(expr: Filter) -> bool:
    """Could `evaluate(expr, record)` raise `InvalidFilter` for some record (does it hold an ordering
    operator)? A backend that narrows candidates before evaluating may push down an item of a top-level
    And only if no item before it may raise: `evaluate` goes left to right and stops at the first false
    item, so a record excluded earlier than the reference would exclude it must not hide a raise."""
    if isinstance(expr, And | Or):
        return any(may_raise(item) for item in expr.items)
    if isinstance(expr, Not):
        return may_raise(expr.item)
    return isinstance(expr, Comparison) and expr.op in ORDERING_OPS
