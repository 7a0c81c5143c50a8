"""ttl: a backend declaring TTL hides expired memories from every read and lets their text be added again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from memdock.capabilities import Capability
from memdock.conformance.context import CheckContext
from memdock.conformance.registry import check
from memdock.errors import MemoryNotFound
from memdock.models import EventKind


@check("ttl", requires=Capability.TTL)
def check_expired_memories_are_invisible_to_every_read(ctx: CheckContext) -> None:
    """A memory whose expires_at has passed is missing from get, list, count and search; one that has
    not expired stays visible with its expiry.

    Troubleshooting: compare `expires_at` with `Backend.now()` in every read path (get, list, count,
    search, find_by_hash), not only in search; store it in UTC.
    """
    past = datetime.now(UTC) - timedelta(seconds=5)
    future = datetime.now(UTC) + timedelta(days=1)
    gone = ctx.memory.add("ephemeral green tea", user_id=ctx.user, expires_at=past)[0].record
    kept = ctx.memory.add("lasting green tea", user_id=ctx.user, expires_at=future)[0].record
    try:
        ctx.memory.get(gone.id)
        raise AssertionError("get returned an expired memory")
    except MemoryNotFound:
        pass
    stored = ctx.memory.get(kept.id).expires_at
    assert stored is not None and abs((stored - future).total_seconds()) < 0.001, stored
    assert [r.id for r in ctx.memory.list(user_id=ctx.user).items] == [kept.id]
    assert ctx.memory.count(user_id=ctx.user) == 1
    for mode in ctx.search_modes():
        hits = ctx.memory.search("ephemeral green tea", user_id=ctx.user, limit=10, mode=mode)
        assert [h.record.id for h in hits] == [kept.id], (mode, [h.record.text for h in hits])


@check("ttl", requires=Capability.TTL)
def check_an_expired_text_can_be_added_again(ctx: CheckContext) -> None:
    """Dedup ignores expired memories: adding the text of an expired memory stores a new one.

    Troubleshooting: `find_by_hash` must skip expired records (and a database uniqueness constraint on
    (scope, hash) must not block the new row: delete or exclude the expired one first).
    """
    past = datetime.now(UTC) - timedelta(seconds=5)
    ctx.memory.add("short-lived fact", user_id=ctx.user, expires_at=past)
    again = ctx.memory.add("short-lived fact", user_id=ctx.user)[0]
    assert again.event is EventKind.ADD, again.event
    assert ctx.memory.get(again.record.id).text == "short-lived fact"
