"""Dify's knowledge-base metadata conditions (``metadata_condition`` of an External Knowledge request) as
core `Filter`s, so that a condition means what it means in Dify's own knowledge bases.

`MetadataCondition` is the wire shape; `metadata_condition_to_filter` translates it and raises
`InvalidInput` naming the condition (``metadata_condition.conditions[i]``) for an unknown operator or a
value of the wrong kind. Shared by every adapter that accepts Dify's conditions.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from memdock.errors import InvalidInput
from memdock.filters import And, Comparison, Exists, Filter, Not, Or, comparison


class Condition(BaseModel):
    """One metadata condition. Older Dify versions send ``name`` as a list (any of the names)."""

    model_config = ConfigDict(extra="ignore")

    name: str | list[str]
    comparison_operator: str
    value: str | int | float | bool | list[str | int | float] | None = None


class MetadataCondition(BaseModel):
    """Conditions joined by ``and`` (the default) or ``or``."""

    model_config = ConfigDict(extra="ignore")

    logical_operator: Literal["and", "or"] = "and"
    conditions: list[Condition] = Field(default_factory=list)

    @field_validator("logical_operator", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


def metadata_condition_to_filter(condition: MetadataCondition | None) -> Filter | None:
    """The core `Filter` for Dify's conditions (None when there are none). `InvalidInput` (field
    ``metadata_condition.conditions[i]``) for an unknown operator or a value of the wrong kind."""
    if condition is None or not condition.conditions:
        return None
    items = []
    for index, item in enumerate(condition.conditions):
        try:
            items.append(condition_to_filter(item))
        except InvalidInput as exc:
            raise InvalidInput(str(exc), field=f"metadata_condition.conditions[{index}]") from None
    if len(items) == 1:
        return items[0]
    return And(tuple(items)) if condition.logical_operator == "and" else Or(tuple(items))


def condition_to_filter(condition: Condition) -> Filter:
    """One condition; a list of names means any of them."""
    names = [condition.name] if isinstance(condition.name, str) else list(condition.name)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise InvalidInput("name must be a non-empty string", field="name")
    parts = [_one(name, condition.comparison_operator.strip(), condition.value) for name in names]
    return parts[0] if len(parts) == 1 else Or(tuple(parts))


LESS_THAN_AS_DIFY_SPELLS_IT = "\u2039"  # Dify's code writes "<" as this angle quotation mark in one place
_ORDERING = {">": "gt", "<": "lt", LESS_THAN_AS_DIFY_SPELLS_IT: "lt", "≥": "gte", ">=": "gte", "≤": "lte", "<=": "lte"}


def _one(name: str, op: str, value: Any) -> Filter:
    if op == "empty":
        return _empty(name)
    if op == "not empty":
        return Not(_empty(name))
    if value is None:
        raise InvalidInput(f"operator {op!r} needs a value", field="value")
    if op in ("contains", "not contains", "start with", "end with"):
        text = _text(value, op)
        core = {"contains": "contains", "not contains": "contains", "start with": "startswith", "end with": "endswith"}
        built = comparison(name, core[op], text)
        return Not(built) if op == "not contains" else built
    if op in ("is", "is not"):
        return comparison(name, "eq" if op == "is" else "ne", value)
    if op in ("in", "not in"):
        values = value if isinstance(value, list) else [v.strip() for v in str(value).split(",") if v.strip()]
        return comparison(name, "in" if op == "in" else "nin", values)
    if op in ("=", "≠", "!="):
        return comparison(name, "eq" if op == "=" else "ne", _number(value, op))
    if op in _ORDERING:
        return comparison(name, _ORDERING[op], _number(value, op))
    if op in ("before", "after"):
        return comparison(name, "lt" if op == "before" else "gt", _timestamp(value, op))
    raise InvalidInput(f"unknown comparison_operator {op!r}", field="comparison_operator")


def _empty(name: str) -> Filter:
    """Missing, null, an empty string or an empty list."""
    return Or((
        Not(Exists(name)), Comparison(name, "eq", None), Comparison(name, "eq", ""), Comparison(name, "eq", []),
    ))


def _text(value: Any, op: str) -> str:
    if isinstance(value, bool | list):
        raise InvalidInput(f"operator {op!r} needs a string", field="value")
    return str(value)


def _number(value: Any, op: str) -> int | float:
    if isinstance(value, bool):
        raise InvalidInput(f"operator {op!r} needs a number", field="value")
    number: int | float
    if isinstance(value, int | float):
        number = value
    else:
        text = str(value).strip()
        try:
            number = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                raise InvalidInput(f"operator {op!r} needs a number, got {value!r}", field="value") from None
    if not math.isfinite(number):
        raise InvalidInput(f"operator {op!r} needs a finite number", field="value")
    return number


def _timestamp(value: Any, op: str) -> int | float:
    """Dify stores time metadata as Unix seconds; an ISO-8601 value is converted (naive means UTC)."""
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return _number(value, op)
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    return _number(value, op)
