"""`memdock.migration.migrate` between every ordered pair of the available backends: memory://, embedded
Chroma, a Chroma server, pgvector, memdock+http (a real uvicorn-served memdock), and both mem0 dialects
through their stand-ins (loopback servers answering as the recorded transcripts show; stand-ins because
mem0's server and mem0ai-api cannot be installed here).

The full matrix moves `MATRIX_RECORDS` records per pair (in two scopes, small batches so that paging and
resuming cursors are exercised); `test_ten_thousand_records` moves `BIG_RECORDS` (10,000) records per pair
of `BIG_PAIRS`: in CI both ways between the two persistent local stores, pgvector and embedded Chroma; every
pair with ``MEMDOCK_MATRIX_BIG=all`` (too slow for CI: through the mem0 stand-ins every memory is a few
HTTP requests and every duplicate check a search). mem0's server lists at most 1,000 memories of a scope
(it has no paging), so where it is one side the 10,000 records are spread over `WIDE_SCOPES` (20 of 500);
elsewhere over the two `SCOPES`, 5,000 each, so that paging is exercised. Each test checks what arrived
itself (text, scope, metadata, times where the destination keeps ids, history where both sides keep it),
independently of the migration's own verification, which must also be clean.
"""

from __future__ import annotations

import itertools
import json
import os
import uuid
from contextlib import ExitStack
from pathlib import Path

import pytest

from memdock.capabilities import Capability
from memdock.memory import Memory
from memdock.migration import keeps_history, migrate
from memdock.models import MemoryRecord, Scope
from tests.helpers.store_urls import KINDS, store_url

MATRIX_RECORDS = 24
BIG_RECORDS = int(os.environ.get("MEMDOCK_MATRIX_RECORDS", "10000"))
SCOPES = (Scope(user_id="alice"), Scope(user_id="bob", agent_id="helper"))
WIDE_SCOPES = tuple(Scope(user_id=f"user{n}", agent_id="helper" if n % 2 else None) for n in range(20))
ALL_PAIRS = [pair for pair in itertools.product(KINDS, KINDS) if pair[0] != pair[1]]
BIG_PAIRS = ALL_PAIRS if os.environ.get("MEMDOCK_MATRIX_BIG") == "all" else [("pgvector", "chroma"),
                                                                             ("chroma", "pgvector")]
"""The pairs `test_ten_thousand_records` moves: in CI the two persistent local stores both ways; every pair
with ``MEMDOCK_MATRIX_BIG=all`` (about 66 minutes with ``-n 2`` on 2 cores: see docs/portability.md)."""


def scopes_for(source_kind: str, destination_kind: str, count: int) -> tuple[Scope, ...]:
    """`WIDE_SCOPES` when mem0's server is one side and `SCOPES` would give it scopes it cannot list."""
    if "mem0-server" in (source_kind, destination_kind) and count // len(SCOPES) >= 1000:
        return WIDE_SCOPES
    return SCOPES


def fill(memory: Memory, count: int, scopes: tuple[Scope, ...]) -> None:
    """`count` records split over `scopes`, with metadata of several types; one update each where the store
    can update (so history has two events)."""
    per_scope = count // len(scopes)
    for n, scope in enumerate(scopes):
        batch = [{"role": "user", "content": f"memory {n}-{i}: {uuid.uuid4().hex}"} for i in range(per_scope)]
        for start in range(0, len(batch), 500):
            memory.add(batch[start:start + 500], scope=scope, metadata={"topic": f"t{n}", "rank": n, "ok": True})
    if Capability.UPDATE in memory.capabilities:
        for scope in scopes:
            first = memory.list(scope=scope, limit=1).items[0]
            memory.update(first.id, metadata={**first.metadata, "edited": "yes"})


def id_map(summary_map: Path | None) -> dict[str, str]:
    if summary_map is None:
        return {}
    return {row["source_id"]: row["destination_id"]
            for row in map(json.loads, summary_map.read_text().splitlines())}


