"""Runs checks against a backend URL and builds a `Report`."""

from __future__ import annotations

import contextlib
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from memdock.backend import redact
from memdock.conformance.context import DEFAULT_SEED, CheckContext
from memdock.conformance.registry import Check, NotApplicable, all_checks
from memdock.errors import InvalidInput

BASE_GROUPS = frozenset({"crud", "dedup", "scope", "search", "pagination", "bad_input", "timestamps", "payloads",
                         "stateful"})


class Status(StrEnum):
    """Outcome of one check."""

    PASS = "PASS"
    FAIL = "FAIL"
    NA = "N/A"


@dataclass(frozen=True)
class Result:
    """One check's outcome; `detail` says why it failed or which capability was not declared."""

    group: str
    check: str
    status: Status
    detail: str
    seconds: float


@dataclass(frozen=True)
class Report:
    """All results for one URL (password redacted)."""

    url: str
    results: list[Result]
    seed: int = DEFAULT_SEED
    thorough: bool = False

    @property
    def failed(self) -> bool:
        """True when any check failed."""
        return any(r.status is Status.FAIL for r in self.results)

    @property
    def level(self) -> str:
        """FULL: no FAIL, no N/A. BASE: no base-group check fails (one that cannot apply to this backend
        is N/A, with its reason) and at least one passes. PARTIAL: anything less."""
        if not self.failed and all(r.status is Status.PASS for r in self.results):
            return "FULL"
        base = [r for r in self.results if r.group in BASE_GROUPS]
        passing = any(r.status is Status.PASS for r in base)
        return "BASE" if passing and all(r.status is not Status.FAIL for r in base) else "PARTIAL"


def run_check(item: Check, base_url: str, *, seed: int = DEFAULT_SEED, thorough: bool = False) -> Result:
    """Run one check on a fresh namespace; N/A when its capability is not declared. `seed` and `thorough`
    reach the randomised checks (see `CheckContext`)."""
    started = time.perf_counter()
    context = CheckContext.open(base_url, seed=seed, thorough=thorough)
    try:
        if item.requires is not None and not context.has(item.requires):
            return Result(item.group, item.name, Status.NA, f"capability {item.requires.value} not declared", 0.0)
        item.function(context)
        status, detail = Status.PASS, ""
    except NotApplicable as exc:
        status, detail = Status.NA, str(exc)
    except AssertionError as exc:
        status, detail = Status.FAIL, str(exc) or "assertion failed"
    except Exception as exc:  # a check that crashes is a failure of the backend under test
        where = traceback.extract_tb(exc.__traceback__)[-1].name
        status, detail = Status.FAIL, f"{type(exc).__name__}: {exc} (in {where})"
    finally:
        with contextlib.suppress(Exception):  # cleanup problems must not hide the check's own outcome
            context.cleanup()
    return Result(item.group, item.name, status, detail, time.perf_counter() - started)


def run(url: str, groups: Iterable[str] | None = None, *, seed: int | None = None, thorough: bool = False) -> Report:
    """Run every check (or those of `groups`) against `url`; `seed` (default `DEFAULT_SEED`) and
    `thorough` (many more random examples) reach the randomised checks."""
    the_seed = DEFAULT_SEED if seed is None else seed
    wanted = set(groups) if groups else None
    known = {c.group for c in all_checks()}
    if wanted and not wanted <= known:
        raise InvalidInput(f"unknown group(s) {sorted(wanted - known)} (known: {', '.join(sorted(known))})",
                           field="group")
    checks = [c for c in all_checks() if wanted is None or c.group in wanted]
    results = [run_check(c, url, seed=the_seed, thorough=thorough) for c in checks]
    return Report(url=redact(url), results=results, seed=the_seed, thorough=thorough)
