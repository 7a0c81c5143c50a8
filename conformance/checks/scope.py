"""scope: a memory written under one scope is never visible or changeable from another."""

from __future__ import annotations

from memdock.conformance.context import CheckContext
from memdock.conformance.registry import check
from memdock.errors import MemoryNotFound
from memdock.models import Scope


def _two_users(ctx: CheckContext) -> str:
    ctx.memory.add("mine: green tea", user_id=ctx.user, metadata={"topic": "drink"})
    return ctx.memory.add("theirs: green tea", user_id=ctx.other, metadata={"topic": "drink"})[0].record.id


@check("scope")
def check_search_never_returns_another_users_memory(ctx: CheckContext) -> None:
    """search under user A never returns user B's memories, however similar, in every search mode.

    Troubleshooting: push the scope ids into every query (the keyword one too), or filter candidates with
    `Scope.contains`.
    """
    _two_users(ctx)
    for mode in ctx.search_modes():
        hits = ctx.memory.search("theirs: green tea", user_id=ctx.user, limit=10, mode=mode)
        assert [h.record.scope.user_id for h in hits] == [ctx.user], (mode, hits)


@check("scope")
def check_list_and_count_are_confined(ctx: CheckContext) -> None:
    """list and count under user A see only A's memories.

    Troubleshooting: the scope clause must be part of `list` and `count` as well as `search`.
    """
    _two_users(ctx)
    assert [r.scope.user_id for r in ctx.memory.list(user_id=ctx.user).items] == [ctx.user]
    assert ctx.memory.count(user_id=ctx.user) == 1


@check("scope")
def check_delete_all_is_confined(ctx: CheckContext) -> None:
    """delete_all for user A leaves user B's memories alone.

    Troubleshooting: `Memory.delete_all` deletes what `list` returns; check the scope clause of `list`.
    """
    _two_users(ctx)
    assert ctx.memory.delete_all(user_id=ctx.user) == 1
    assert ctx.memory.count(user_id=ctx.other) == 1


@check("scope")
def check_filters_naming_scope_fields_cannot_escape(ctx: CheckContext) -> None:
    """A filter {"user_id": B} under scope A returns nothing rather than B's memories.

    Troubleshooting: AND the filter with the scope; never let a filter replace the scope clause.
    """
    _two_users(ctx)
    flt = {"user_id": ctx.other}
    assert ctx.memory.list(user_id=ctx.user, filter=flt).items == []
    for mode in ctx.search_modes():
        assert ctx.memory.search("green tea", user_id=ctx.user, filter=flt, mode=mode) == [], mode
    assert ctx.memory.count(user_id=ctx.user, filter={"OR": [flt, {"topic": "drink"}]}) == 1


@check("scope")
def check_scoped_get_update_delete_refuse_other_scopes(ctx: CheckContext) -> None:
    """get/update/delete/history with scope A on B's id raise MemoryNotFound and change nothing.

    Troubleshooting: `Backend.get` must return the record's true scope so `Memory` can compare it.
    """
    theirs = _two_users(ctx)
    mine = Scope(user_id=ctx.user)
    for operation in (
        lambda: ctx.memory.get(theirs, scope=mine),
        lambda: ctx.memory.update(theirs, text="hijacked", scope=mine),
        lambda: ctx.memory.delete(theirs, scope=mine),
    ):
        try:
            operation()
        except MemoryNotFound:
            continue
        raise AssertionError("expected MemoryNotFound across scopes")
    assert ctx.memory.get(theirs).text == "theirs: green tea"


@check("scope")
def check_narrower_scopes_are_visible_to_wider_reads(ctx: CheckContext) -> None:
    """A memory written with user+agent is seen by a user-only read, but not by another agent's read.

    Troubleshooting: a read matches records whose ids EQUAL every id the read sets; unset ids are wildcards.
    """
    ctx.memory.add("agent note", user_id=ctx.user, agent_id=ctx.agent)
    assert ctx.memory.count(user_id=ctx.user) == 1
    assert ctx.memory.count(user_id=ctx.user, agent_id=ctx.agent) == 1
    assert ctx.memory.count(user_id=ctx.user, agent_id="another-agent") == 0
    assert ctx.memory.count(agent_id=ctx.agent) == 1
