"""history and timestamps: ADD/UPDATE/DELETE events, UTC times, created <= updated."""

from __future__ import annotations

from datetime import UTC, timedelta

from memdock.capabilities import Capability
from memdock.conformance.context import CheckContext
from memdock.conformance.registry import check
from memdock.models import EventKind


@check("history", requires=Capability.HISTORY_AFTER_DELETE)
def check_history_records_add_update_delete(ctx: CheckContext) -> None:
    """history lists ADD, UPDATE, DELETE oldest first, with old and new text, even after the delete.

    Troubleshooting: `record_history` must keep events of deleted memories; `history` sorts oldest first.
    """
    record = ctx.memory.add("likes jasmine tea", user_id=ctx.user)[0].record
    ctx.memory.update(record.id, text="likes oolong tea")
    ctx.memory.delete(record.id)
    events = ctx.memory.history(record.id)
    assert [e.event for e in events] == [EventKind.ADD, EventKind.UPDATE, EventKind.DELETE], events
    assert (events[1].old_text, events[1].new_text) == ("likes jasmine tea", "likes oolong tea")
    assert events[2].old_text == "likes oolong tea"


@check("history", requires=Capability.HISTORY)
def check_history_is_per_memory(ctx: CheckContext) -> None:
    """One memory's history holds none of another's events.

    Troubleshooting: index history by memory id.
    """
    first = ctx.memory.add("first", user_id=ctx.user)[0].record
    ctx.memory.add("second", user_id=ctx.user)
    assert {e.memory_id for e in ctx.memory.history(first.id)} == {first.id}


@check("timestamps", requires=Capability.UPDATE)
def check_times_are_utc_and_ordered(ctx: CheckContext) -> None:
    """created_at and updated_at are UTC-aware; an update moves updated_at forward, not created_at.

    Troubleshooting: store times as UTC (ISO with offset, or timestamptz) and return aware datetimes.
    """
    record = ctx.memory.add("timed", user_id=ctx.user)[0].record
    got = ctx.memory.get(record.id)
    assert got.created_at.utcoffset() == timedelta(0) and got.updated_at.utcoffset() == timedelta(0), got
    assert got.created_at <= got.updated_at
    ctx.memory.update(record.id, text="timed again")
    after = ctx.memory.get(record.id)
    assert after.created_at == got.created_at and after.updated_at >= got.updated_at, after
    assert after.created_at.tzinfo is not None and after.created_at.astimezone(UTC) == after.created_at
