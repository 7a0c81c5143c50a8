"""timestamps (against the clock): times are the wall clock's, to the millisecond, and updated_at moves."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from memdock.capabilities import Capability
from memdock.conformance.context import CheckContext
from memdock.conformance.registry import NotApplicable, check

SLACK = timedelta(seconds=2)
"""How far a backend's clock may stray from the kit's (a remote service's clock)."""
MILLISECOND = timedelta(milliseconds=1)


@check("timestamps")
def check_times_follow_the_clock_to_the_millisecond(ctx: CheckContext) -> None:
    """created_at lies between the times before and after the add (within 2 s), get returns the time add
    reported (within 1 ms), two adds 20 ms apart get times at least 10 ms apart in that order, and not
    both on a whole second (times truncated to seconds would pass the gap when the adds straddle one).

    Troubleshooting: store times as UTC with at least millisecond precision (ISO with microseconds, epoch
    milliseconds, timestamptz); never store local time, never truncate to seconds.
    """
    before = datetime.now(UTC)
    first = ctx.memory.add("first tick", user_id=ctx.user)[0].record
    time.sleep(0.02)
    second = ctx.memory.add("second tick", user_id=ctx.user)[0].record
    after = datetime.now(UTC)
    for added in (first, second):
        got = ctx.memory.get(added.id)
        assert before - SLACK <= got.created_at <= after + SLACK, \
            f"created_at {got.created_at} is not the wall clock ({before} .. {after})"
        assert abs(got.created_at - added.created_at) < MILLISECOND, \
            f"add reported created_at {added.created_at}, get reads {got.created_at}"
        assert abs(got.updated_at - got.created_at) < MILLISECOND, (got.created_at, got.updated_at)
    gap = ctx.memory.get(second.id).created_at - ctx.memory.get(first.id).created_at
    whole_seconds = all(ctx.memory.get(r.id).created_at.microsecond == 0 for r in (first, second))
    if Capability.SERVER_SIDE_EMBEDDING in ctx.memory.capabilities and whole_seconds:
        raise NotApplicable("the service keeps its own times, to the second (a gap of the service)")
    assert not whole_seconds, "both adds' times are whole seconds (times truncated?)"
    assert gap >= timedelta(milliseconds=10), f"adds 20 ms apart are {gap} apart (times truncated?)"


@check("timestamps", requires=Capability.UPDATE)
def check_updated_at_moves_on_every_update(ctx: CheckContext) -> None:
    """Each update (text, then metadata) sets updated_at to the clock, after the previous one; created_at
    stays; update's result reports the time get then reads (within 2 s: a service may stamp its own).

    Troubleshooting: set updated_at on every update, from `record.updated_at` as `Memory` stamps it.
    """
    record = ctx.memory.add("ticking", user_id=ctx.user)[0].record
    previous = ctx.memory.get(record.id)
    for change in ({"text": "ticking again"}, {"metadata": {"n": 1}}):
        time.sleep(0.02)
        result = ctx.memory.update(record.id, **change)
        got = ctx.memory.get(record.id)
        assert got.created_at == previous.created_at, f"created_at moved on update {change}"
        assert got.updated_at - previous.updated_at >= timedelta(milliseconds=10), \
            f"updated_at {previous.updated_at} -> {got.updated_at} after update {change}"
        assert abs(got.updated_at - result.record.updated_at) < SLACK, (result.record.updated_at, got)
        assert abs(got.updated_at - datetime.now(UTC)) < SLACK, got.updated_at
        previous = got
