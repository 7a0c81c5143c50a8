"""The Chroma backend's batched paths against real Chroma (embedded and a `chroma run` server): the duplicate
check for a whole batch, records and history written together (and undone together), and index search
that asks Chroma about expiry only when expired records turn up."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import memdock
from memdock import BackendUnavailable, Memory
from memdock.backend import Backend
from memdock.backends.chroma import ChromaBackend, _to_chroma
from memdock.errors import WriteConflict
from memdock.models import EventKind, HistoryEvent, MemoryRecord, Scope, utcnow
from memdock.validation import text_hash


@pytest.fixture(params=["embedded", "server"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh collection in embedded Chroma or on the session's `chroma run` server."""
    collection = f"t_{uuid.uuid4().hex[:12]}"
    if request.param == "embedded":
        return f"chroma://{tmp_path / 'chroma'}?collection={collection}&embedder=hash"
    base: str = request.getfixturevalue("chroma_http_url")
    return f"{base}?collection={collection}&embedder=hash"


@pytest.fixture
def memory(url: str) -> Iterator[Memory]:
    with memdock.open(url) as opened:
        yield opened


def backend_of(memory: Memory) -> ChromaBackend:
    assert isinstance(memory.backend, ChromaBackend)
    return memory.backend


def count_calls(monkeypatch: pytest.MonkeyPatch, target: Any, name: str) -> list[dict[str, Any]]:
    """Record the keyword arguments of every call of `target.name` (the real method still runs)."""
    calls: list[dict[str, Any]] = []
    real = getattr(target, name)

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, spy)
    return calls


def fail_on_call(monkeypatch: pytest.MonkeyPatch, target: Any, name: str, failing: int) -> None:
    """Make the `failing`-th call (1-based) of `target.name` raise, as a store fault would; others run."""
    real: Callable[..., Any] = getattr(target, name)
    seen = [0]

    def flaky(*args: Any, **kwargs: Any) -> Any:
        seen[0] += 1
        if seen[0] == failing:
            raise RuntimeError("injected store fault")
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, flaky)


# -- find_duplicates ---------------------------------------------------------------------------------


def test_find_duplicates_answers_a_mixed_batch_like_the_default_with_one_get_per_scope(
    memory: Memory, monkeypatch: pytest.MonkeyPatch
) -> None:
    u1, u1a, u2 = Scope(user_id="u1"), Scope(user_id="u1", agent_id="a"), Scope(user_id="u2")
    tea = memory.add("likes tea", user_id="u1")[0].record
    coffee = memory.add("likes coffee", user_id="u1")[0].record
    agent_tea = memory.add("likes tea", user_id="u1", agent_id="a")[0].record
    memory.add("was here yesterday", user_id="u1", expires_at=utcnow() - timedelta(hours=1))
    later = memory.add("expires later", user_id="u2", expires_at=utcnow() + timedelta(hours=1))[0].record
    wanted = [
        (u1, "likes tea", text_hash("likes tea")),  # present
        (u1, "likes juice", text_hash("likes juice")),  # absent
        (u2, "likes tea", text_hash("likes tea")),  # present in other scopes only
        (u1, "was here yesterday", text_hash("was here yesterday")),  # expired
        (u1a, "likes tea", text_hash("likes tea")),  # present in the narrower scope
        (u1, "likes coffee", text_hash("likes coffee")),  # present
        (u1, "likes tea", text_hash("likes tea")),  # repeated
        (u2, "expires later", text_hash("expires later")),  # live until later
        (u1, "expires later", text_hash("expires later")),  # other scope
    ]
    backend = backend_of(memory)
    gets = count_calls(monkeypatch, backend._collection, "get")
    answers = backend.find_duplicates(wanted)
    assert len(gets) == 3  # one per distinct scope of the batch
    assert [a.id if a else None for a in answers] == [
        tea.id, None, None, None, agent_tea.id, coffee.id, tea.id, later.id, None]
    assert answers[0] is not None and answers[0].text == "likes tea" and answers[0].scope == u1
    default = Backend.find_duplicates(backend, wanted)  # triple by triple through find_by_hash
    assert [a.model_dump() if a else None for a in answers] == [a.model_dump() if a else None for a in default]
    monkeypatch.setattr(backend, "now", lambda: utcnow() + timedelta(hours=2))
    assert backend.find_duplicates(wanted)[7] is None  # expired by then, exactly like find_by_hash
    assert backend.find_by_hash(u2, text_hash("expires later")) is None
    assert backend.find_duplicates([]) == []


def test_find_duplicates_beyond_one_get_of_hashes(memory: Memory) -> None:
    texts = [f"fact {n}" for n in range(1203)]
    memory.add([{"role": "user", "content": t} for t in texts[::2]], user_id="u1")
    answers = backend_of(memory).find_duplicates([(Scope(user_id="u1"), t, text_hash(t)) for t in texts])
    assert [a.text if a else None for a in answers] == [t if n % 2 == 0 else None for n, t in enumerate(texts)]


# -- add_with_history --------------------------------------------------------------------------------


