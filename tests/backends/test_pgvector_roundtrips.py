"""Round trips of the pgvector backend, counted from libpq's own protocol trace of the one pooled connection
(``pool_max_size=1``) against a real PostgreSQL: a search is one statement (two when an expired record
is among its hits), a one-message `Memory.add` two
(the batch's duplicate check, then records and history together), the duplicate check of a whole batch
one, with exactly the answers `find_by_hash` gives."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import pq

import memdock
from memdock import Memory
from memdock.backend import BackendURL
from memdock.backends.pgvector import store
from memdock.backends.pgvector.backend import PgvectorBackend
from memdock.models import EventKind, HistoryEvent, MemoryRecord, Scope
from memdock.validation import text_hash


def fresh(pg_url: str) -> str:
    """`pg_url` on a new table, with a pool of exactly one connection (the traced one)."""
    return f"{pg_url}&table=t_{uuid.uuid4().hex[:12]}&embedder=hash&pool_min_size=1&pool_max_size=1"


@dataclass
class Sent:
    """What the client sent while tracing: one entry per protocol message, e.g. ``("Query", "BEGIN")``."""

    messages: list[tuple[str, str]] = field(default_factory=list)

    @property
    def round_trips(self) -> int:
        """Simple queries plus extended-protocol exchanges (each ends with a Sync and waits for the server)."""
        return sum(kind in ("Query", "Sync") for kind, _ in self.messages)

    @property
    def statements(self) -> list[str]:
        """The text of every statement sent (simple queries and parsed statements)."""
        return [text for kind, text in self.messages if kind in ("Query", "Parse")]

    @property
    def executed(self) -> int:
        """Statements executed (simple queries and Execute messages)."""
        return sum(kind in ("Query", "Execute") for kind, _ in self.messages)


@contextmanager
def traced(backend: Any) -> Iterator[Sent]:
    """libpq's trace of the single connection of `backend`'s pool while the block runs."""
    assert isinstance(backend, PgvectorBackend)
    pool = backend._store._pool
    assert pool.max_size == 1, "trace needs the one connection every call uses"
    with pool.connection() as conn:
        conn.execute("SELECT 1")  # the pool's only connection, with nothing unread on its socket, idle again
    fd, path = tempfile.mkstemp(prefix="memdock-pgtrace-")
    sent = Sent()
    conn.pgconn.trace(fd)
    conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
    try:
        yield sent
    finally:
        conn.pgconn.untrace()  # flushes
        with open(path, encoding="utf-8", errors="replace") as trace:
            for line in trace.read().splitlines():
                parts = line.split("\t")
                if len(parts) >= 3 and parts[0] == "F":
                    sent.messages.append((parts[2], _sql(parts[2], " ".join(parts[3:]))))
        os.unlink(path)


def _sql(kind: str, body: str) -> str:
    """The statement a Query (``"SQL"``) or Parse (``"name" "SQL" params...``) message carries."""
    body = body.strip()
    if kind == "Parse":
        body = body.split(" ", 1)[1] if " " in body else ""
    if kind in ("Query", "Parse") and body.startswith('"'):
        return body[1:body.rindex('"')] if body.count('"') > 1 else body[1:]
    return body


@pytest.fixture
def memory(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Memory]:
    """A store on a one-connection pool whose idle check does not fire on its own during a test (the tests
    about the check set `IDLE_CHECK_SECONDS` themselves)."""
    monkeypatch.setattr(store, "IDLE_CHECK_SECONDS", 3600.0)
    with memdock.open(fresh(pg_url)) as opened:
        opened.add("warm the pool", user_id="warm")
        yield opened


def record(text: str, scope: Scope, *, expires_at: datetime | None = None) -> MemoryRecord:
    now = datetime.now(UTC)
    return MemoryRecord(id=str(uuid.uuid4()), text=text, scope=scope, hash=text_hash(text), created_at=now,
                        updated_at=now, expires_at=expires_at, vector=[0.5] * 64)


def test_a_search_is_one_statement_and_one_round_trip(memory: Memory) -> None:
    for n in range(30):
        memory.add(f"fact number {n}", user_id="u1", metadata={"n": n, "kind": "even" if n % 2 == 0 else "odd"})
    memory.search("fact number 3", user_id="u1", limit=5)
    with traced(memory.backend) as plain:
        hits = memory.search("fact number 3", user_id="u1", limit=5)
    with traced(memory.backend) as filtered:
        even = memory.search("fact number 3", user_id="u1", filter={"kind": "even"}, limit=5)
    assert hits[0].record.text == "fact number 3" and len(hits) == 5
    assert len(even) == 5 and all(h.record.metadata["kind"] == "even" for h in even)
    for sent in (plain, filtered):
        assert (sent.round_trips, sent.executed) == (1, 1), sent.messages
        assert sent.statements[0].startswith("SELECT"), sent.statements
        assert not any("BEGIN" in s or "COMMIT" in s or "set_config" in s for s in sent.statements)


def test_expiry_is_checked_on_the_hits_and_asked_of_the_index_only_when_one_expired(memory: Memory) -> None:
    backend = memory.backend
    scope = Scope(user_id="u1")
    backend.add([record(f"live {n}", scope) for n in range(6)])
    with traced(backend) as live:
        hits = memory.search("live 1", scope=scope, limit=5, mode="vector")
    assert len(hits) == 5 and (live.round_trips, live.executed) == (1, 1), live.messages
    assert "expires_at >" not in live.statements[0], live.statements
    past = datetime.now(UTC) - timedelta(minutes=1)
    expired = [record(f"gone {n}", scope, expires_at=past) for n in range(3)]  # same vectors: tied with all
    backend.add(expired)
    with traced(backend) as mixed:
        hits = memory.search("live 1", scope=scope, limit=8, mode="vector")
    assert sorted(h.record.text for h in hits) == sorted(f"live {n}" for n in range(6)), hits
    assert (mixed.round_trips, mixed.executed) == (2, 2), mixed.messages
    assert "expires_at >" not in mixed.statements[0] and "expires_at >" in mixed.statements[1], mixed.statements


def test_sequential_calls_never_wait_for_a_connection(pg_url: str) -> None:
    """A connection is back in the pool when a call returns (a pool ``reset`` callback would hand it back
    in a worker thread, and the next call would queue for it or open another connection)."""
    url = f"{pg_url}&table=t_{uuid.uuid4().hex[:12]}&embedder=hash&pool_min_size=1&pool_max_size=4"
    with memdock.open(url) as opened:
        opened.add("warm the pool", user_id="u1")
        pool = opened.backend._store._pool  # type: ignore[attr-defined]
        pool.pop_stats()  # resets the counters
        for n in range(40):
            opened.add(f"fact {n}", user_id="u1")
            opened.search(f"fact {n}", user_id="u1", limit=3, mode="vector")
        stats = pool.pop_stats()
    assert stats["requests_num"] == 80 + 40 and stats.get("requests_queued", 0) == 0, stats


def test_a_search_wider_than_ef_search_sets_it_once_and_the_next_one_sets_it_back(memory: Memory) -> None:
    for n in range(80):
        memory.add(f"item {n}", user_id="u1")
    with traced(memory.backend) as wide:
        assert len(memory.search("item 1", user_id="u1", limit=70, mode="vector")) == 70  # ef_search 140 > 100
    with traced(memory.backend) as again:
        memory.search("item 1", user_id="u1", limit=70, mode="vector")
    with traced(memory.backend) as narrow:
        memory.search("item 1", user_id="u1", limit=10, mode="vector")
    assert (wide.round_trips, again.round_trips, narrow.round_trips) == (2, 1, 2)
    assert "set_config" in wide.statements[0] and "set_config" in narrow.statements[0]


def test_an_idle_connection_is_checked_and_one_the_server_ended_is_replaced(
    memory: Memory, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory.add("kept", user_id="u1")
    monkeypatch.setattr(store, "IDLE_CHECK_SECONDS", 0.0)
    with traced(memory.backend) as idle:
        assert memory.count(user_id="u1") == 1
    assert idle.round_trips == 2 and idle.statements[0] == "", idle.messages  # the empty check query
    monkeypatch.setattr(store, "IDLE_CHECK_SECONDS", 3600.0)
    pool = memory.backend._store._pool  # type: ignore[attr-defined]
    with pool.connection() as conn:
        pid = conn.info.backend_pid
    with psycopg.connect(PgvectorBackend.Settings.from_url(BackendURL.parse(pg_url)).conninfo(),
                         autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s, 5000)", [pid]).fetchone() == (True,)  # waits for it
    # the ended session is seen without a round trip (its socket turned readable) and replaced
    assert memory.count(user_id="u1") == 1
    with pool.connection() as conn:
        assert conn.info.backend_pid != pid


def test_one_message_add_is_two_statements_and_a_repeat_one(memory: Memory) -> None:
    with traced(memory.backend) as new:
        [added] = memory.add("likes green tea", user_id="u1")
    with traced(memory.backend) as repeat:
        [again] = memory.add("likes green tea", user_id="u1")
    assert added.event is EventKind.ADD and again.event is EventKind.NONE and again.record.id == added.record.id
    assert (new.round_trips, new.executed) == (2, 2), new.messages
    assert (repeat.round_trips, repeat.executed) == (1, 1), repeat.messages
    assert not any("BEGIN" in s or "COMMIT" in s for s in new.statements)
    assert [e.event for e in memory.history(added.record.id)] == [EventKind.ADD]


def test_a_batch_with_its_history_is_one_statement(memory: Memory) -> None:
    backend = memory.backend
    batch = [record(f"batch {n}", Scope(user_id="u1")) for n in range(3)]
    events = [HistoryEvent(id=str(uuid.uuid4()), memory_id=r.id, event=EventKind.ADD, new_text=r.text, scope=r.scope,
                           created_at=r.created_at) for r in batch]
    with traced(backend) as sent:
        backend.add_with_history(batch, events)
    assert (sent.round_trips, sent.executed) == (1, 1), sent.messages
    assert {r.id for r in backend.get_many([r.id for r in batch])} == {r.id for r in batch}
    assert {k: [e.id for e in v] for k, v in backend.history_many([r.id for r in batch]).items()} == {
        e.memory_id: [e.id] for e in events}


def test_find_duplicates_answers_like_find_by_hash_in_one_statement(memory: Memory) -> None:
    backend = memory.backend
    u1, u2, u1_a1 = Scope(user_id="u1"), Scope(user_id="u2"), Scope(user_id="u1", agent_id="a1")
    past = datetime.now(UTC) - timedelta(hours=1)
    stored = [record("present", u1), record("present", u2), record("scoped", u1_a1),
              record("expired", u1, expires_at=past), record("later", u1, expires_at=past + timedelta(days=2))]
    backend.add(stored)
    wanted = [(scope, text, text_hash(text)) for scope, text in [
        (u1, "present"), (u1, "absent"), (u2, "present"), (u1, "expired"), (u1, "present"), (u1_a1, "scoped"),
        (u1, "scoped"), (Scope(user_id="u1", agent_id="a1", run_id="r1"), "scoped"), (u2, "later"), (u1, "later"),
        (Scope(agent_id="a1"), "scoped")]]
    with traced(backend) as sent:
        found = backend.find_duplicates(wanted)
    assert (sent.round_trips, sent.executed) == (1, 1), sent.messages
    one_by_one = [backend.find_by_hash(scope, digest) for scope, _, digest in wanted]
    assert [r.id if r else None for r in found] == [r.id if r else None for r in one_by_one]
    ids = [r.id for r in stored]
    assert [r.id if r else None for r in found] == [ids[0], None, ids[1], None, ids[0], ids[2], None, None, None,
                                                    ids[4], None]
    assert found[0] == one_by_one[0] and found[0] is not None and found[0].vector is None
    assert backend.find_duplicates([]) == []


def test_an_expired_holder_of_the_text_is_replaced_in_the_same_statement(memory: Memory) -> None:
    backend = memory.backend
    old = record("comes back", Scope(user_id="u1"), expires_at=datetime.now(UTC) - timedelta(seconds=1))
    backend.add([old])
    with traced(backend) as sent:
        [added] = memory.add("comes back", user_id="u1")
    assert added.event is EventKind.ADD and added.record.id != old.id
    assert sent.round_trips == 2
    assert backend.get(old.id) is None and memory.count(user_id="u1") == 1


def test_a_connection_numbered_above_1023_is_not_checked_on_every_use(pg_url: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A busy process holds many descriptors; `select.select` refuses those above 1023, which made every
    checkout pay the idle check's round trip (seen in CI)."""
    monkeypatch.setattr(store, "IDLE_CHECK_SECONDS", 3600.0)
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]  # the pool's connection comes after them
    try:
        with memdock.open(f"{fresh(pg_url)}&connect_timeout=9") as memory:  # its own pool
            memory.add("a fact", user_id="u1")
            with memory.backend._store._pool.connection() as conn:
                assert conn.pgconn.socket > 1023
            with traced(memory.backend) as sent:
                memory.search("a fact", user_id="u1")
            assert sent.round_trips == 1, sent.messages
    finally:
        for fd in held:
            os.close(fd)
