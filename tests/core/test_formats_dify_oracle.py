"""`memdock.formats.dify` against Dify's own knowledge-base filtering, replayed as SQL in a real PostgreSQL.

Dify's knowledge bases filter documents with SQL over a JSONB metadata column (api 1.13, the dataset
retrieval's metadata filter), and this test rebuilds that SQL from its documented shape: text operators
and text equality read ``metadata ->> name``; a number value and the ordering and time operators compare
``CAST(metadata ->> name AS FLOAT)``; ``empty`` is ``metadata -> name IS NULL``; ``in`` splits a string on
commas or turns list items into text; a null value adds no condition. Each (operator, value, stored value)
is one query over one row. Where PostgreSQL answers, memdock must answer the same, except for the
documented differences `explained` names; where PostgreSQL fails (a cast of ``"high"`` or of ISO text to
FLOAT), Dify's retrieval errors as a whole, and memdock, by design, answers without an error.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest

from memdock.formats.dify import MetadataCondition, translate_metadata_condition
from memdock.models import MemoryRecord, Scope

NOW = datetime(2026, 1, 1, tzinfo=UTC)
MISSING = object()
STORED: list[Any] = [
    MISSING, None, True, False, 4, 4.0, 2.5, 42, -2, "4", "4.0", " 4", "04", "news", "News", "sports",
    "newsletter", "", "high", "x,y", ["x", "y"], ["news"], {"v": 4}, "2025-03-01", "2025-03-01T10:00:00Z",
    "1740823200", 1740823200,
]
VALUES: dict[str, list[Any]] = {
    "contains": ["news", "ew", "4", "x"], "not contains": ["news", "ew", "4", "x"],
    "start with": ["new", "4", "x"], "end with": ["s", "2"],
    "is": ["news", "4", "4.0", "true", "", 4, 2.5, 1740823200], "is not": ["news", "4", "true", 4, 2.5],
    "=": [4, 2.5, "4", "news"], "≠": [4, 2.5, "4", "news"],
    ">": [3, 4, 2.5, "3"], "<": [3, 4, 2.5], "≥": [4, 2.5], "≤": [4, 2.5], ">=": [4], "<=": [4],
    "before": [1740823200, 0], "after": [1740823200, 0, "1740823200"],
    "empty": [None], "not empty": [None],
    "in": [["news", "sports"], "news, sports", ["4", "2.5"], [4], [], "4"],
    "not in": [["news", "sports"], "news, sports", ["4", "2.5"], [4], []],
}
TEXT = "(m ->> 'f')"
NUMBER = "CAST(m ->> 'f' AS DOUBLE PRECISION)"
SQL_OPS = {"is": "=", "=": "=", "is not": "<>", "≠": "<>", ">": ">", "after": ">", "<": "<", "before": "<",
           "≥": ">=", ">=": ">=", "≤": "<=", "<=": "<="}


def dify_sql(op: str, value: Any) -> tuple[str, list[Any]]:
    """The WHERE clause Dify's knowledge base builds for one condition on field ``f`` of column ``m``."""
    if value is None and op not in ("empty", "not empty"):
        return "TRUE", []
    if op in ("contains", "not contains", "start with", "end with"):
        pattern = {"contains": "%{}%", "not contains": "%{}%", "start with": "{}%", "end with": "%{}"}[op]
        return f"{TEXT} {'NOT LIKE' if op == 'not contains' else 'LIKE'} %s", [pattern.format(value)]
    if op in ("empty", "not empty"):
        return f"(m -> 'f') IS {'NOT ' if op == 'not empty' else ''}NULL", []
    if op in ("in", "not in"):
        items = ([v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str)
                 else [str(v) for v in value if v is not None] if isinstance(value, list) else [str(value)])
        if not items:
            return ("TRUE" if op == "not in" else "FALSE"), []
        return f"{TEXT} {'NOT IN' if op == 'not in' else 'IN'} ({', '.join(['%s'] * len(items))})", items
    if op in ("is", "=", "is not", "≠") and isinstance(value, str):
        return f"{TEXT} {SQL_OPS[op]} %s", [value]
    return f"{NUMBER} {SQL_OPS[op]} %s", [value]


