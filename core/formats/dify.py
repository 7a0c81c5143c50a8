"""Dify's knowledge-base metadata conditions (``metadata_condition`` of an External Knowledge request),
translated so that a condition means what it means in Dify's OWN knowledge bases, where a condition is
SQL over the JSON text of a document's metadata value.

Dify's semantics, as this module reproduces them (``text(v)`` is the JSON text of a stored value: a
string itself, a number its digits, ``true``/``false``; a missing key or a JSON null has no text):

- ``contains`` / ``start with`` / ``end with`` match string values (``contains`` also matches an element
  of a list value); ``not contains`` matches a present, non-null value that does not contain the text.
- ``is`` / ``=`` with a string compare as text: ``rating is "4"`` matches a stored ``4`` and ``"4"``.
  With a number they compare numerically: stored numbers and the strings that spell the number (``=``:
  its plain spellings ``"4"``, ``"4.0"``; ``is``: any numeric string). ``is`` / ``is not`` with a number
  are also Dify's time ``is``: an ISO-8601 string naming that instant equals it too.
- ``is not`` / ``≠`` / ``not contains`` / ``not in`` never match a record lacking the field (or holding
  null), as SQL's NULL never compares.
- ``empty`` means the key is missing; ``not empty`` that it is present (any value, null included).
- ``in`` / ``not in`` take a list or a comma-separated string and compare as text; ``in []`` matches
  nothing and ``not in []`` everything.
- ``>``, ``<`` (also spelled U+2039, `LESS_THAN_AS_DIFY_SPELLS_IT`), ``≥``, ``≤`` compare numbers and
  numeric strings; ``before`` / ``after`` / time ``is`` compare Unix seconds with stored numbers (epoch
  seconds), numeric strings and ISO-8601 strings (naive means UTC). A stored value of any other kind
  simply does not match.
- A condition whose value is null (other than ``empty``/``not empty``) is ignored, as Dify ignores it.

The filter language (`memdock.filters`) expresses all of this except the ordering and time comparisons:
its ordering operators raise on a stored non-number and know nothing of ISO dates. Those become
`Ordered` parts, evaluated here in Python; every other part is a core `Filter`, evaluated by the ONE
reference evaluator. `DifyFilter` holds the result: `DifyFilter.pushdown` is a `Filter` every backend can
run (exact when `DifyFilter.exact`, otherwise a necessary condition: ``exists(field)`` stands in for an
`Ordered` part), and `DifyFilter.matches` decides a record exactly.

`translate_metadata_condition` raises `InvalidInput` naming the condition
(``metadata_condition.conditions[i]``) for an unknown operator or a value that cannot mean what the
operator needs. Shared by every adapter that accepts Dify's conditions.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator

from memdock.errors import InvalidInput
from memdock.filters import And, Comparison, Exists, Filter, Not, Or, comparison, evaluate, field_value
from memdock.models import MemoryRecord

LESS_THAN_AS_DIFY_SPELLS_IT = "\u2039"  # Dify's web code writes "<" as this angle quotation mark in one place


class Condition(BaseModel):
    """One metadata condition. Older Dify versions send ``name`` as a list (any of the names)."""

    model_config = ConfigDict(extra="ignore")

    name: str | list[str]
    comparison_operator: str
    value: str | int | float | bool | list[str | int | float | None] | None = None


class MetadataCondition(BaseModel):
    """Conditions joined by ``and`` (the default, also for a null ``logical_operator``) or ``or``; a null
    ``conditions`` means none."""

    model_config = ConfigDict(extra="ignore")

    logical_operator: Literal["and", "or"] = "and"
    conditions: list[Condition] = []

    @field_validator("logical_operator", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        if value is None:
            return "and"
        return value.lower() if isinstance(value, str) else value

    @field_validator("conditions", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value


# -- the parts the filter language cannot express --------------------------------------------------------


@dataclass(frozen=True)
class Ordered:
    """``field <op> value`` over numbers: stored numbers and numeric strings compare; with `as_time` an
    ISO-8601 string compares as its Unix time (naive = UTC). For every op but ``ne``, any other stored
    value (missing, null, bool, list, object, other text) does not match; ``ne`` matches every present,
    non-null value except those equal to `value` (it is the negation of ``eq`` on present values)."""

    field: str
    op: Literal["eq", "ne", "gt", "gte", "lt", "lte"]
    value: float
    as_time: bool = False

    def matches(self, record: MemoryRecord) -> bool:
        """Does `record`'s value for `field` satisfy the comparison?"""
        value = field_value(record, self.field)
        stored = stored_number(value, as_time=self.as_time)
        if self.op == "ne":
            return value is not None and evaluate(Exists(self.field), record) and stored != self.value
        if stored is None:
            return False
        return {
            "eq": stored == self.value, "gt": stored > self.value, "gte": stored >= self.value,
            "lt": stored < self.value, "lte": stored <= self.value,
        }[self.op]