def check_arrived(source: Memory, destination: Memory, scope: Scope, mapping: dict[str, str]) -> None:
    """Every source record of `scope` is in the destination, intact, once."""
    wanted: list[MemoryRecord] = list(itertools.chain.from_iterable(p.items for p in source.pages(scope=scope)))
    got = list(itertools.chain.from_iterable(p.items for p in destination.pages(scope=scope)))
    assert len(got) == len(wanted) == destination.count(scope=scope)
    assert sorted(r.text for r in got) == sorted(r.text for r in wanted)
    both_keep_history = keeps_history(destination) and Capability.HISTORY in source.capabilities
    for start in range(0, len(wanted), 500):
        chunk = wanted[start:start + 500]
        targets = {r.id: mapping.get(r.id, r.id) for r in chunk}
        stored = {r.id: r for r in destination.get_many(list(targets.values()))}
        assert len(stored) == len(chunk)
        if both_keep_history:
            source_events = source.histories([r.id for r in chunk])
            stored_events = destination.histories(list(targets.values()))
        for record in chunk:
            target = targets[record.id]
            copy = stored[target]
            assert (copy.text, copy.scope, copy.metadata, copy.hash) == (
                record.text, record.scope, record.metadata, record.hash)
            if target == record.id:  # the destination kept the id, so it keeps the times too
                assert (copy.created_at, copy.updated_at) == (record.created_at, record.updated_at)
            if both_keep_history:
                assert [(e.event, e.new_text, e.new_metadata) for e in stored_events[target]] == [
                    (e.event, e.new_text, e.new_metadata) for e in source_events[record.id]]


def run_pair(source_kind: str, destination_kind: str, count: int, batch: int, tmp_path: Path,
             request: pytest.FixtureRequest) -> None:
    with ExitStack() as stack:
        source = stack.enter_context(Memory.open(stack.enter_context(store_url(source_kind, tmp_path, request))))
        destination = stack.enter_context(
            Memory.open(stack.enter_context(store_url(destination_kind, tmp_path, request))))
        scopes = scopes_for(source_kind, destination_kind, count)
        fill(source, count, scopes)
        for n, scope in enumerate(scopes):
            summary = migrate(source, destination, scope=scope, batch=batch,
                              checkpoint=tmp_path / f"checkpoint-{n}.sqlite")
            assert summary.verification is not None
            assert summary.ok, summary.lines()
            assert summary.verification.records_checked == count // len(scopes)
            assert summary.added == count // len(scopes)
            check_arrived(source, destination, scope, id_map(summary.id_map))
            again = migrate(source, destination, scope=scope, batch=batch, verify="sample",
                            checkpoint=tmp_path / f"checkpoint-{n}.sqlite")
            assert (again.added, again.ok) == (0, True)
            if count <= MATRIX_RECORDS:  # no checkpoint: the destination's own duplicate check (one query each)
                fresh = migrate(source, destination, scope=scope, batch=batch)
                assert (fresh.added, fresh.skipped, fresh.ok) == (0, count // len(scopes), True)
            assert destination.count(scope=scope) == count // len(scopes)


@pytest.mark.parametrize(("source_kind", "destination_kind"), ALL_PAIRS)
def test_every_pair(source_kind: str, destination_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Records, scopes, metadata, times and history arrive intact between every two backends; a re-run
    adds nothing."""
    run_pair(source_kind, destination_kind, MATRIX_RECORDS, 5, tmp_path, request)


@pytest.mark.slow
@pytest.mark.parametrize(("source_kind", "destination_kind"), BIG_PAIRS)
def test_ten_thousand_records(source_kind: str, destination_kind: str, tmp_path: Path,
                              request: pytest.FixtureRequest) -> None:
    """`BIG_RECORDS` (10,000) records per pair, verified record by record."""
    run_pair(source_kind, destination_kind, BIG_RECORDS, 500, tmp_path, request)