def spelled_texts(op: str, value: Any) -> list[str]:
    """The texts a text-comparing condition compares the stored value's text with."""
    if op in ("in", "not in"):
        return ([v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str)
                else [str(v) for v in value] if isinstance(value, list) else [str(value)])
    return [value] if isinstance(value, str) else []


def as_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def explained(op: str, value: Any, stored: Any) -> str | None:
    """Why memdock may answer otherwise than Dify's SQL for this case (None: it must not)."""
    if op in ("contains", "not contains", "start with", "end with") and not isinstance(stored, str):
        return "text operators read string values (and list elements), not a number's digits or a list's JSON"
    is_number = isinstance(stored, int | float) and not isinstance(stored, bool)
    if is_number and any(as_number(t) == stored and t != json.dumps(stored) for t in spelled_texts(op, value)):
        return "a number spelled another way (4 vs '4.0') compares by value"
    if (op in ("=", "≠") and isinstance(value, int | float) and isinstance(stored, str)
            and as_number(stored) == value):
        return "only the plain spellings of a number ('4', '4.0') equal it; ' 4' and '04' do not"
    return None


@pytest.fixture(scope="module")
def connection(pg_url: str) -> Iterator[Any]:
    parts = urlsplit(pg_url)
    host = parse_qs(parts.query).get("host", [parts.hostname or "localhost"])[0]
    conninfo = f"host={host} dbname={parts.path.lstrip('/') or 'postgres'} user={parts.username or 'postgres'}"
    if parts.port:
        conninfo += f" port={parts.port}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        yield conn


def dify_answer(conn: Any, op: str, value: Any, stored: Any) -> bool | None:
    """Dify's SQL answer for one stored value; None when PostgreSQL refuses the query (Dify errors)."""
    where, params = dify_sql(op, value)
    metadata = {} if stored is MISSING else {"f": stored}
    try:
        row = conn.execute(f"SELECT ({where}) FROM (SELECT %s::jsonb AS m) AS t",
                           [*params, json.dumps(metadata)]).fetchone()
    except psycopg.errors.DataError:
        return None
    return bool(row[0])


def memdock_answer(op: str, value: Any, stored: Any) -> bool:
    condition = MetadataCondition.model_validate(
        {"conditions": [{"name": "f", "comparison_operator": op, "value": value}]})
    dify = translate_metadata_condition(condition)
    record = MemoryRecord(id="m", text="t", scope=Scope(user_id="u"), hash="h", created_at=NOW, updated_at=NOW,
                          metadata={} if stored is MISSING else {"f": stored})
    return True if dify is None else dify.matches(record)


def test_memdock_answers_as_difys_sql_wherever_it_answers(connection: Any) -> None:
    compared, refused, unexplained, documented = 0, 0, [], set()
    for op, values in VALUES.items():
        for value in [*values, None]:
            for stored in STORED:
                ours = memdock_answer(op, value, stored)
                theirs = dify_answer(connection, op, value, stored)
                if theirs is None:
                    refused += 1
                    continue
                compared += 1
                if ours != theirs:
                    reason = explained(op, value, stored)
                    if reason is None:
                        unexplained.append((op, value, "missing" if stored is MISSING else stored, ours, theirs))
                    else:
                        documented.add(reason)
    assert not unexplained, unexplained
    assert compared > 1500 and refused > 50
    assert len(documented) == 3  # each documented difference shows up, so `explained` names no dead rule


def test_where_difys_sql_fails_memdock_does_not_match_ordering_and_compares_iso_time(connection: Any) -> None:
    assert dify_answer(connection, ">", 3, "high") is None and memdock_answer(">", 3, "high") is False
    assert dify_answer(connection, "after", 0, "2025-03-01") is None
    assert memdock_answer("after", 0, "2025-03-01") is True
    assert memdock_answer("before", 0, "2025-03-01") is False
