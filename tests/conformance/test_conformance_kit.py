"""The conformance kit: it passes real backends and catches deliberately broken ones."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from memdock import Capability
from memdock.backend import Backend
from memdock.backends.reference import CAPABILITIES, ReferenceBackend, _Store
from memdock.cli import main
from memdock.conformance import Status, all_checks, run
from memdock.embedding import Embedder
from memdock.filters import And, Comparison, Filter, Not, Or
from memdock.models import HistoryEvent, MemoryRecord, Scope, SearchHit
from memdock.plugins import backend_classes


def conformance_cli(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("memdock", path=str(Path(sys.executable).parent)) or "memdock"
    return subprocess.run([exe, "conformance", *args], capture_output=True, text=True, timeout=600, check=False)


def test_the_reference_backend_passes_the_whole_kit() -> None:
    """The whole kit, in process, on memory:// (the CLI and pytest front ends are tested with one group)."""
    report = run("memory://")
    assert [(r.check, r.detail) for r in report.results if r.status is Status.FAIL] == []
    not_applicable = {r.group for r in report.results if r.status is Status.NA}
    assert not_applicable == {"persistence"} and report.level == "BASE"
    assert len({(r.group, r.check) for r in report.results}) == len(all_checks()) >= 60


def test_the_cli_runs_the_groups_it_is_given_and_prints_json() -> None:
    result = conformance_cli("memory://", "--group", "scope", "--group", "persistence", "--json")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    report = json.loads(result.stdout)
    expected = [(c.group, c.name) for c in all_checks() if c.group in ("scope", "persistence")]
    assert [(r["group"], r["check"]) for r in report["results"]] == expected
    assert {r["status"] for r in report["results"] if r["group"] == "scope"} == {"PASS"}
    assert {r["status"] for r in report["results"] if r["group"] == "persistence"} == {"N/A"}
    assert report["url"].startswith("memory:") and report["level"] == "BASE"


def test_table_output_and_unknown_group() -> None:
    table = conformance_cli("memory://", "--group", "scope")
    assert table.returncode == 0 and "scope" in table.stdout and "level: FULL" in table.stdout
    unknown = conformance_cli("memory://", "--group", "nosuch")
    assert unknown.returncode == 2 and "nosuch" in unknown.stderr


def test_every_check_has_a_troubleshooting_docstring() -> None:
    checks = all_checks()
    assert len(checks) >= 60
    missing = [f"{c.group}/{c.name}" for c in checks if "Troubleshooting:" not in c.doc]
    assert missing == []


# --- deliberately broken backends -------------------------------------------------------------------


class ScopeLeakingSearch(ReferenceBackend):
    """Ignores the scope on search."""

    def search(self, vector: Sequence[float] | None, text: str, scope: Scope, where: Filter | None,
               limit: int) -> list[SearchHit]:
        return super().search(vector, text, Scope(), where, limit)


class DistanceScores(ReferenceBackend):
    """Returns distances (lower = better) where similarities are due."""

    def search(self, vector: Sequence[float] | None, text: str, scope: Scope, where: Filter | None,
               limit: int) -> list[SearchHit]:
        hits = super().search(vector, text, scope, where, limit)
        return [SearchHit(record=h.record, score=1.0 - h.score) for h in reversed(hits)]


class HalfCosineScores(ReferenceBackend):
    """Reports (1 + cosine) / 2, memdock's score before 0.2: in [0, 1] and well ordered, but wrong."""

    def search(self, vector: Sequence[float] | None, text: str, scope: Scope, where: Filter | None,
               limit: int) -> list[SearchHit]:
        hits = super().search(vector, text, scope, where, limit)
        return [SearchHit(record=h.record, score=(1.0 + h.score) / 2) for h in hits]


def _drop_ne(expr: Filter | None) -> Filter | None:
    if isinstance(expr, Comparison) and expr.op == "ne":
        return And(())
    if isinstance(expr, And | Or):
        return type(expr)(tuple(_drop_ne(item) or And(()) for item in expr.items))
    if isinstance(expr, Not):
        return Not(_drop_ne(expr.item) or And(()))
    return expr


class DropsNeFilters(ReferenceBackend):
    """Silently ignores `ne` conditions."""

    def _visible(self, scope: Scope, where: Filter | None) -> list[MemoryRecord]:
        return super()._visible(scope, _drop_ne(where))