@dataclass(frozen=True)
class Joined:
    """Items joined by Dify's ``and`` / ``or``."""

    logical: Literal["and", "or"]
    items: tuple[Part, ...]


Part = Comparison | Exists | And | Or | Not | Ordered | Joined


def stored_number(value: Any, *, as_time: bool = False) -> float | None:
    """A stored value as Dify's ``CAST(... AS FLOAT)`` reads it: a finite number, or a string holding one;
    with `as_time` also an ISO-8601 string, as Unix seconds. None for anything else (bools included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        return iso_seconds(text) if as_time else None
    return number if math.isfinite(number) else None


def iso_seconds(text: str) -> float | None:
    """Unix seconds of an ISO-8601 date or date-time (``Z`` or an offset; naive means UTC), else None."""
    if not text or not text[0].isdigit():
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def pushdown_of(part: Part) -> Filter:
    """A core `Filter` every record matching `part` matches (exactly `part` when it holds no `Ordered`)."""
    if isinstance(part, Ordered):
        return _present(part.field) if part.op == "ne" else Exists(part.field)
    if isinstance(part, Joined):
        items = tuple(pushdown_of(item) for item in part.items)
        return And(items) if part.logical == "and" else Or(items)
    return part


def is_exact(part: Part) -> bool:
    """True when `part` is a core `Filter` through and through (no `Ordered` inside)."""
    if isinstance(part, Ordered):
        return False
    if isinstance(part, Joined):
        return all(is_exact(item) for item in part.items)
    return True


def part_matches(part: Part, record: MemoryRecord) -> bool:
    """Dify's answer for `record`: `Ordered` parts here, core `Filter` parts by `memdock.filters.evaluate`."""
    if isinstance(part, Ordered):
        return part.matches(record)
    if isinstance(part, Joined):
        results = (part_matches(item, record) for item in part.items)
        return all(results) if part.logical == "and" else any(results)
    return evaluate(part, record)


@dataclass(frozen=True)
class DifyFilter:
    """Translated Dify conditions: `pushdown` for the backend, `matches` for the exact answer."""

    part: Part

    @property
    def pushdown(self) -> Filter:
        """The core `Filter` to search with; the whole answer when `exact`, else a necessary condition."""
        return pushdown_of(self.part)

    @property
    def exact(self) -> bool:
        """True when `pushdown` alone gives Dify's answer (no ordering or time condition)."""
        return is_exact(self.part)

    def matches(self, record: MemoryRecord) -> bool:
        """Does `record` satisfy the conditions, as Dify's own knowledge base decides?"""
        return part_matches(self.part, record)


# -- the translation ----------------------------------------------------------------------------------------


def translate_metadata_condition(condition: MetadataCondition | None) -> DifyFilter | None:
    """The conditions as a `DifyFilter`, or None when there are none (or all are ignored: null values).
    `InvalidInput` (field ``metadata_condition.conditions[i]``) for an unknown operator or a bad value."""
    if condition is None:
        return None
    parts: list[Part] = []
    for index, item in enumerate(condition.conditions):
        try:
            part = condition_to_part(item)
        except InvalidInput as exc:
            raise InvalidInput(str(exc), field=f"metadata_condition.conditions[{index}]") from None
        if part is not None:
            parts.append(part)
    if not parts:
        return None
    return DifyFilter(parts[0] if len(parts) == 1 else Joined(condition.logical_operator, tuple(parts)))


def condition_to_part(condition: Condition) -> Part | None:
    """One condition (None when Dify ignores it); a list of names means any of them."""
    names = [condition.name] if isinstance(condition.name, str) else list(condition.name)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise InvalidInput("name must be a non-empty string", field="name")
    op = condition.comparison_operator.strip()
    parts = [part for part in (_one(name, op, condition.value) for name in names) if part is not None]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else Joined("or", tuple(parts))


OrderOp = Literal["gt", "gte", "lt", "lte"]
_TEXT_OPS = {"contains": "contains", "start with": "startswith", "end with": "endswith"}
_ORDERING: dict[str, OrderOp] = {
    ">": "gt", "<": "lt", LESS_THAN_AS_DIFY_SPELLS_IT: "lt", "≥": "gte", ">=": "gte", "≤": "lte", "<=": "lte",
}
_TIME: dict[str, OrderOp] = {"before": "lt", "after": "gt"}
KNOWN_OPERATORS: tuple[str, ...] = (
    "contains", "not contains", "start with", "end with", "is", "is not", "empty", "not empty", "in", "not in",
    "=", "≠", "!=", *_ORDERING, *_TIME,
)
"""Every ``comparison_operator`` accepted (Dify's, the ASCII spellings and U+2039 for ``<``)."""


