"""crud (identity and replacement): ids never reused, returned records independent of the store, metadata
replaced rather than merged, reset() when declared."""

from __future__ import annotations

from memdock.capabilities import Capability
from memdock.conformance.context import CheckContext
from memdock.conformance.registry import NotApplicable, check
from memdock.errors import MemoryNotFound, Unsupported


@check("crud")
def check_ids_are_never_reused(ctx: CheckContext) -> None:
    """After a delete, adding the same text in the same scope (and 20 add/delete cycles) never hands out an
    id that was used before, and the deleted id stays missing.

    Troubleshooting: generate ids (uuid4) for every add; never derive them from the text, the scope or a
    counter that restarts; never resurrect a deleted row.
    """
    seen: list[str] = []
    for _ in range(20):
        record = ctx.memory.add("recycled text", user_id=ctx.user)[0].record
        assert record.id not in seen, f"id {record.id} was used before (by a deleted memory)"
        seen.append(record.id)
        ctx.memory.delete(record.id)
    for old in seen[:3]:
        try:
            ctx.memory.get(old)
        except MemoryNotFound:
            continue
        raise AssertionError(f"deleted id {old} is readable again")


@check("crud")
def check_returned_records_are_independent_of_the_store(ctx: CheckContext) -> None:
    """Changing a record (its metadata dict, nested lists) returned by add, get, list or search changes
    nothing stored.

    Troubleshooting: return copies (`model_copy(deep=True)`), never the objects your store keeps.
    """
    metadata = {"tags": ["a"], "o": {"k": 1}}
    added = ctx.memory.add("independent", user_id=ctx.user, metadata=metadata)[0].record
    returned = [
        added,
        ctx.memory.get(added.id),
        ctx.memory.list(user_id=ctx.user).items[0],
        ctx.memory.search("independent", user_id=ctx.user, limit=1)[0].record,
    ]
    for n, record in enumerate(returned):
        record.metadata["tags"].append(f"changed {n}")
        record.metadata["o"]["k"] = n + 100
        record.metadata[f"new{n}"] = True
        record.text = "changed"
        got = ctx.memory.get(added.id)
        assert (got.text, got.metadata) == ("independent", metadata), \
            f"changing the record returned by call #{n} (add, get, list, search) changed the store: {got}"


@check("crud", requires=Capability.UPDATE)
def check_update_replaces_metadata_rather_than_merging(ctx: CheckContext) -> None:
    """update(metadata=) replaces the whole object: {"a": 1, "b": {"c": 2}} updated to {"d": 3} reads back
    as {"d": 3}, and updated to {} as {}; get, list and search agree.

    Troubleshooting: write the new metadata as a whole; do not merge it into the stored one (mem0's server
    PUT merges; send the full object and remove keys the new one lacks, or refuse).
    """
    record = ctx.memory.add("replace my metadata", user_id=ctx.user, metadata={"a": 1, "b": {"c": 2}})[0].record
    for new in ({"d": 3}, {}, {"a": 2}):
        ctx.memory.update(record.id, metadata=new)
        seen = [
            ctx.memory.get(record.id).metadata,
            ctx.memory.list(user_id=ctx.user).items[0].metadata,
            ctx.memory.search("replace my metadata", user_id=ctx.user, limit=1)[0].record.metadata,
        ]
        assert seen == [new, new, new], f"after update(metadata={new}): get, list, search read {seen}"


@check("crud")
def check_reset_deletes_everything_when_supported(ctx: CheckContext) -> None:
    """A backend whose reset() works deletes every memory of every scope and its history; afterwards the
    store works as new. N/A when reset() raises Unsupported.

    Troubleshooting: reset() clears records and history of the namespace, nothing else; it must not leave
    a dedup index or a cache behind (the re-added text must be a new memory).
    """
    first = ctx.memory.add("before reset", user_id=ctx.user)[0].record
    ctx.memory.add("other scope", agent_id=ctx.agent)
    try:
        ctx.memory.reset()
    except Unsupported as exc:
        raise NotApplicable(f"reset() is not supported: {exc}") from None
    assert ctx.memory.count(user_id=ctx.user) == 0 and ctx.memory.count(agent_id=ctx.agent) == 0
    again = ctx.memory.add("before reset", user_id=ctx.user)[0]
    assert again.event.value == "ADD" and again.record.id != first.id, again
    if Capability.HISTORY in ctx.memory.capabilities:
        try:
            events = ctx.memory.history(first.id)
        except MemoryNotFound:
            events = []
        assert events == [], f"history survived reset(): {events}"