class LosesConcurrentWrites(ReferenceBackend):
    """Adds by copy-modify-replace without a lock, so concurrent adds overwrite each other."""

    def add(self, records: Sequence[MemoryRecord]) -> None:
        snapshot = dict(self._store.records)
        time.sleep(0.002)
        for record in records:
            snapshot[record.id] = record
        for memory_id in [i for i in self._store.records if i not in snapshot]:  # added meanwhile: lost
            self._store.drop(memory_id)
        for kept in snapshot.values():
            self._store.put(kept)

    def add_with_history(self, records: Sequence[MemoryRecord], events: Sequence[HistoryEvent]) -> None:
        Backend.add_with_history(self, records, events)  # without the store's lock


class ForgetsOnReopen(ReferenceBackend):
    """Declares PERSISTENCE but starts empty every time it is opened."""

    capabilities = CAPABILITIES | {Capability.PERSISTENCE}

    def __init__(self, settings: ReferenceBackend.Settings, embedder: Embedder | None) -> None:
        super().__init__(settings, embedder)
        self._store = _Store()


BROKEN: dict[str, tuple[type[ReferenceBackend], str]] = {
    "broken-scope": (ScopeLeakingSearch, "scope/search_never_returns_another_users_memory"),
    "broken-scores": (DistanceScores, "search/scores_are_similarities_in_unit_range"),
    "broken-half-cosine": (HalfCosineScores, "search/score_is_the_clamped_cosine"),
    "broken-ne": (DropsNeFilters, "filters/ne_matches_missing_fields"),
    "broken-race": (LosesConcurrentWrites, "concurrency/parallel_adds_are_all_kept"),
    "broken-reopen": (ForgetsOnReopen, "persistence/reopen_keeps_memories_metadata_and_search"),
}
_lock = threading.Lock()


@pytest.fixture
def broken_schemes() -> Iterator[None]:
    classes = backend_classes()
    with _lock:
        for scheme, (cls, _) in BROKEN.items():
            declared = type(f"Declared{cls.__name__}", (cls,), {"name": scheme, "schemes": (scheme,)})
            declared.check_declaration()
            classes[scheme] = declared
        yield
        for scheme in BROKEN:
            classes.pop(scheme, None)


@pytest.mark.parametrize("scheme", sorted(BROKEN))
def test_broken_backends_are_caught(broken_schemes: None, scheme: str) -> None:
    _, expected_failure = BROKEN[scheme]
    group = expected_failure.split("/")[0]
    report = run(f"{scheme}://", groups=[group])
    failed = {f"{r.group}/{r.check}" for r in report.results if r.status is Status.FAIL}
    assert expected_failure in failed, [(r.check, r.status, r.detail) for r in report.results]
    assert report.failed and report.level == "PARTIAL"


def test_the_cli_exits_1_and_names_the_check_when_a_backend_fails(
    broken_schemes: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """The exit status CI relies on (in process: the broken schemes exist only in this process)."""
    assert main(["conformance", "broken-scope://", "--group", "scope"]) == 1
    table = capsys.readouterr().out
    assert "search_never_returns_another_users_memory" in table and "FAIL" in table and "level: PARTIAL" in table
    assert main(["conformance", "memory://", "--group", "scope"]) == 0


def test_random_filter_property_catches_a_backend_that_drops_ne(broken_schemes: None) -> None:
    report = run("broken-ne://", groups=["filters"])
    by_name = {r.check: r for r in report.results}
    assert by_name["random_filters_agree_with_the_reference"].status is Status.FAIL
    assert "reference" in by_name["random_filters_agree_with_the_reference"].detail


def test_kit_results_are_the_same_shape_for_every_backend(tmp_path: Path) -> None:
    memory_report = run("memory://", groups=["scope", "dedup"])
    chroma_report = run(f"chroma://{tmp_path / 'shape'}", groups=["scope", "dedup"])
    assert [(r.group, r.check) for r in memory_report.results] == [(r.group, r.check) for r in chroma_report.results]
    assert all(r.status is Status.PASS for r in chroma_report.results)


def test_the_cli_takes_a_seed_and_thorough_and_reports_them() -> None:
    result = conformance_cli("memory://", "--group", "stateful", "--seed", "7", "--json")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert (report["seed"], report["thorough"]) == (7, False)
    assert [(r["check"], r["status"]) for r in report["results"]] == [("random_sequences_agree_with_the_reference",
                                                                       "PASS")]
    default = json.loads(conformance_cli("memory://", "--group", "crud", "--json").stdout)
    assert default["seed"] == 15


def test_a_failing_report_names_the_seed_in_the_table(broken_schemes: None,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["conformance", "broken-scope://", "--group", "stateful", "--seed", "4"]) == 1
    table = capsys.readouterr().out
    assert "seed 4 (replay: --seed 4)" in table and "minimal sequence:" in table and "1. add(" in table
    assert "replay with --seed 4" in table
