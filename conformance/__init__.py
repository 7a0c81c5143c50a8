"""The memdock conformance kit: checks every backend must pass, grouped by capability.

`run(url)` returns a `Report`; ``memdock conformance URL`` prints it.
"""

from memdock.conformance.context import CheckContext, fresh_url
from memdock.conformance.registry import Check, all_checks, check
from memdock.conformance.runner import Report, Result, Status, run

__all__ = ["Check", "CheckContext", "Report", "Result", "Status", "all_checks", "check", "fresh_url", "run"]