def _one(name: str, op: str, value: Any) -> Part | None:
    if op == "empty":
        return Not(Exists(name))
    if op == "not empty":
        return Exists(name)
    if op not in KNOWN_OPERATORS:
        raise InvalidInput(f"unknown comparison_operator {op!r}", field="comparison_operator")
    if value is None:
        return None
    if op in _TEXT_OPS:
        return comparison(name, _TEXT_OPS[op], _text(value, op))
    if op == "not contains":
        return _present_and_not(name, comparison(name, "contains", _text(value, op)))
    if op in ("is", "="):
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = _number(value, op)
            return Ordered(name, "eq", number, as_time=True) if op == "is" else _number_equal(name, number)
        return _text_equal(name, _text(value, op))
    if op in ("is not", "≠", "!="):
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = _number(value, op)
            return Ordered(name, "ne", number, as_time=True) if op == "is not" else _present_and_not(
                name, _number_equal(name, number))
        return _present_and_not(name, _text_equal(name, _text(value, op)))
    if op in ("in", "not in"):
        candidates = [c for text in _text_list(value) for c in _text_forms(text)]
        if not candidates:
            return Or(()) if op == "in" else And(())
        inside = comparison(name, "in", candidates)
        return inside if op == "in" else _present_and_not(name, inside)
    if op in _ORDERING:
        return Ordered(name, _ORDERING[op], _number(value, op))
    return Ordered(name, _TIME[op], _timestamp(value, op), as_time=True)


def _present(name: str) -> And:
    """Present and not null: what SQL can compare at all."""
    return And((Exists(name), Not(Comparison(name, "eq", None))))


def _present_and_not(name: str, inner: Filter) -> Filter:
    """Present, not null, and not `inner`: Dify's negative operators (SQL never matches a NULL)."""
    return And((*_present(name).items, Not(inner)))


def _text_forms(text: str) -> list[Any]:
    """Stored values whose JSON text is `text`: the string itself, the number it spells exactly (``"4"`` ->
    ``4``), the boolean ``true``/``false`` spell."""
    forms: list[Any] = [text]
    number = _exact_number(text)
    if number is not None:
        forms.append(number)
    if text in ("true", "false"):
        forms.append(text == "true")
    return forms


def _text_equal(name: str, text: str) -> Filter:
    forms = _text_forms(text)
    return comparison(name, "eq", text) if len(forms) == 1 else comparison(name, "in", forms)


def _number_equal(name: str, number: float) -> Filter:
    """Stored numbers equal to `number`, and the strings that spell it (``4`` -> ``"4"``, ``"4.0"``)."""
    forms: list[Any] = [int(number) if number.is_integer() else number]
    if number.is_integer():
        forms.append(str(int(number)))
    forms.append(repr(float(number)))
    return comparison(name, "in", forms)


def _exact_number(text: str) -> int | float | None:
    """The number whose JSON text is exactly `text` (``"4"``, ``"-2"``, ``"4.5"``), else None."""
    try:
        whole = int(text)
    except ValueError:
        pass
    else:
        return whole if str(whole) == text else None
    try:
        real = float(text)
    except ValueError:
        return None
    return real if math.isfinite(real) and text in (repr(real), json.dumps(real)) else None


def _text_list(value: Any) -> list[str]:
    """Dify's list for ``in``/``not in``: a comma-separated string split and stripped, or each item of a
    list as text (nulls dropped)."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list):
        return [_as_text(v) for v in value if v is not None]
    return [_as_text(value)]


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def _text(value: Any, op: str) -> str:
    if isinstance(value, list):
        raise InvalidInput(f"operator {op!r} needs a string, not a list", field="value")
    return _as_text(value)


def _number(value: Any, op: str) -> float:
    if isinstance(value, bool | list):
        raise InvalidInput(f"operator {op!r} needs a number", field="value")
    if isinstance(value, int | float):
        number = float(value)
    else:
        try:
            number = float(str(value).strip())
        except ValueError:
            raise InvalidInput(f"operator {op!r} needs a number, got {value!r}", field="value") from None
    if not math.isfinite(number):
        raise InvalidInput(f"operator {op!r} needs a finite number", field="value")
    return number


def _timestamp(value: Any, op: str) -> float:
    """Dify sends Unix seconds; an ISO-8601 string is accepted too (naive means UTC)."""
    if isinstance(value, str) and not _is_numeric(value):
        seconds = iso_seconds(value.strip())
        if seconds is None:
            raise InvalidInput(f"operator {op!r} needs Unix seconds or an ISO-8601 time, got {value!r}",
                               field="value")
        return seconds
    return _number(value, op)


def _is_numeric(text: str) -> bool:
    try:
        float(text.strip())
    except ValueError:
        return False
    return True
