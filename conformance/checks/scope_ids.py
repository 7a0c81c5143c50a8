"""scope (every id): run_id and app_id isolate like user_id; ids that are prefixes or case variants of each
other are different scopes; delete_all(user, agent) stays inside the agent."""

from __future__ import annotations

from memdock.conformance.context import CheckContext
from memdock.conformance.registry import NotApplicable, check


@check("scope")
def check_prefix_and_case_variants_are_other_scopes(ctx: CheckContext) -> None:
    """Under each of the four fields, ids "X", "X0" (X is its prefix) and "x" are three scopes: list, count,
    search and delete_all under one never see the others.

    (Fields the backend refuses with Unsupported are left out.)

    Troubleshooting: compare scope ids for exact, case-sensitive equality (no LIKE, no prefix match, no
    case-insensitive collation, no lower-casing on the way in).
    """
    base = ctx.user.upper()
    variants = (base, f"{base}0", base.lower())
    for field in ctx.scope_fields():
        for value in variants:
            ctx.memory.add(f"{field} {value}", **{field: value})  # type: ignore[arg-type]
        for value in variants:
            scope = {field: value}
            listed = [r.text for r in ctx.memory.list(**scope).items]  # type: ignore[arg-type]
            found = [h.record.text for h in ctx.memory.search(f"{field} {value}", limit=10, **scope)]  # type: ignore[arg-type]
            counted = ctx.memory.count(**scope)  # type: ignore[arg-type]
            assert listed == found == [f"{field} {value}"] and counted == 1, \
                f"{field}={value!r}: list {listed}, search {found}, count {counted}"
        assert ctx.memory.delete_all(**{field: variants[0]}) == 1  # type: ignore[arg-type]
        assert ctx.memory.count(**{field: variants[1]}) == ctx.memory.count(**{field: variants[2]}) == 1  # type: ignore[arg-type]
        for value in variants[1:]:
            ctx.memory.delete_all(**{field: value})  # type: ignore[arg-type]


@check("scope")
def check_run_and_app_ids_isolate(ctx: CheckContext) -> None:
    """Memories written with run_id or app_id (alone or with user_id) are seen only by reads naming the same
    ids: another run or app sees nothing, a user-only read sees them all. (N/A when the backend refuses
    both fields with Unsupported.)

    Troubleshooting: store and query all four scope ids, not only user_id and agent_id.
    """
    fields = [f for f in ("run_id", "app_id") if f in ctx.scope_fields()]
    if not fields:
        raise NotApplicable("the backend supports neither run_id nor app_id")
    for field in fields:
        ctx.memory.add(f"{field} note", user_id=ctx.user, **{field: "one"})  # type: ignore[arg-type]
    ctx.memory.add("bare note", **{fields[0]: f"{ctx.user}-bare"})  # type: ignore[arg-type]
    assert ctx.memory.count(user_id=ctx.user) == len(fields)
    for field in fields:
        one, two = {field: "one"}, {field: "two"}
        assert [r.text for r in ctx.memory.list(user_id=ctx.user, **one).items] == [f"{field} note"]  # type: ignore[arg-type]
        assert ctx.memory.count(user_id=ctx.user, **two) == 0  # type: ignore[arg-type]
        hits = ctx.memory.search("note", user_id=ctx.user, **one)  # type: ignore[arg-type]
        assert [h.record.text for h in hits] == [f"{field} note"], [h.record.text for h in hits]
    assert [r.text for r in ctx.memory.list(**{fields[0]: f"{ctx.user}-bare"}).items] == ["bare note"]  # type: ignore[arg-type]
    assert ctx.memory.delete_all(**{fields[0]: f"{ctx.user}-bare"}) == 1  # type: ignore[arg-type]


@check("scope")
def check_delete_all_of_user_and_agent_is_confined_to_the_agent(ctx: CheckContext) -> None:
    """delete_all(user, agent) deletes that agent's memories of the user only: the user's own, another
    agent's and another user's with the same agent stay; then 30 memories deleted at once recount to 0.

    Troubleshooting: delete what `list` of the whole scope (every id given) returns; never drop ids.
    """
    ctx.memory.add("agent A note", user_id=ctx.user, agent_id=ctx.agent)
    ctx.memory.add("agent B note", user_id=ctx.user, agent_id=f"{ctx.agent}-b")
    ctx.memory.add("user note", user_id=ctx.user)
    ctx.memory.add("other user, agent A", user_id=ctx.other, agent_id=ctx.agent)
    assert ctx.memory.delete_all(user_id=ctx.user, agent_id=ctx.agent) == 1
    assert sorted(r.text for r in ctx.memory.list(user_id=ctx.user).items) == ["agent B note", "user note"]
    assert ctx.memory.count(user_id=ctx.other) == 1
    ctx.memory.add([{"role": "user", "content": f"bulk {n}"} for n in range(30)], user_id=ctx.user, agent_id="bulk")
    assert ctx.memory.count(user_id=ctx.user, agent_id="bulk") == 30
    assert ctx.memory.delete_all(user_id=ctx.user, agent_id="bulk") == 30
    assert ctx.memory.count(user_id=ctx.user, agent_id="bulk") == 0 and ctx.memory.count(user_id=ctx.user) == 2
