"""pagination, history and ttl of message batches and expiring memories: records sharing one created_at page
cleanly, a batch's history is there, metadata history is kept, an expiring memory keeps its expiry on update."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from memdock.capabilities import Capability
from memdock.conformance.context import CheckContext
from memdock.conformance.registry import NotApplicable, check
from memdock.models import EventKind


@check("pagination")
def check_a_message_batch_pages_cleanly(ctx: CheckContext) -> None:
    """A batch of 7 messages (one created_at for all) walked in pages of 2 yields each once, in
    (created_at, id) order, with a cursor on every page but the last; then pages of 7 give one page.

    Troubleshooting: a keyset cursor over created_at alone skips or repeats records sharing a time; key
    on (created_at, id).
    """
    added = ctx.memory.add([{"role": "user", "content": f"batch line {n}"} for n in range(7)], user_id=ctx.user)
    expected = sorted((r.record.created_at, r.record.id) for r in added)
    seen: list[tuple[object, str]] = []
    page = ctx.memory.list(user_id=ctx.user, limit=2)
    sizes = []
    while True:
        sizes.append(len(page.items))
        seen.extend((r.created_at, r.id) for r in page.items)
        if page.next_cursor is None:
            break
        page = ctx.memory.list(user_id=ctx.user, limit=2, cursor=page.next_cursor)
    assert seen == expected and sizes == [2, 2, 2, 1], (sizes, seen, expected)
    whole = ctx.memory.list(user_id=ctx.user, limit=7)
    assert len(whole.items) == 7 and whole.next_cursor is None, whole.next_cursor


@check("history", requires=Capability.HISTORY)
def check_a_batch_and_metadata_changes_are_in_the_history(ctx: CheckContext) -> None:
    """Each memory of a message batch has its ADD event with its text and metadata (role included); an
    update of the metadata records old and new metadata. N/A, with that reason, when the history keeps
    no metadata at all.

    Troubleshooting: record one ADD per stored record of a batch; store old/new metadata in the events.
    """
    results = ctx.memory.add([{"role": "user", "content": "batch one"}, {"role": "assistant", "content": "batch two"}],
                             user_id=ctx.user, metadata={"k": 1})
    if all(e.new_metadata is None for e in ctx.memory.history(results[0].record.id)):
        raise NotApplicable("the backend's history keeps no metadata (a gap of the service)")
    for result in results:
        events = ctx.memory.history(result.record.id)
        assert [(e.event, e.new_text, e.new_metadata) for e in events] == [
            (EventKind.ADD, result.record.text, result.record.metadata)], events
    if Capability.UPDATE in ctx.memory.capabilities:
        target = results[0].record
        ctx.memory.update(target.id, metadata={"k": 2})
        last = ctx.memory.history(target.id)[-1]
        assert (last.event, last.old_metadata, last.new_metadata) == (
            EventKind.UPDATE, {"k": 1, "role": "user"}, {"k": 2}), last


@check("ttl", requires=Capability.TTL)
def check_an_update_keeps_the_expiry(ctx: CheckContext) -> None:
    """Updating an expiring memory (text, then metadata) keeps its expires_at; it is still found until then.
    N/A without UPDATE.

    Troubleshooting: `Backend.update` writes the whole record, expires_at included; do not reset it.
    """
    if Capability.UPDATE not in ctx.memory.capabilities:
        return
    expires = datetime.now(UTC) + timedelta(hours=2)
    record = ctx.memory.add("expiring later", user_id=ctx.user, expires_at=expires)[0].record
    for change in ({"text": "expiring later, updated"}, {"metadata": {"x": 1}}):
        ctx.memory.update(record.id, **change)
        got = ctx.memory.get(record.id).expires_at
        assert got is not None and abs((got - expires).total_seconds()) < 0.001, f"after update {change}: {got}"
    assert ctx.memory.count(user_id=ctx.user) == 1
