"""pagination: stable order, no duplicates, no gaps, cursors that survive deletes."""

from __future__ import annotations

from memdock.conformance.context import CheckContext
from memdock.conformance.registry import check
from memdock.errors import InvalidInput


def _walk(ctx: CheckContext, limit: int) -> list[str]:
    ids: list[str] = []
    page = ctx.memory.list(user_id=ctx.user, limit=limit)
    while True:
        ids.extend(r.id for r in page.items)
        if page.next_cursor is None:
            return ids
        page = ctx.memory.list(user_id=ctx.user, limit=limit, cursor=page.next_cursor)


@check("pagination")
def check_pages_cover_everything_once(ctx: CheckContext) -> None:
    """Walking pages of 3 over 10 memories yields each exactly once, and the last page has no cursor.

    Troubleshooting: order by (created_at, id) and use keyset cursors (`memdock.pagination.page_of`).
    """
    added = {ctx.memory.add(f"item {n}", user_id=ctx.user)[0].record.id for n in range(10)}
    ids = _walk(ctx, 3)
    assert len(ids) == len(set(ids)) == 10 and set(ids) == added, ids


@check("pagination")
def check_order_is_stable(ctx: CheckContext) -> None:
    """Two walks return the same order, oldest first.

    Troubleshooting: never rely on storage order; sort by (created_at, id).
    """
    for n in range(6):
        ctx.memory.add(f"item {n}", user_id=ctx.user)
    first, second = _walk(ctx, 4), _walk(ctx, 2)
    assert first == second, (first, second)
    created = [ctx.memory.get(i).created_at for i in first]
    assert created == sorted(created), created


@check("pagination")
def check_cursor_survives_deletes(ctx: CheckContext) -> None:
    """Deleting memories already seen does not make the next page repeat or skip the rest.

    Troubleshooting: a cursor must name a position (the last key), not an offset.
    """
    for n in range(9):
        ctx.memory.add(f"item {n}", user_id=ctx.user)
    page = ctx.memory.list(user_id=ctx.user, limit=3)
    for record in page.items:
        ctx.memory.delete(record.id)
    rest: list[str] = []
    cursor = page.next_cursor
    while cursor is not None:
        page = ctx.memory.list(user_id=ctx.user, limit=3, cursor=cursor)
        rest.extend(r.id for r in page.items)
        cursor = page.next_cursor
    assert len(rest) == len(set(rest)) == 6, rest


@check("pagination")
def check_malformed_cursor_is_invalid_input(ctx: CheckContext) -> None:
    """A made-up cursor raises InvalidInput naming `cursor`.

    Troubleshooting: validate cursors with `memdock.pagination.decode_cursor`.
    """
    try:
        ctx.memory.list(user_id=ctx.user, cursor="not-a-cursor")
    except InvalidInput as exc:
        assert exc.field == "cursor", exc.field
        return
    raise AssertionError("expected InvalidInput")
