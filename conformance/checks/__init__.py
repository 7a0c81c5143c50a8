"""The conformance checks, one module per group; importing this package registers them all."""

from memdock.conformance.checks import (  # noqa: F401
    bad_input,
    batches,
    clock,
    concurrency,
    crud,
    filter_properties,
    filters,
    history,
    identity,
    pagination,
    payloads,
    persistence,
    reopen,
    scope,
    scope_ids,
    search,
    search_modes,
    search_writes,
    stateful,
    ttl,
)
