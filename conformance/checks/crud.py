"""crud and dedup: add, get, update, delete, ids, inputs left alone, missing ids."""

from __future__ import annotations

import copy

from memdock.capabilities import Capability
from memdock.conformance.context import CheckContext
from memdock.conformance.registry import check
from memdock.errors import InvalidInput, MemoryNotFound
from memdock.models import EventKind


@check("crud")
def check_add_then_get_returns_the_same_memory(ctx: CheckContext) -> None:
    """A memory read back by id has the text, scope and metadata it was added with.

    Troubleshooting: `Backend.get` must return the stored record (text, scope ids, metadata) unchanged;
    check how your backend maps scope ids and metadata into its storage and back.
    """
    added = ctx.memory.add("likes green tea", user_id=ctx.user, metadata={"k": "v"})[0].record
    got = ctx.memory.get(added.id)
    assert (got.text, got.scope.user_id, got.metadata) == ("likes green tea", ctx.user, {"k": "v"}), got


@check("crud", requires=Capability.UPDATE)
def check_ids_are_generated_unique_and_kept(ctx: CheckContext) -> None:
    """Each add gets a fresh id, and the id does not change on update.

    Troubleshooting: store the id `Memory` stamps on the record (or, if your store assigns ids, return the
    stored records from `Backend.add`); never change an id in `update`.
    """
    ids = [ctx.memory.add(f"fact {n}", user_id=ctx.user)[0].record.id for n in range(5)]
    assert len(set(ids)) == 5, ids
    ctx.memory.update(ids[0], text="fact changed")
    assert ctx.memory.get(ids[0]).text == "fact changed"


@check("crud", requires=Capability.UPDATE)
def check_inputs_are_not_mutated(ctx: CheckContext) -> None:
    """Adding and updating never change the caller's metadata object.

    Troubleshooting: copy metadata before adding internal keys to it.
    """
    metadata = {"nested": {"a": [1, 2]}, "s": "x"}
    before = copy.deepcopy(metadata)
    record = ctx.memory.add("immutable input", user_id=ctx.user, metadata=metadata)[0].record
    ctx.memory.update(record.id, metadata=metadata)
    assert metadata == before, metadata


@check("crud", requires=Capability.UPDATE)
def check_update_replaces_text_and_metadata(ctx: CheckContext) -> None:
    """update(text=, metadata=) replaces both, and the new text is what search finds.

    Troubleshooting: `Backend.update` must replace text, metadata, hash, updated_at and the vector.
    """
    record = ctx.memory.add("plays the violin", user_id=ctx.user, metadata={"v": 1})[0].record
    result = ctx.memory.update(record.id, text="plays the cello", metadata={"v": 2})
    assert result.event is EventKind.UPDATE, result.event
    got = ctx.memory.get(record.id)
    assert (got.text, got.metadata) == ("plays the cello", {"v": 2}), got
    assert ctx.memory.search("plays the cello", user_id=ctx.user, limit=1)[0].record.id == record.id


@check("crud")
def check_delete_removes_only_that_memory(ctx: CheckContext) -> None:
    """delete(id) removes that memory and no other.

    Troubleshooting: `Backend.delete` must delete by id only.
    """
    keep = ctx.memory.add("keep me", user_id=ctx.user)[0].record
    gone = ctx.memory.add("delete me", user_id=ctx.user)[0].record
    ctx.memory.delete(gone.id)
    assert ctx.memory.count(user_id=ctx.user) == 1
    assert ctx.memory.get(keep.id).text == "keep me"


@check("crud")
def check_missing_ids_raise_memory_not_found(ctx: CheckContext) -> None:
    """get/update/delete of an unknown or deleted id raise MemoryNotFound.

    Troubleshooting: `Backend.get` must return None for a missing id (not raise, not return a stub).
    """
    record = ctx.memory.add("short lived", user_id=ctx.user)[0].record
    ctx.memory.delete(record.id)
    for operation in (
        lambda: ctx.memory.get(record.id),
        lambda: ctx.memory.update(record.id, text="x"),
        lambda: ctx.memory.delete(record.id),
        lambda: ctx.memory.get("no-such-id"),
    ):
        try:
            operation()
        except MemoryNotFound:
            continue
        raise AssertionError("expected MemoryNotFound")


@check("dedup")
def check_same_text_same_scope_is_stored_once(ctx: CheckContext) -> None:
    """Adding the same text twice in one scope returns the first record with event NONE.

    Troubleshooting: `find_by_hash` must find a live record whose scope equals the given one exactly.
    """
    first = ctx.memory.add("I like green tea", user_id=ctx.user)[0]
    second = ctx.memory.add("I like green tea", user_id=ctx.user)[0]
    assert second.event is EventKind.NONE and second.record.id == first.record.id, second
    assert ctx.memory.count(user_id=ctx.user) == 1


@check("dedup")
def check_same_text_other_scope_is_a_new_memory(ctx: CheckContext) -> None:
    """The same text in another scope (even a narrower one) is a separate memory.

    Troubleshooting: `find_by_hash` compares the whole scope (all four ids, set or unset), not a prefix.
    """
    first = ctx.memory.add("I like green tea", user_id=ctx.user)[0].record
    narrower = ctx.memory.add("I like green tea", user_id=ctx.user, agent_id=ctx.agent)[0]
    other = ctx.memory.add("I like green tea", user_id=ctx.other)[0]
    assert narrower.event is EventKind.ADD and narrower.record.id != first.id
    assert other.event is EventKind.ADD and other.record.id != first.id


@check("dedup")
def check_duplicate_messages_in_one_batch_are_stored_once(ctx: CheckContext) -> None:
    """A message list that repeats a text stores it once.

    Troubleshooting: `Memory` dedups within a batch; your `add` must store exactly the records given.
    """
    results = ctx.memory.add(
        [{"role": "user", "content": "same line"}, {"role": "assistant", "content": "same line"}], user_id=ctx.user
    )
    assert [r.event for r in results] == [EventKind.ADD, EventKind.NONE], results
    assert ctx.memory.count(user_id=ctx.user) == 1


@check("dedup", requires=Capability.UPDATE)
def check_update_to_a_text_the_scope_already_holds_is_refused(ctx: CheckContext) -> None:
    """Updating a memory to the text another memory of its scope holds raises InvalidInput (field text)
    and changes nothing; the same text in another scope is fine.

    Troubleshooting: `Memory.update` asks `find_by_hash` for the new text first; a database uniqueness rule
    on (scope, hash) must answer the same way if two writers race.
    """
    first = ctx.memory.add("likes tea", user_id=ctx.user)[0].record
    second = ctx.memory.add("likes coffee", user_id=ctx.user)[0].record
    elsewhere = ctx.memory.add("likes cocoa", user_id=ctx.other)[0].record
    try:
        ctx.memory.update(second.id, text="likes tea")
        raise AssertionError("update to a duplicate text was accepted")
    except InvalidInput as exc:
        assert exc.field == "text", exc.field
    assert ctx.memory.get(second.id).text == "likes coffee"
    assert ctx.memory.update(elsewhere.id, text="likes tea").record.text == "likes tea"
    assert ctx.memory.get(first.id).text == "likes tea"
