"""The conformance checks, one module per group; importing this package registers them all."""

from memdock.conformance.checks import (  # noqa: F401
    bad_input,
    concurrency,
    crud,
    filter_properties,
    filters,
    history,
    pagination,
    payloads,
    persistence,
    scope,
    search,
    ttl,
)
