"""The memdock conformance kit: checks every backend must pass, grouped by capability.

`run(url)` returns a `Report`; ``memdock conformance URL`` prints it. The names below are imported on
first use (PEP 562), so that loading the ``conformance`` command does not load the kit.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from memdock.conformance.context import CheckContext, fresh_url
    from memdock.conformance.registry import Check, NotApplicable, all_checks, check
    from memdock.conformance.runner import Report, Result, Status, run

_LAZY = {
    **dict.fromkeys(("CheckContext", "fresh_url"), "memdock.conformance.context"),
    **dict.fromkeys(("Check", "NotApplicable", "all_checks", "check"), "memdock.conformance.registry"),
    **dict.fromkeys(("Report", "Result", "Status", "run"), "memdock.conformance.runner"),
}
"""Re-exported name -> the module that defines it."""


def __getattr__(name: str) -> Any:
    """Import a lazily re-exported name and keep it in the package."""
    if name not in _LAZY:
        raise AttributeError(f"module 'memdock.conformance' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "Check", "CheckContext", "NotApplicable", "Report", "Result", "Status", "all_checks", "check", "fresh_url", "run",
]
