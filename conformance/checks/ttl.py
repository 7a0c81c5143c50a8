"""ttl: a backend declaring TTL hides expired memories from every read and lets their text be added again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from memdock.capabilities import Capability
from memdock.conformance.context import CheckContext
from memdock.conformance.registry import NotApplicable, check
from memdock.errors import MemoryNotFound
from memdock.models import EventKind, MemoryRecord, Scope
from memdock.validation import text_hash


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


@check("ttl", requires=Capability.TTL)
def check_the_id_of_an_expired_memory_can_be_imported_again(ctx: CheckContext) -> None:
    """An id whose memory has expired is free: `import_` of another record with that id stores it (event
    ADD), and get, list, count and search find the new record, never the expired one (a migration or a
    restored archive must not report ADD and keep nothing, nor delete the record it brought).

    Troubleshooting: an insert that skips ids it already holds (Chroma's `add` does) must first delete
    the expired record with that id; an insert that refuses them (a primary key) must delete it in the
    same transaction; a live record with the id is a `WriteConflict`, never overwritten.
    """
    scope = Scope(user_id=ctx.user)
    gone = ctx.memory.add("an expiring note about green tea", scope=scope,
                          expires_at=datetime.now(UTC) - timedelta(seconds=5))[0].record
    now = datetime.now(UTC)
    text = "a lasting note about black coffee"
    incoming = MemoryRecord(id=gone.id, text=text, scope=scope, hash=text_hash(text), created_at=now,
                            updated_at=now)
    [result] = ctx.memory.import_([incoming])
    if result.record.id != gone.id:
        raise NotApplicable("the backend assigns ids of its own on import")
    assert result.event is EventKind.ADD, result.event
    assert ctx.memory.get(gone.id).text == text
    assert [(r.id, r.text) for r in ctx.memory.list(scope=scope).items] == [(gone.id, text)]
    assert ctx.memory.count(scope=scope) == 1
    for mode in ctx.search_modes():
        hits = ctx.memory.search("black coffee", scope=scope, limit=10, mode=mode)
        assert [h.record.id for h in hits] == [gone.id], (mode, [h.record.text for h in hits])
