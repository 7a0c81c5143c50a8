"""The protocol's data: scopes, records, hits, pages and history events (pydantic v2)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from memdock.scopes import SCOPE_FIELDS as SCOPE_FIELDS  # re-exported: the models name them

"""Names of the scope ids, in a fixed order. Filters may name them; metadata may not use them as keys."""

MAX_SCOPE_ID_CHARS = 256
_FORBIDDEN_ID_CHARACTERS = re.compile("[\x00-\x1f\ud800-\udfff]")
"""Control characters and lone surrogates, which no scope id may contain."""


def utcnow() -> datetime:
    """The current time as an aware UTC datetime (the only kind memdock stores)."""
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> Any:
    """`value` in UTC: an aware time is converted, a naive one is taken to be UTC already."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Scope(BaseModel):
    """Who a memory belongs to. Writes need at least one id; a read sees only records whose scope
    has the same value for every id the read's scope sets (unset ids are wildcards for reads)."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None
    app_id: str | None = None

    @field_validator("user_id", "agent_id", "run_id", "app_id", mode="before")
    @classmethod
    def _check_id(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError("must be a string")
        if not value.strip():
            raise ValueError("must not be empty")
        if len(value) > MAX_SCOPE_ID_CHARS:
            raise ValueError(f"must be at most {MAX_SCOPE_ID_CHARS} characters")
        if _FORBIDDEN_ID_CHARACTERS.search(value):
            raise ValueError("must not contain control characters or lone surrogates")
        return value

    def is_empty(self) -> bool:
        """True when no id is set."""
        return all(getattr(self, name) is None for name in SCOPE_FIELDS)

    def ids(self) -> dict[str, str]:
        """The ids that are set, by field name."""
        return {name: value for name in SCOPE_FIELDS if (value := getattr(self, name)) is not None}

    def contains(self, other: Scope) -> bool:
        """True when a record written under `other` is visible to a read under this scope."""
        return all(getattr(other, name) == value for name, value in self.ids().items())


class EventKind(StrEnum):
    """What a write did to a memory."""

    ADD = "ADD"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    NONE = "NONE"  # nothing changed (e.g. the same text was already stored in that scope)


class MemoryRecord(BaseModel):
    """One stored memory. `vector` is present only when a backend returns embeddings."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    id: str
    text: str
    scope: Scope
    metadata: dict[str, Any] = Field(default_factory=dict)
    hash: str
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None = None
    vector: list[float] | None = Field(default=None, repr=False)

    @field_validator("created_at", "updated_at", "expires_at", mode="after")
    @classmethod
    def _utc_times(cls, value: datetime | None) -> datetime | None:
        # a field validator, not a model one: pydantic runs a model's "after" validator again whenever an
        # instance is passed to another model's field (every SearchHit), field validators only once
        return value if value is None or value.tzinfo is UTC else as_utc(value)

    def is_expired(self, now: datetime) -> bool:
        """True when the record has an expiry at or before `now`."""
        return self.expires_at is not None and self.expires_at <= now


class SearchHit(BaseModel):
    """A search result. `score` is a similarity in [0, 1]; higher means more similar."""

    model_config = ConfigDict(defer_build=True)

    record: MemoryRecord
    score: float = Field(ge=0.0, le=1.0)


class Page(BaseModel):
    """One page of a listing. `next_cursor` is None on the last page; pass it back to get the next."""

    model_config = ConfigDict(defer_build=True)

    items: list[MemoryRecord]
    next_cursor: str | None = None


class HistoryEvent(BaseModel):
    """One change to one memory, oldest first in `Memory.history`."""

    model_config = ConfigDict(defer_build=True)

    id: str
    memory_id: str
    event: EventKind
    old_text: str | None = None
    new_text: str | None = None
    old_metadata: dict[str, Any] | None = None
    new_metadata: dict[str, Any] | None = None
    scope: Scope
    created_at: datetime

    @field_validator("created_at", mode="after")
    @classmethod
    def _utc_time(cls, value: datetime) -> datetime:
        return value if value.tzinfo is UTC else as_utc(value)


class WriteResult(BaseModel):
    """What one write did: the event and the record as it now stands (or stood, for DELETE)."""

    model_config = ConfigDict(defer_build=True)

    event: EventKind
    record: MemoryRecord