def test_a_batch_and_its_add_events_go_in_with_one_chroma_write(
    memory: Memory, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = backend_of(memory)
    record_adds = count_calls(monkeypatch, backend._collection, "add")
    event_adds = count_calls(monkeypatch, backend._history, "add")
    results = memory.add([{"role": "user", "content": f"fact {n}"} for n in range(5)], user_id="u1")
    assert len(record_adds) == 1 and len(record_adds[0]["ids"]) == 5 and event_adds == []
    memory.add("one more", user_id="u1")
    assert len(record_adds) == 2 and event_adds == []
    assert {r.event for r in results} == {EventKind.ADD}
    [event] = memory.history(results[3].record.id)
    assert (event.event, event.memory_id, event.new_text, event.new_metadata, event.scope) == (
        EventKind.ADD, results[3].record.id, "fact 3", {"role": "user"}, Scope(user_id="u1"))
    assert backend.history_many([results[0].record.id, "missing"])["missing"] == []


def test_the_carried_add_event_survives_update_delete_and_a_crash_between(memory: Memory) -> None:
    backend = backend_of(memory)
    kept = memory.add("likes tea", user_id="u1", metadata={"n": 1})[0].record
    [added] = memory.history(kept.id)
    memory.update(kept.id, text="likes green tea")
    first, update = memory.history(kept.id)
    assert (first.id, first.event, first.new_text, first.new_metadata) == (added.id, EventKind.ADD, "likes tea",
                                                                           {"n": 1})
    assert (update.event, update.old_text, update.new_text) == (EventKind.UPDATE, "likes tea", "likes green tea")
    gone = memory.add("likes coffee", user_id="u1")[0].record
    backend._release_carried([gone.id])  # a crash right after moving the event, before the delete
    assert [e.event for e in memory.history(gone.id)] == [EventKind.ADD]
    memory.delete(gone.id)
    assert [(e.event, e.old_text) for e in memory.history(gone.id)] == [
        (EventKind.ADD, None), (EventKind.DELETE, "likes coffee")]
    assert backend._history.count() == 4  # two ADDs moved, one UPDATE, one DELETE


def imported(memory: Memory, count: int) -> tuple[list[MemoryRecord], list[HistoryEvent]]:
    """`count` records with two events each (an ADD and an UPDATE, as an import carries them over)."""
    assert memory.embedder is not None
    now, scope = utcnow(), Scope(user_id="u1")
    vectors = memory.embedder.embed([f"fact {n}" for n in range(count)])
    records = [MemoryRecord(id=str(uuid.uuid4()), text=f"fact {n}", scope=scope, hash=text_hash(f"fact {n}"),
                            created_at=now, updated_at=now, vector=vectors[n]) for n in range(count)]
    events = [Memory._event(r.id, kind, scope, new_text=r.text) for r in records
              for kind in (EventKind.ADD, EventKind.UPDATE)]
    return records, events


@pytest.mark.parametrize(("collection", "failing"), [("_history", 1), ("_collection", 2), ("_history", 3)],
                         ids=["events", "second-record-chunk", "third-event-chunk"])
def test_a_failed_write_deletes_what_the_batch_wrote(
    memory: Memory, monkeypatch: pytest.MonkeyPatch, collection: str, failing: int
) -> None:
    """The declared recovery rule: on a write failure nothing of the batch (records or events) remains."""
    kept = memory.add("stored before", user_id="u1")[0].record
    backend = backend_of(memory)
    backend._chunk = 500  # as ``write_batch=500``: 3 record writes and 3 event writes, journaled
    records, events = imported(memory, 1100)
    fail_on_call(monkeypatch, getattr(backend, collection), "add", failing)
    with pytest.raises(BackendUnavailable, match="injected store fault"):
        memory._call(backend.add_with_history, records, events)
    monkeypatch.undo()
    assert [r.id for r in memory.list(user_id="u1", limit=1000).items] == [kept.id]
    assert backend._collection.count() == 1 and backend._history.count() == 0
    assert backend._journal.count() == 0
    assert [e.event for e in memory.history(kept.id)] == [EventKind.ADD]
    assert backend.add_with_history(records, events) is None  # the same batch goes in afterwards
    assert backend._collection.count() == 1101 and backend._history.count() == 2200
    assert [e.event for e in memory.history(records[1050].id)] == [EventKind.ADD, EventKind.UPDATE]


def test_a_failed_single_add_leaves_nothing(memory: Memory, monkeypatch: pytest.MonkeyPatch) -> None:
    fail_on_call(monkeypatch, backend_of(memory)._collection, "add", 1)
    with pytest.raises(BackendUnavailable):
        memory.add("likes tea", user_id="u1")
    monkeypatch.undo()
    assert memory.count(user_id="u1") == 0 and backend_of(memory)._history.count() == 0


def test_a_text_stored_meanwhile_by_another_writer_is_not_stored_again(url: str) -> None:
    """Two backends of one collection (as two threads would have): the second checks, the first stores
    the same text, then the second writes; the re-check under the write lock finds the stored record."""
    with memdock.open(url) as first, memdock.open(url) as second:
        scope, digest = Scope(user_id="u1"), text_hash("likes tea")
        late = backend_of(second)
        assert late.find_duplicates([(scope, "likes tea", digest)]) == [None]
        stored = first.add("likes tea", user_id="u1")[0].record
        now = utcnow()
        mine = MemoryRecord(id=str(uuid.uuid4()), text="likes tea", scope=scope, hash=digest, created_at=now,
                            updated_at=now, vector=[0.0] * 63 + [1.0])
        fresh = MemoryRecord(id=str(uuid.uuid4()), text="likes milk", scope=scope, hash=text_hash("likes milk"),
                             created_at=now, updated_at=now, vector=[1.0] + [0.0] * 63)
        events = [Memory._event(r.id, EventKind.ADD, scope, new_text=r.text) for r in (mine, fresh)]
        with pytest.raises(WriteConflict):
            late.add_with_history([mine, fresh], events)
        assert [r.text for r in second.list(user_id="u1").items] == ["likes tea"], "nothing of the batch"
        assert late.history(mine.id) == [] == late.history(fresh.id)
        again = second.add([{"role": "user", "content": "likes tea"}, {"role": "user", "content": "likes milk"}],
                           user_id="u1")  # what Memory does on the conflict: check again
        assert [(r.event, r.record.id == stored.id) for r in again] == [(EventKind.NONE, True), (EventKind.ADD, False)]


def test_the_re_check_is_skipped_when_nobody_wrote_since_the_check(
    url: str, memory: Memory, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory.add("warm up", user_id="u1")
    gets = count_calls(monkeypatch, backend_of(memory)._collection, "get")
    memory.add("likes tea", user_id="u1")
    # the batch's duplicate check and its id check (`_free_ids`: Chroma's add skips a held id silently);
    # on a server also the check after the write
    assert len(gets) == (3 if url.startswith("chroma+http") else 2)
    assert memory.add("likes tea", user_id="u1")[0].event is EventKind.NONE


# -- search and expiry -------------------------------------------------------------------------------


def test_search_without_expiring_records_is_one_plain_query(memory: Memory, monkeypatch: pytest.MonkeyPatch) -> None:
    for n in range(12):
        memory.add(f"fact number {n}", user_id="u1")
    backend = backend_of(memory)
    queries = count_calls(monkeypatch, backend._collection, "query")
    counts = count_calls(monkeypatch, backend._collection, "count")
    hits = memory.search("fact number 3", user_id="u1", limit=5, mode="vector")
    assert hits[0].record.text == "fact number 3" and len(hits) == 5
    assert counts == [] and len(queries) == 1
    assert queries[0]["where"] == {"scope.user_id": "u1"} and queries[0]["n_results"] == 5


def test_an_expired_record_is_never_returned_even_when_another_writer_stored_it(url: str) -> None:
    """The writer of the expiring records is another backend object (as another process would be): the
    reader knows nothing about them and must still never return an expired record, nor return too few."""
    with memdock.open(url) as writer:
        for n in range(8):
            writer.add(f"fact number {n}", user_id="u1")
        writer.add("fact number 3 expired", user_id="u1", expires_at=utcnow() - timedelta(seconds=1))
        writer.add("fact number 3 expiring", user_id="u1", expires_at=utcnow() + timedelta(hours=1))
    with memdock.open(url) as reader:
        hits = reader.search("fact number 3 expired", user_id="u1", limit=4)
        assert len(hits) == 4 and "fact number 3 expired" not in {h.record.text for h in hits}
        assert "fact number 3 expiring" in {h.record.text for h in hits[:2]}
        assert len(reader.search("fact", user_id="u1", limit=20)) == 9
        backend = backend_of(reader)
        later = utcnow() + timedelta(hours=2)
        backend.now = lambda: later  # type: ignore[method-assign]
        texts = {h.record.text for h in reader.search("fact number 3 expiring", user_id="u1", limit=20)}
        assert len(texts) == 8 and not any("expir" in t for t in texts)
        assert reader.count(user_id="u1") == 8
        assert not any("expir" in r.text for r in reader.list(user_id="u1").items)


def test_on_a_server_a_later_copy_is_withdrawn_after_the_write(request: pytest.FixtureRequest) -> None:
    """Another memdock process (its write reaches Chroma between this writer's check and its write, and
    bumps nothing this process can see) is played by a write straight into the collection."""
    url = f"{request.getfixturevalue('chroma_http_url')}?collection=t_{uuid.uuid4().hex[:12]}&embedder=hash"
    with memdock.open(url) as memory:
        backend = backend_of(memory)
        scope = Scope(user_id="u1")
        assert backend.find_duplicates([(scope, "likes tea", text_hash("likes tea"))]) == [None]
        records, events = imported(memory, 3)
        first = records[1].model_copy(update={"id": str(uuid.uuid4())})
        backend._collection.add(ids=[first.id], embeddings=[first.vector], documents=[first.text],
                                metadatas=[_to_chroma(first)])
        with pytest.raises(WriteConflict):
            backend.add_with_history(records, events)
        assert [r.id for r in memory.list(user_id="u1").items] == [first.id], "the whole batch withdrawn"
        assert all(backend.history(r.id) == [] for r in records)
