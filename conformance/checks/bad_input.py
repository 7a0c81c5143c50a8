"""bad_input: typed errors naming the field, and the store unchanged afterwards."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from memdock.conformance.context import CheckContext
from memdock.conformance.registry import check
from memdock.errors import InvalidInput, ScopeRequired


def _refused(ctx: CheckContext, attempt: Callable[[], Any], field: str, error: type[Exception] = InvalidInput) -> None:
    before = ctx.memory.count(user_id=ctx.user)
    try:
        attempt()
    except error as exc:
        named = getattr(exc, "field", None)
        assert named is None or field in str(named), (field, exc)
    else:
        raise AssertionError(f"expected {error.__name__} for {field}")
    assert ctx.memory.count(user_id=ctx.user) == before, "the store changed after refused input"


@check("bad_input")
def check_empty_and_non_string_text_refused(ctx: CheckContext) -> None:
    """Empty, blank and non-string texts raise InvalidInput naming the text, storing nothing.

    Troubleshooting: validation happens in `Memory`; a backend must not store records it was not given.
    """
    ctx.memory.add("already here", user_id=ctx.user)
    _refused(ctx, lambda: ctx.memory.add("", user_id=ctx.user), "text")
    _refused(ctx, lambda: ctx.memory.add("   ", user_id=ctx.user), "text")
    _refused(ctx, lambda: ctx.memory.add(42, user_id=ctx.user), "data")  # type: ignore[arg-type]


@check("bad_input")
def check_missing_scope_refused(ctx: CheckContext) -> None:
    """Writes and reads without any scope id raise ScopeRequired.

    Troubleshooting: never treat an empty scope as 'everything'.
    """
    _refused(ctx, lambda: ctx.memory.add("orphan"), "scope", ScopeRequired)
    _refused(ctx, lambda: ctx.memory.search("orphan"), "scope", ScopeRequired)
    _refused(ctx, lambda: ctx.memory.delete_all(), "scope", ScopeRequired)


@check("bad_input")
def check_bad_metadata_refused(ctx: CheckContext) -> None:
    """Non-object metadata, a scope id used as a key, and NaN raise InvalidInput naming metadata.

    Troubleshooting: metadata must be JSON; scope ids are arguments, not metadata.
    """
    _refused(ctx, lambda: ctx.memory.add("x", user_id=ctx.user, metadata=[1]), "metadata")  # type: ignore[arg-type]
    _refused(ctx, lambda: ctx.memory.add("x", user_id=ctx.user, metadata={"user_id": "b"}), "metadata")
    _refused(ctx, lambda: ctx.memory.add("x", user_id=ctx.user, metadata={"v": float("nan")}), "metadata")


@check("bad_input")
def check_oversize_values_refused(ctx: CheckContext) -> None:
    """A text over the size limit and an absurd limit raise InvalidInput, storing nothing.

    Troubleshooting: limits are enforced in `Memory`; do not raise driver errors for large values.
    """
    _refused(ctx, lambda: ctx.memory.add("x" * (600 * 1024), user_id=ctx.user), "text")
    _refused(ctx, lambda: ctx.memory.search("x", user_id=ctx.user, limit=0), "limit")
    _refused(ctx, lambda: ctx.memory.search("x", user_id=ctx.user, threshold=1.5), "threshold")


@check("bad_input")
def check_bad_filters_refused(ctx: CheckContext) -> None:
    """Unknown operators, non-list `in`, and non-number ordering operands raise InvalidFilter.

    Troubleshooting: parse with `memdock.filters.parse_mem0_filter`.
    """
    for flt in ({"a": {"near": 1}}, {"a": {"in": "x"}}, {"a": {"gt": "x"}}, {"a": [1, 2]}, {"AND": {"a": 1}}):
        _refused(ctx, functools.partial(ctx.memory.list, user_id=ctx.user, filter=flt), "")
