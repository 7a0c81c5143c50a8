"""The pytest front end of the kit: --pyargs with --memdock-url, and the third-party base class. Each run
selects a few groups on memory:// (the whole kit runs in process, once per backend, elsewhere)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from memdock.conformance import all_checks


def pytest_run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *args],
                          capture_output=True, text=True, timeout=600, check=False, cwd=cwd)


def counts(output: str) -> dict[str, int]:
    return {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|error)", output)}


def checks_in(*groups: str) -> int:
    return sum(1 for c in all_checks() if c.group in groups)


def test_pyargs_runs_the_kit_against_the_reference_backend(tmp_path: Path) -> None:
    result = pytest_run("--pyargs", "memdock.conformance", "--memdock-url", "memory://", "-k",
                        "scope__ or persistence__ or overridden", cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    found = counts(result.stdout)
    assert found["passed"] == checks_in("scope") + 1 and "failed" not in found  # + the meta-test
    assert found["skipped"] == checks_in("persistence") == 3 and "capability persistence not declared" in result.stdout


def test_pyargs_checks_the_url_it_is_given(tmp_path: Path) -> None:
    """--memdock-url reaches every check: a URL of an unknown scheme fails them, naming the scheme."""
    result = pytest_run("--pyargs", "memdock.conformance", "--memdock-url", "nosuch-scheme://kit", "-k", "scope__",
                        cwd=tmp_path)
    assert result.returncode == 1, result.stdout[-3000:]
    assert counts(result.stdout) == {"failed": checks_in("scope")}
    assert "nosuch-scheme" in result.stdout


THIRD_PARTY = '''
import pytest
from memdock.conformance.suite import ConformanceSuite, declared_gap


class TestMine(ConformanceSuite):
    @pytest.fixture
    def backend_url(self, tmp_path):
        return "memory://"

    {override}
    def test_search__exact_text_ranks_first(self, backend_url):
        pass
'''


def test_overriding_a_check_without_a_reason_fails_the_meta_test(tmp_path: Path) -> None:
    (tmp_path / "test_mine.py").write_text(THIRD_PARTY.format(override=""))
    result = pytest_run("test_mine.py", "-k", "overridden or exact_text", cwd=tmp_path)
    assert result.returncode == 1, result.stdout[-2000:]
    assert "test_search__exact_text_ranks_first" in result.stdout and counts(result.stdout)["failed"] == 1


def test_overriding_a_check_with_a_declared_gap_is_reported_as_a_skip(tmp_path: Path) -> None:
    (tmp_path / "test_mine.py").write_text(THIRD_PARTY.format(override='@declared_gap("ranking is approximate")'))
    result = pytest_run("test_mine.py", "-k", "search__ or overridden", cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:]
    assert "declared gap: ranking is approximate" in result.stdout
    # every search check but the overridden one, plus the meta-test, pass
    assert counts(result.stdout) == {"passed": checks_in("search"), "skipped": 1}


def stateful_call_seconds(output: str) -> float:
    """The stateful check's own run time, from pytest's ``--durations`` report (not the subprocess's start)."""
    found = re.search(r"([\d.]+)s call\s+\S*stateful__", output)
    assert found, output[-3000:]
    return float(found.group(1))


def test_pyargs_takes_the_seed_and_thorough_options(tmp_path: Path) -> None:
    """--memdock-thorough reaches the stateful check: it runs 500 sequences of up to 40 steps instead of 40 of
    up to 20, so the check itself (pytest's duration of its call, without the interpreter's start) takes
    many times longer; about 10x here (4.5 s against 0.46 s), asserted at 4x."""
    durations = ("--durations=0", "--durations-min=0")
    result = pytest_run("--pyargs", "memdock.conformance", "--memdock-url", "memory://", "--memdock-seed", "3",
                        "--memdock-thorough", "-k", "stateful__", *durations, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    assert counts(result.stdout) == {"passed": 1}
    quick = pytest_run("--pyargs", "memdock.conformance", "--memdock-url", "memory://", "--memdock-seed", "3", "-k",
                       "stateful__", *durations, cwd=tmp_path)
    assert quick.returncode == 0, quick.stdout[-3000:]
    thorough_seconds, quick_seconds = stateful_call_seconds(result.stdout), stateful_call_seconds(quick.stdout)
    assert thorough_seconds > 4 * quick_seconds, (thorough_seconds, quick_seconds)
    broken = pytest_run("--pyargs", "memdock.conformance", "--memdock-url", "nosuch-scheme://", "--memdock-seed",
                        "3", "-k", "stateful__", cwd=tmp_path)
    assert broken.returncode == 1 and "nosuch-scheme" in broken.stdout
