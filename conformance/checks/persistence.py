"""persistence: close and reopen the same URL, everything is still there."""

from __future__ import annotations

from memdock.capabilities import Capability
from memdock.conformance.context import CheckContext
from memdock.conformance.registry import check


@check("persistence", requires=Capability.PERSISTENCE)
def check_reopen_keeps_memories_metadata_and_search(ctx: CheckContext) -> None:
    """After close() and reopening the URL, memories, metadata and search results are unchanged.

    Troubleshooting: flush writes before close(); store everything a record needs, including vectors.
    """
    record = ctx.memory.add("durable green tea", user_id=ctx.user, metadata={"n": 1})[0].record
    ctx.memory.add("durable red car", user_id=ctx.user)
    memory = ctx.reopen()
    assert memory.get(record.id).metadata == {"n": 1}
    assert memory.count(user_id=ctx.user) == 2
    assert memory.search("durable green tea", user_id=ctx.user, limit=1)[0].record.id == record.id


@check("persistence", requires=Capability.PERSISTENCE)
def check_reopen_keeps_history(ctx: CheckContext) -> None:
    """History survives reopening (when HISTORY is declared too).

    Troubleshooting: keep history in durable storage next to the records.
    """
    record = ctx.memory.add("durable", user_id=ctx.user)[0].record
    memory = ctx.reopen()
    if Capability.HISTORY in memory.capabilities:
        assert [e.event.value for e in memory.history(record.id)] == ["ADD"]
