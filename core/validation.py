"""Input validation for `Memory`: every error names the field it is about, and nothing is stored
until everything has been validated."""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from memdock.errors import InvalidInput, ScopeRequired
from memdock.models import SCOPE_FIELDS, Scope

MAX_TEXT_BYTES = 512 * 1024
MAX_METADATA_BYTES = 64 * 1024
MAX_JSON_DEPTH = 32
"""How deeply metadata may nest objects and lists (every store, and every JSON parser on the way, can
keep this much; deeper values are refused before anything is stored)."""
MIN_INT, MAX_INT = -(2**63), 2**63 - 1
"""Integers in metadata are 64-bit signed (what Chroma and PostgreSQL's JSON keep exactly)."""
MAX_LIMIT = 1000
MESSAGE_ROLES = ("system", "user", "assistant")


def make_scope(scope: Scope | None, ids: Mapping[str, Any], *, required: bool) -> Scope:
    """Merge an explicit `Scope` with keyword ids; `ScopeRequired` when `required` and none is set."""
    data = scope.ids() if scope is not None else {}
    for name, value in ids.items():
        if value is not None:
            if name in data and data[name] != value:
                raise InvalidInput(f"conflicts with scope.{name}={data[name]!r}", field=name)
            data[name] = value
    try:
        result = Scope.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidInput(first["msg"], field=".".join(str(p) for p in first["loc"])) from None
    if required and result.is_empty():
        raise ScopeRequired()
    return result


def check_text(text: Any, field: str = "text") -> str:
    """A non-blank string of at most `MAX_TEXT_BYTES` UTF-8 bytes, storable everywhere (`check_storable`)."""
    if not isinstance(text, str):
        raise InvalidInput(f"must be a string, got {type(text).__name__}", field=field)
    if not text.strip():
        raise InvalidInput("must not be empty", field=field)
    check_storable(text, field)
    if len(text.encode("utf-8")) > MAX_TEXT_BYTES:
        raise InvalidInput(f"must be at most {MAX_TEXT_BYTES} bytes", field=field)
    return text


def check_storable(text: str, field: str) -> None:
    """Refuse what some stores cannot keep: NUL characters (PostgreSQL text and jsonb) and lone
    surrogates (not encodable as UTF-8). Refusing them in the core keeps every backend alike."""
    if "\x00" in text:
        raise InvalidInput("must not contain NUL characters", field=field)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("must be valid Unicode (no lone surrogates)", field=field) from None


def text_hash(text: str) -> str:
    """The dedup key of a text: sha256 of the text with runs of white space folded."""
    return hashlib.sha256(" ".join(text.split()).encode("utf-8", errors="surrogatepass")).hexdigest()


def check_metadata(metadata: Any) -> dict[str, Any]:
    """A deep copy of a JSON object with string keys, none of them a scope field, within the limits:
    `MAX_METADATA_BYTES` serialised, `MAX_JSON_DEPTH` levels of nesting, 64-bit integers, finite floats."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidInput(f"must be an object, got {type(metadata).__name__}", field="metadata")
    for key in metadata:
        if not isinstance(key, str) or not key:
            raise InvalidInput("keys must be non-empty strings", field="metadata")
        if key in SCOPE_FIELDS:
            raise InvalidInput(f"{key!r} is a scope id; pass it as a scope argument", field=f"metadata.{key}")
    _check_json(metadata, "metadata")
    encoded = json.dumps(metadata, ensure_ascii=False)
    if len(encoded.encode("utf-8")) > MAX_METADATA_BYTES:
        raise InvalidInput(f"must serialise to at most {MAX_METADATA_BYTES} bytes", field="metadata")
    return copy.deepcopy(dict(metadata))


def _check_json(value: Any, path: str, depth: int = 0) -> None:
    if isinstance(value, str):
        check_storable(value, path)
        return
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if not MIN_INT <= value <= MAX_INT:
            raise InvalidInput("integers must fit in 64 bits (-2**63 .. 2**63 - 1)", field=path)
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput("must be a finite number", field=path)
        return
    if isinstance(value, Mapping | list | tuple) and depth >= MAX_JSON_DEPTH:
        raise InvalidInput(f"nests objects and lists more than {MAX_JSON_DEPTH} deep", field=path)
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInput("object keys must be strings", field=path)
            check_storable(key, path)
            _check_json(item, f"{path}.{key}", depth + 1)
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_json(item, f"{path}[{index}]", depth + 1)
        return
    raise InvalidInput(f"{type(value).__name__} is not a JSON value", field=path)


def check_expires_at(value: Any) -> datetime | None:
    """None, or a timezone-aware datetime as UTC; one that names no UTC instant (9999-12-31 at -14:00
    lies past year 9999) is refused too."""
    if value is None:
        return None
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput("must be a timezone-aware datetime", field="expires_at")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise InvalidInput("lies outside the years 1-9999 in UTC", field="expires_at") from None


def check_limit(limit: Any, field: str = "limit") -> int:
    """An int in [1, MAX_LIMIT]."""
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"must be an integer from 1 to {MAX_LIMIT}", field=field)
    return limit


def check_threshold(threshold: Any) -> float | None:
    """None or a number in [0, 1] (a minimum score)."""
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0.0 <= threshold <= 1.0:
        raise InvalidInput("must be a number from 0 to 1", field="threshold")
    return float(threshold)


def check_memory_id(memory_id: Any) -> str:
    """A non-empty string any store can look up (`check_storable`: no NUL, no lone surrogate, which no
    stored id holds; PostgreSQL and Chroma would fail on them, answered as an outage)."""
    if not isinstance(memory_id, str) or not memory_id.strip():
        raise InvalidInput("must be a non-empty string", field="memory_id")
    check_storable(memory_id, "memory_id")
    return memory_id


def split_messages(data: Sequence[Any]) -> list[tuple[str, str]]:
    """(role, content) of each non-system message in a ``[{role, content}]`` list."""
    if not data:
        raise InvalidInput("must not be empty", field="messages")
    result: list[tuple[str, str]] = []
    for index, message in enumerate(data):
        if not isinstance(message, Mapping):
            raise InvalidInput("each message must be an object", field=f"messages[{index}]")
        role = message.get("role")
        if role not in MESSAGE_ROLES:
            raise InvalidInput(f"role must be one of {', '.join(MESSAGE_ROLES)}", field=f"messages[{index}].role")
        content = check_text(message.get("content"), field=f"messages[{index}].content")
        if role != "system":
            result.append((str(role), content))
    if not result:
        raise InvalidInput("holds only system messages; nothing to remember", field="messages")
    return result
