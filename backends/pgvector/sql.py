"""Compiling memdock filters into parameterised PostgreSQL, with the reference evaluator's semantics.

`compile_filter(expr)` returns two predicates over one row of a memdock table:

- ``matches``: true exactly when `memdock.filters.evaluate` returns True (never NULL);
- ``raises``: true exactly when `evaluate` would raise `InvalidFilter` on that row. That happens when an
  ordering operator meets a stored value that is present but not a number, and only if evaluation
  (left to right, short-circuiting in And/Or, as the reference does) reaches that comparison.

Scope ids are columns; any other field is a top-level key of the ``metadata`` jsonb column. Field names
and values only ever travel as parameters: nothing the caller sends is spliced into SQL text.

`needs_python(expr)` says when SQL cannot reproduce the reference exactly (``icontains`` uses Python's
``casefold``); the backend then evaluates the whole filter in Python over the scope.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from psycopg import sql
from psycopg.abc import AdaptContext
from psycopg.types.json import Jsonb

from memdock.filters import ORDERING_OPS, And, Comparison, Exists, Filter, Not, Or
from memdock.models import SCOPE_FIELDS

TRUE = sql.SQL("TRUE")
FALSE = sql.SQL("FALSE")
_COMPARE = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


@dataclass(frozen=True)
class Predicate:
    """A boolean SQL expression; `constant` is set when it is known to be always TRUE or FALSE."""

    sql: sql.Composable
    constant: bool | None = None


def const(value: bool) -> Predicate:
    """The constant predicate TRUE or FALSE."""
    return Predicate(TRUE if value else FALSE, value)


def p_and(*items: Predicate) -> Predicate:
    """Conjunction, folding constants."""
    return _join(items, "AND", absorbing=False)


def p_or(*items: Predicate) -> Predicate:
    """Disjunction, folding constants."""
    return _join(items, "OR", absorbing=True)


def _join(items: tuple[Predicate, ...], operator: str, *, absorbing: bool) -> Predicate:
    """`items` joined by AND (absorbing value FALSE) or OR (absorbing value TRUE)."""
    if any(i.constant is absorbing for i in items):
        return const(absorbing)
    rest = [i for i in items if i.constant is not (not absorbing)]
    if not rest:
        return const(not absorbing)
    if len(rest) == 1:
        return rest[0]
    return Predicate(sql.SQL("({})").format(sql.SQL(f" {operator} ").join(i.sql for i in rest)))


def p_not(item: Predicate) -> Predicate:
    """Negation (the operand must never be NULL)."""
    if item.constant is not None:
        return const(not item.constant)
    return Predicate(sql.SQL("(NOT {})").format(item.sql))


@dataclass(frozen=True)
class Compiled:
    """`matches` and `raises` predicates of one filter (see the module docstring)."""

    matches: Predicate
    raises: Predicate


def needs_python(expr: Filter) -> bool:
    """True when the filter holds an operator SQL cannot evaluate exactly like the reference."""
    if isinstance(expr, And | Or):
        return any(needs_python(item) for item in expr.items)
    if isinstance(expr, Not):
        return needs_python(expr.item)
    return isinstance(expr, Comparison) and expr.op == "icontains"


def compile_filter(expr: Filter) -> Compiled:
    """The `matches`/`raises` predicates of `expr` (call only when `needs_python(expr)` is False).

    The SQL grows linearly with the filter, whatever its nesting. A filter that cannot raise (no ordering
    operator) compiles to one boolean predicate. One that can compiles to a three-state value per row
    (`_state`: 0 false, 1 true, 2 raises), whose And/Or short-circuit left to right like the reference
    evaluator while naming each operand once."""
    if not _can_raise(expr):
        return Compiled(_matches(expr), const(False))
    state = _state(expr)
    return Compiled(Predicate(sql.SQL("({} = 1)").format(state)), Predicate(sql.SQL("({} = 2)").format(state)))


def _can_raise(expr: Filter) -> bool:
    """Whether evaluating `expr` may raise: it holds an ordering comparison."""
    if isinstance(expr, And | Or):
        return any(_can_raise(item) for item in expr.items)
    if isinstance(expr, Not):
        return _can_raise(expr.item)
    return isinstance(expr, Comparison) and expr.op in ORDERING_OPS


def _matches(expr: Filter) -> Predicate:
    """The predicate of a filter that cannot raise."""
    if isinstance(expr, Not):
        return p_not(_matches(expr.item))
    if isinstance(expr, And):
        return p_and(*(_matches(item) for item in expr.items))
    if isinstance(expr, Or):
        return p_or(*(_matches(item) for item in expr.items))
    if isinstance(expr, Exists):
        return _present(expr.field)
    return _comparison(expr).matches


def _state(expr: Filter) -> sql.Composable:
    """An integer per row: 0 when `expr` is false, 1 when true, 2 when evaluating it raises. And is the
    first operand state that is not 1 (else 1), Or the first that is not 0 (else 0): ``COALESCE`` of
    ``NULLIF``s, which evaluates each operand once and stops where the reference stops."""
    if isinstance(expr, And | Or):
        neutral = sql.SQL("1" if isinstance(expr, And) else "0")
        return sql.SQL("COALESCE({})").format(sql.SQL(", ").join(
            [*(sql.SQL("NULLIF({}, {})").format(_state(item), neutral) for item in expr.items), neutral]))
    if isinstance(expr, Not):
        return sql.SQL("(CASE {} WHEN 0 THEN 1 WHEN 1 THEN 0 ELSE 2 END)").format(_state(expr.item))
    if not _can_raise(expr):
        return sql.SQL("(CASE WHEN {} THEN 1 ELSE 0 END)").format(_matches(expr).sql)
    assert isinstance(expr, Comparison)
    compiled = _comparison(expr)
    return sql.SQL("(CASE WHEN {} THEN 2 WHEN {} THEN 1 ELSE 0 END)").format(compiled.raises.sql,
                                                                               compiled.matches.sql)


def _is_scope(field: str) -> bool:
    return field in SCOPE_FIELDS


def _column(field: str) -> sql.Composable:
    return sql.Identifier(field)


def _present(field: str) -> Predicate:
    if _is_scope(field):
        return Predicate(sql.SQL("({} IS NOT NULL)").format(_column(field)))
    return Predicate(_bind(sql.SQL("(metadata ? %s)"), field))


class Bound(sql.Composable):
    """An SQL fragment with its own parameters, kept together so fragments compose in any order."""

    def __init__(self, text: sql.Composable, params: list[Any]) -> None:
        super().__init__(text)
        self.text = text
        self.params = params

    def as_bytes(self, context: AdaptContext | None = None) -> bytes:
        return self.text.as_bytes(context)


def _bind(text: sql.Composable, *params: Any) -> sql.Composable:
    return Bound(text, list(params))


def params_of(fragment: sql.Composable) -> list[Any]:
    """Every parameter of a composed fragment, in the order its placeholders appear."""
    if isinstance(fragment, Bound):
        return list(fragment.params)
    if isinstance(fragment, sql.Composed):
        out: list[Any] = []
        for part in fragment:
            out.extend(params_of(part))
        return out
    return []


def _json(value: Any) -> Jsonb:
    return Jsonb(value, dumps=lambda v: json.dumps(v, ensure_ascii=False, allow_nan=False))


def _numeric(value: int | float) -> Decimal:
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def _comparison(expr: Comparison) -> Compiled:
    field, op, operand = expr.field, expr.op, expr.value
    if _is_scope(field):
        return _scope_comparison(field, op, operand)
    present = _present(field)
    value = _bind(sql.SQL("(metadata -> %s)"), field)
    text = _bind(sql.SQL("(metadata ->> %s)"), field)
    kind = _bind(sql.SQL("jsonb_typeof(metadata -> %s)"), field)

    def equal(item: Any) -> Predicate:
        return Predicate(sql.SQL("COALESCE({} = {}, FALSE)").format(value, _bind(sql.SQL("%s"), _json(item))))

    equality = _equality(op, operand, equal)
    if equality is not None:
        return equality
    if op in ORDERING_OPS:
        is_num = Predicate(sql.SQL("COALESCE({} = 'number', FALSE)").format(kind))
        compare = Predicate(sql.SQL("COALESCE(CASE WHEN {} = 'number' THEN ({})::numeric {} {} END, FALSE)").format(
            kind, text, sql.SQL(_COMPARE[op]), _bind(sql.SQL("%s::numeric"), _numeric(operand))))
        return Compiled(compare, p_and(present, p_not(is_num)))
    is_string = Predicate(sql.SQL("COALESCE({} = 'string', FALSE)").format(kind))
    if op == "contains":
        in_list = Predicate(sql.SQL(
            "COALESCE({} = 'array' AND EXISTS (SELECT 1 FROM jsonb_array_elements({}) AS element "
            "WHERE element = {}), FALSE)").format(kind, value, _bind(sql.SQL("%s"), _json(operand))))
        if not isinstance(operand, str):
            return Compiled(in_list, const(False))
        substring = p_and(is_string, Predicate(sql.SQL("COALESCE(strpos({}, {}) > 0, FALSE)").format(
            text, _bind(sql.SQL("%s"), operand))))
        return Compiled(p_or(substring, in_list), const(False))
    if op in ("startswith", "endswith"):
        return Compiled(p_and(is_string, _affix(text, op, operand)), const(False))
    raise ValueError(f"operator {op!r} is evaluated in Python")  # icontains: see needs_python


def _equality(op: str, operand: Any, equal: Callable[[Any], Predicate]) -> Compiled | None:
    """eq, ne, in and nin, given how one value is compared (`equal` is never NULL, so ne/nin also match
    records lacking the field); None for other operators."""
    if op in ("eq", "ne"):
        same = equal(operand)
        return Compiled(same if op == "eq" else p_not(same), const(False))
    if op in ("in", "nin"):
        any_equal = p_or(*(equal(item) for item in operand))
        return Compiled(any_equal if op == "in" else p_not(any_equal), const(False))
    return None


def _affix(text: sql.Composable, op: str, operand: str) -> Predicate:
    placeholder = _bind(sql.SQL("%s"), operand)
    length = _bind(sql.SQL("char_length(%s)"), operand)
    side = sql.SQL("left" if op == "startswith" else "right")
    return Predicate(sql.SQL("COALESCE({}({}, {}) = {}, FALSE)").format(side, text, length, placeholder))


def _scope_comparison(field: str, op: str, operand: Any) -> Compiled:
    """Scope ids are text columns: present values are strings, so non-string operands never match."""
    column = _column(field)
    present = _present(field)

    def equal(item: Any) -> Predicate:
        if not isinstance(item, str):
            return const(False)
        return Predicate(sql.SQL("COALESCE({} = {}, FALSE)").format(column, _bind(sql.SQL("%s"), item)))

    equality = _equality(op, operand, equal)
    if equality is not None:
        return equality
    if op in ORDERING_OPS:
        return Compiled(const(False), present)  # a present scope id is a string: ordering raises
    if not isinstance(operand, str):
        return Compiled(const(False), const(False))
    if op == "contains":
        return Compiled(Predicate(sql.SQL("COALESCE(strpos({}, {}) > 0, FALSE)").format(
            column, _bind(sql.SQL("%s"), operand))), const(False))
    if op in ("startswith", "endswith"):
        return Compiled(_affix(column, op, operand), const(False))
    raise ValueError(f"operator {op!r} is evaluated in Python")


def ordering_fields(expr: Filter) -> list[str]:
    """Fields compared with an ordering operator, in tree order (to name one in an error)."""
    if isinstance(expr, And | Or):
        return [f for item in expr.items for f in ordering_fields(item)]
    if isinstance(expr, Not):
        return ordering_fields(expr.item)
    if isinstance(expr, Comparison) and expr.op in ORDERING_OPS:
        return [expr.field]
    return []

