"""`memdock conformance URL [--json] [--group G]`: run the kit and print the report."""

from __future__ import annotations

from memdock.conformance.report import as_json, as_table
from memdock.conformance.runner import run


def run_cli(url: str, *, as_json_output: bool, groups: list[str] | None) -> int:
    """Print the report for `url`; 0 only when no check FAILs."""
    report = run(url, groups)
    print(as_json(report) if as_json_output else as_table(report))
    return 1 if report.failed else 0
