"""Atomic writes of the pgvector backend against a real PostgreSQL: records and their history in one
statement (a failure while writing history leaves no record; a session killed mid-batch leaves nothing),
and dedup across processes through the unique (scope, hash) index -- a text another writer stored between
`Memory`'s duplicate check and the insert is not stored twice: the batch fails whole with `WriteConflict`
and asking again answers NONE with the other writer's record."""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest

import memdock
from memdock import BackendUnavailable, Memory
from memdock.backend import BackendURL
from memdock.backends.pgvector.backend import PgvectorBackend
from memdock.errors import WriteConflict
from memdock.models import EventKind, HistoryEvent, MemoryRecord, Scope
from memdock.validation import text_hash

TEXTS = [f"shared fact number {n}" for n in range(150)]


def fresh(pg_url: str) -> str:
    return f"{pg_url}&table=t_{uuid.uuid4().hex[:12]}&embedder=hash"


def admin(pg_url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(PgvectorBackend.Settings.from_url(BackendURL.parse(pg_url)).conninfo(), autocommit=True)


@pytest.fixture
def url(pg_url: str) -> str:
    return fresh(pg_url)


@pytest.fixture
def memory(url: str) -> Iterator[Memory]:
    with memdock.open(url) as opened:
        yield opened


def new_record(text: str, scope: Scope) -> MemoryRecord:
    now = datetime.now(UTC)
    return MemoryRecord(id=str(uuid.uuid4()), text=text, scope=scope, hash=text_hash(text), created_at=now,
                        updated_at=now, vector=[0.125] * 64)


def add_event(record: MemoryRecord) -> HistoryEvent:
    return HistoryEvent(id=str(uuid.uuid4()), memory_id=record.id, event=EventKind.ADD, new_text=record.text,
                        scope=record.scope, created_at=record.created_at)


def history_rows(pg_url: str, url: str) -> int:
    table = BackendURL.parse(url).params["table"]
    with admin(pg_url) as conn:
        row = conn.execute(psycopg.sql.SQL("SELECT count(*) FROM {}").format(
            psycopg.sql.Identifier(f"{table}_history"))).fetchone()
    assert row is not None
    return int(row[0])


# -- a writer between the duplicate check and the insert ------------------------------------------------------


def test_a_text_stored_by_another_writer_after_the_check_is_answered_as_theirs(url: str, pg_url: str) -> None:
    """The backend refuses the whole batch (`WriteConflict`, nothing stored); `Memory` checks again and
    answers the raced text with the other writer's record."""
    with memdock.open(url) as first, memdock.open(url) as second:
        first.add("kept before", user_id="u1")
        asked = first.backend.find_duplicates
        races: list[str] = []

        def check_then_race(wanted: Sequence[tuple[Scope, str, str]]) -> list[MemoryRecord | None]:
            answers = asked(wanted)  # nothing stored yet for these texts ...
            if not races:
                races.append(second.add("raced text", user_id="u1")[0].record.id)  # ... now another writer is
            return answers

        first.backend.find_duplicates = check_then_race  # type: ignore[method-assign]
        messages = [{"role": "user", "content": "brand new"}, {"role": "user", "content": "raced text"}]
        results = first.add(messages, user_id="u1")
        assert [(r.event, r.record.text) for r in results] == [(EventKind.ADD, "brand new"),
                                                               (EventKind.NONE, "raced text")]
        assert results[1].record.id == races[0]
        assert sorted(r.text for r in first.list(user_id="u1").items) == ["brand new", "kept before", "raced text"]
        assert history_rows(pg_url, url) == 3, "one ADD each, none from the refused attempt"


def test_a_conflict_on_every_attempt_is_passed_on_and_stores_nothing(url: str, pg_url: str) -> None:
    with memdock.open(url) as memory:
        memory.add("held", user_id="u1")
        memory.backend.find_duplicates = lambda wanted: [None] * len(wanted)  # type: ignore[method-assign]
        with pytest.raises(WriteConflict) as info:
            memory.add([{"role": "user", "content": "brand new"}, {"role": "user", "content": "held"}], user_id="u1")
        assert isinstance(info.value, BackendUnavailable), "a client retries it like any transient fault"
        assert "at the same time" in str(info.value) and "held" not in str(info.value)
        del memory.backend.find_duplicates
        assert [r.text for r in memory.list(user_id="u1").items] == ["held"]
        assert history_rows(pg_url, url) == 1


def test_add_with_history_refuses_a_held_text_or_id_and_stores_nothing(memory: Memory, url: str, pg_url: str) -> None:
    [held] = memory.add("held", user_id="u1")
    backend = memory.backend
    batch = [new_record("fresh one", Scope(user_id="u1")), new_record("held", Scope(user_id="u1"))]
    with pytest.raises(WriteConflict):
        backend.add_with_history(batch, [add_event(r) for r in batch])
    same_id = [new_record("fresh two", Scope(user_id="u1")), new_record("fresh three", Scope(user_id="u1"))]
    same_id[1] = same_id[1].model_copy(update={"id": held.record.id})
    with pytest.raises(WriteConflict):
        backend.add_with_history(same_id, [add_event(r) for r in same_id])
    assert [r.text for r in memory.list(user_id="u1").items] == ["held"]
    assert history_rows(pg_url, url) == 1
    other_scope = [new_record("held", Scope(user_id="u2"))]  # the same text in another scope is not a conflict
    backend.add_with_history(other_scope, [add_event(other_scope[0])])
    assert memory.count(user_id="u2") == 1


# -- history and records: all or nothing -----------------------------------------------------------------------


def test_an_event_the_history_table_refuses_leaves_no_record(memory: Memory, url: str, pg_url: str) -> None:
    backend = memory.backend
    batch = [new_record(f"with history {n}", Scope(user_id="u1")) for n in range(5)]
    events = [add_event(r) for r in batch]
    events[-1] = HistoryEvent.model_construct(**{**dict(events[-1]), "created_at": None})  # NOT NULL in the table
    with pytest.raises(BackendUnavailable):
        backend.add_with_history(batch, events)
    assert memory.count(user_id="u1") == 0 and backend.get_many([r.id for r in batch]) == []
    assert history_rows(pg_url, url) == 0


def test_a_session_killed_while_writing_records_and_history_leaves_nothing(
    memory: Memory, url: str, pg_url: str
) -> None:
    backend = memory.backend
    table = parse_qs(urlsplit(url).query)["table"][0]
    scope = Scope(user_id="bulk")
    batch = [new_record(f"bulk {n}", scope) for n in range(20_000)]
    for n, record in enumerate(batch):  # distinct vectors keep the HNSW inserts (the slow part) realistic
        record.vector = [((n * 7919 + d * 104729) % 1000) / 1000.0 + 0.001 for d in range(64)]
    outcome: list[BaseException | None] = []

    def write() -> None:
        try:
            backend.add_with_history(batch, [add_event(r) for r in batch])
            outcome.append(None)
        except BaseException as exc:  # collected and asserted below
            outcome.append(exc)

    worker = threading.Thread(target=write)
    worker.start()
    killed = False
    with admin(pg_url) as conn:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not killed:
            row = conn.execute(  # this test's table only: other tests' inserts run in parallel
                "SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'WITH incoming%%' "
                "AND query LIKE %s", [f"%{table}%"]).fetchone()
            if row:
                time.sleep(0.5)  # well inside the statement
                killed = bool(conn.execute("SELECT pg_terminate_backend(%s, 5000)", [row[0]]).fetchone())
            time.sleep(0.02)
    worker.join(timeout=60)
    assert killed, "the batch finished before it could be killed; the test proved nothing"
    assert outcome and isinstance(outcome[0], BackendUnavailable), outcome
    assert memory.count(user_id="bulk") == 0
    assert history_rows(pg_url, url) == 0


# -- two processes, the same 150 texts ---------------------------------------------------------------------------


def _writer(url: str, batch: bool, start: Any, results: Any) -> None:
    """One process: add TEXTS (one by one, or as one batch) as soon as `start` is set; a `WriteConflict` is
    retried, as a client retries a 503. Puts [(text, event, id)] and the number of conflicts met."""
    conflicts = 0
    out: list[tuple[str, str, str]] = []
    with memdock.open(url) as opened:
        start.wait()
        work = [[{"role": "user", "content": t} for t in TEXTS]] if batch else [[{"role": "user", "content": t}]
                                                                                  for t in TEXTS]
        for messages in work:
            while True:
                try:
                    written = opened.add(messages, user_id="shared")
                    break
                except WriteConflict:
                    conflicts += 1
            out += [(r.record.text, r.event.value, r.record.id) for r in written]
    results.put((out, conflicts))


@pytest.mark.parametrize("batch", [False, True], ids=["one-by-one", "one-batch"])
def test_two_processes_adding_the_same_150_texts_store_each_once(memory: Memory, url: str, pg_url: str,
                                                                   batch: bool) -> None:
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    workers = [context.Process(target=_writer, args=(url, batch, start, results)) for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(3)  # both open their backend (imports, pool) before they start together
        start.set()
        answers = [results.get(timeout=120) for _ in workers]
    finally:
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.kill()
    stored = memory.list(user_id="shared", limit=1000).items
    assert sorted(r.text for r in stored) == sorted(TEXTS), "each text stored exactly once"
    ids = {r.text: r.id for r in stored}
    for out, _ in answers:
        assert {text: memory_id for text, _, memory_id in out} == ids, "both processes report the stored record"
    for text in TEXTS:
        events = [event for out, _ in answers for t, event, _ in out if t == text]
        assert sorted(events) == ["ADD", "NONE"], (text, events)
    if batch:
        for out, _ in answers:
            assert len({event for _, event, _ in out}) == 1, "a batch is all ADD or all NONE"
    history = memory.backend.history_many(list(ids.values()))
    assert all([e.event for e in events] == [EventKind.ADD] for events in history.values())
    assert history_rows(pg_url, url) == 150
