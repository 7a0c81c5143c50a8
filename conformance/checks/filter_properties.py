"""filters (property): on random filters, the backend answers exactly as the reference evaluator."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memdock.capabilities import Capability
from memdock.conformance.checks.filters import DATASET
from memdock.conformance.context import CheckContext
from memdock.conformance.registry import check
from memdock.errors import InvalidFilter
from memdock.filters import evaluate, parse_mem0_filter

FIELDS = ["kind", "rating", "flag", "vegan", "tags", "note", "owner", "absent"]
SCALARS = st.sampled_from(["drink", "car", "hobby", "Hobby", "tea", 1, 2, 3.5, 4, 5, True, False, None])
NUMBERS = st.sampled_from([0, 1, 2, 3.5, 4, 5, 4.5])


def _leaf() -> st.SearchStrategy[dict[str, Any]]:
    field = st.sampled_from(FIELDS)
    return st.one_of(
        st.builds(lambda f, v: {f: v}, field, SCALARS),
        st.builds(lambda f, op, v: {f: {op: v}}, field, st.sampled_from(["eq", "ne"]), SCALARS),
        st.builds(lambda f, op, v: {f: {op: v}}, field, st.sampled_from(["in", "nin"]), st.lists(SCALARS, max_size=3)),
        st.builds(lambda op, v: {"rating": {op: v}}, st.sampled_from(["gt", "gte", "lt", "lte"]), NUMBERS),
        st.builds(lambda f: {f: "*"}, field),
    )


FILTERS = st.recursive(
    _leaf(),
    lambda inner: st.one_of(
        st.builds(lambda items: {"AND": items}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda items: {"OR": items}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda item: {"NOT": item}, inner),
    ),
    max_leaves=6,
)


@check("filters", requires=Capability.FILTER_RANGE)
def check_random_filters_agree_with_the_reference(ctx: CheckContext) -> None:
    """40 random filter trees (hypothesis, derandomized) give the same `list` answer as the reference
    evaluator on the shared dataset, and raise InvalidFilter exactly when it does.

    Troubleshooting: run the failing filter printed here through `memdock.filters.evaluate` and your
    compiler side by side; NOT over fields some records lack and bool-vs-number equality are the usual causes.
    """
    for text, metadata in DATASET:
        ctx.memory.add(text, user_id=ctx.user, metadata=metadata)
    records = ctx.memory.list(user_id=ctx.user, limit=100).items

    @settings(max_examples=40, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(FILTERS)
    def agree(flt: dict[str, Any]) -> None:
        try:
            expected: list[str] | str = sorted(r.text for r in records if evaluate(parse_mem0_filter(flt), r))
        except InvalidFilter:
            expected = "InvalidFilter"
        try:
            got: list[str] | str = sorted(r.text for r in ctx.memory.list(user_id=ctx.user, filter=flt).items)
        except InvalidFilter:
            got = "InvalidFilter"
        assert got == expected, f"filter {flt}: backend {got}, reference {expected}"

    agree()
