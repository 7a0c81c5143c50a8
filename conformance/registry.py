"""The check registry: every conformance check is a function registered once with `@check`."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

from memdock.capabilities import Capability
from memdock.conformance.context import CheckContext

CheckFunction = Callable[[CheckContext], None]


@dataclass(frozen=True)
class Check:
    """One check: its group, name, the capability it needs (None = every backend) and its docstring."""

    group: str
    name: str
    function: CheckFunction
    requires: Capability | None
    doc: str


class NotApplicable(Exception):
    """Raised by a check that finds, while running, that it cannot apply to this backend (the message
    says why); the runner reports N/A with that reason."""


_checks: dict[tuple[str, str], Check] = {}


def check(group: str, *, requires: Capability | None = None) -> Callable[[CheckFunction], CheckFunction]:
    """Register a check. Its docstring must say what it proves and have a ``Troubleshooting:`` section."""

    def register(function: CheckFunction) -> CheckFunction:
        name = function.__name__.removeprefix("check_")
        key = (group, name)
        if key in _checks:
            raise ValueError(f"conformance check {group}/{name} registered twice")
        _checks[key] = Check(group, name, function, requires, inspect.getdoc(function) or "")
        return function

    return register


def all_checks() -> list[Check]:
    """Every registered check, in group then definition order (importing the check modules first)."""
    import memdock.conformance.checks  # noqa: F401 - registers the checks

    return list(_checks.values())
