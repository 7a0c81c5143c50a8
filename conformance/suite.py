"""`ConformanceSuite`: every conformance check as a pytest test method, for third parties to subclass.

    from memdock.conformance.suite import ConformanceSuite

    class TestMyBackend(ConformanceSuite):
        @pytest.fixture
        def backend_url(self, tmp_path):
            return f"mystore:///{tmp_path}/data"

A check whose capability the backend does not declare is skipped with the reason "capability X not
declared". Overriding a check method is allowed only with `declared_gap("why")`; otherwise the meta-test
`test_no_check_is_overridden_without_a_reason` fails, so a red check cannot be silently switched off.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from memdock.conformance.context import DEFAULT_SEED
from memdock.conformance.registry import Check, all_checks
from memdock.conformance.runner import Status, run_check

F = TypeVar("F", bound=Callable[..., Any])
REASON_ATTRIBUTE = "__memdock_declared_gap__"


def declared_gap(reason: str) -> Callable[[F], F]:
    """Mark an overriding check method as a declared gap (it is skipped with `reason`)."""
    if not reason.strip():
        raise ValueError("a declared gap needs a reason")

    def mark(function: F) -> F:
        setattr(function, REASON_ATTRIBUTE, reason)
        marked: F = pytest.mark.skip(reason=f"declared gap: {reason}")(function)
        return marked

    return mark


def method_name(check: Check) -> str:
    """The test method name of a check."""
    return f"test_{check.group}__{check.name}"


class ConformanceSuite:
    """Every registered check as a test method; override `backend_url` to point it at your backend."""

    @pytest.fixture
    def backend_url(self, memdock_url: str) -> str:
        """The URL under test (default: ``--memdock-url``)."""
        return memdock_url

    def test_no_check_is_overridden_without_a_reason(self) -> None:
        """Meta-check: a subclass may replace a check only with `declared_gap("reason")`."""
        silent = [
            name
            for name in (method_name(c) for c in all_checks())
            if getattr(type(self), name) is not getattr(ConformanceSuite, name)
            and not hasattr(getattr(type(self), name), REASON_ATTRIBUTE)
        ]
        assert silent == [], f"checks overridden without declared_gap(reason): {silent}"


def _options(request: pytest.FixtureRequest) -> tuple[int, bool]:
    """``--memdock-seed`` and ``--memdock-thorough`` (defaults when the plugin's options are absent)."""
    seed = request.config.getoption("--memdock-seed", default=None)
    thorough = request.config.getoption("--memdock-thorough", default=False)
    return (DEFAULT_SEED if seed is None else int(seed)), bool(thorough)


def _make_test(check: Check) -> Callable[[ConformanceSuite, str, pytest.FixtureRequest], None]:
    def test(self: ConformanceSuite, backend_url: str, request: pytest.FixtureRequest) -> None:
        seed, thorough = _options(request)
        result = run_check(check, backend_url, seed=seed, thorough=thorough)
        if result.status is Status.NA:
            pytest.skip(result.detail)
        assert result.status is Status.PASS, f"{check.group}/{check.name}: {result.detail}\n\n{check.doc}"

    test.__name__ = method_name(check)
    test.__qualname__ = f"ConformanceSuite.{test.__name__}"
    test.__doc__ = check.doc
    return test


for _check in all_checks():
    setattr(ConformanceSuite, method_name(_check), _make_test(_check))
