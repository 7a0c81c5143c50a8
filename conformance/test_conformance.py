"""Collected by ``pytest --pyargs memdock.conformance --memdock-url URL``: the whole kit against URL."""

from memdock.conformance.suite import ConformanceSuite


class TestConformance(ConformanceSuite):
    """Every check against ``--memdock-url`` (default ``memory://``)."""
