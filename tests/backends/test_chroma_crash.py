"""Crash atomicity of Chroma batch writes: a REAL writer process is killed with SIGKILL in the middle of a
batch that takes several Chroma writes, and the next open of the store finds the batch wholly absent
(the journal's recovery rule), on embedded Chroma and on a `chroma run` server.

The writer is made to stop at a known point by wrapping chromadb's own ``Collection.add`` (in the child
only): after the first write of the records collection it tells the parent through a file and waits to
be killed, so the kill lands between two writes of one batch every time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import memdock
from memdock import BackendUnavailable, InvalidInput, Memory
from memdock.backends.chroma import ChromaBackend
from memdock.models import EventKind, Scope

MESSAGES = 3000

WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from chromadb.api.models.Collection import Collection
    import memdock
    from memdock import Memory
    from memdock.models import EventKind, MemoryRecord, Scope, utcnow
    from memdock.validation import text_hash

    url, collection, stopped, kind, count = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4], int(sys.argv[5])
    real_add = Collection.add

    def add_then_wait(self, *args, **kwargs):
        real_add(self, *args, **kwargs)
        if self.name == collection:  # the first write of records: report it, then wait for SIGKILL
            stopped.write_text(str(len(kwargs["ids"])))
            time.sleep(600)

    Collection.add = add_then_wait
    with memdock.open(url) as memory:
        if kind == "messages":
            memory.add([{"role": "user", "content": f"message {n}"} for n in range(count)], user_id="u1")
        else:  # an import that carries two events per record: records and events are separate writes
            now, scope = utcnow(), Scope(user_id="u1")
            records = [MemoryRecord(id=f"imported-{n}", text=f"imported {n}", scope=scope,
                                    hash=text_hash(f"imported {n}"), created_at=now, updated_at=now)
                       for n in range(count)]
            history = {r.id: [Memory._event(r.id, k, scope, new_text=r.text) for k in (EventKind.ADD, EventKind.UPDATE)]
                       for r in records}
            memory.import_(records, history=history)
    print("the writer was not stopped", file=sys.stderr)
    sys.exit(3)
""")


@pytest.fixture(params=["embedded", "server"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store: embedded Chroma in a fresh directory, or the session's `chroma run` server."""
    if request.param == "embedded":
        return f"chroma://{tmp_path / 'chroma'}"
    base: str = request.getfixturevalue("chroma_http_url")
    return base


def backend_of(memory: Memory) -> ChromaBackend:
    assert isinstance(memory.backend, ChromaBackend)
    return memory.backend


def fail_on_call(monkeypatch: pytest.MonkeyPatch, target: object, name: str, failing: int) -> None:
    """Make the `failing`-th call (1-based) of `target.name` raise, as a store fault would; others run."""
    real = getattr(target, name)
    seen = [0]

    def flaky(*args: object, **kwargs: object) -> object:
        seen[0] += 1
        if seen[0] == failing:
            raise RuntimeError("injected store fault")
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, flaky)


@contextmanager
def stopped_writer(tmp_path: Path, url: str, collection: str, kind: str, count: int) -> Iterator[tuple[int, float]]:
    """Start the writer process; yields (records it wrote in its first write, monotonic time it reported
    that) once it waits between two writes of its batch; kills it with SIGKILL when the block ends."""
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    stopped = tmp_path / f"stopped-{uuid.uuid4().hex[:6]}"
    log = tmp_path / "writer.log"
    with log.open("w") as err:
        writer = subprocess.Popen([sys.executable, str(script), url, collection, str(stopped), kind, str(count)],
                                  stderr=err)
    try:
        deadline = time.monotonic() + 240
        while not (stopped.exists() and stopped.read_text()):
            assert writer.poll() is None, f"the writer ended ({writer.returncode}): {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "the writer did not reach its first write"
            time.sleep(0.02)
        yield int(stopped.read_text()), time.monotonic()
    finally:
        if writer.poll() is None:
            os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=30)
    assert writer.returncode == -signal.SIGKILL


def messages(count: int, prefix: str = "message") -> list[dict[str, str]]:
    return [{"role": "user", "content": f"{prefix} {n}"} for n in range(count)]


def assert_nothing_stored(memory: Memory) -> None:
    backend = backend_of(memory)
    assert memory.count(user_id="u1") == 0
    assert backend._collection.count() == 0 and backend._history.count() == 0
    assert backend._journal.count() == 0, "the journal entries of the rolled back batch are gone too"


# -- a writer killed in the middle of a batch ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["messages", "import"])
def test_a_writer_killed_between_the_writes_of_a_batch_leaves_none_of_it(where: str, kind: str,
                                                                         tmp_path: Path) -> None:
    """The defect: kill -9 during a 3,000-message add left the first 1,000 stored. Here the batch takes
    three record writes (``write_batch=1000``), or, for an import, one record write and two of the events
    it carries; the writer is killed after the first. After the next open the batch is wholly absent.
    On a server the journal entry of the dead writer is stale once its lease (``journal_lease``) runs out."""
    collection = f"crash_{uuid.uuid4().hex[:10]}"
    lease = 2.0
    url = f"{where}?collection={collection}&embedder=hash&write_batch=1000"
    if where.startswith("chroma+http"):
        url += f"&journal_lease={lease}"
    with stopped_writer(tmp_path, url, collection, kind, MESSAGES if kind == "messages" else 1000) as (wrote, at):
        assert wrote == 1000
    if where.startswith("chroma+http"):
        time.sleep(max(0.0, at + lease + 0.3 - time.monotonic()))
    with memdock.open(url) as memory:
        assert_nothing_stored(memory)
    if kind == "messages":  # the same batch goes in afterwards (default lease), and leaves no journal behind
        with memdock.open(url.partition("&journal_lease")[0]) as memory:
            results = memory.add(messages(MESSAGES), user_id="u1")
            assert [r.event for r in results] == [EventKind.ADD] * MESSAGES
            assert memory.count(user_id="u1") == MESSAGES and backend_of(memory)._journal.count() == 0
            assert [e.event for e in memory.history(results[2500].record.id)] == [EventKind.ADD]


def test_on_a_server_a_live_writers_batch_is_left_alone_until_its_lease_runs_out(
    chroma_http_url: str, tmp_path: Path
) -> None:
    """Neither an open nor another writer's journaled batch rolls back a batch whose writer may still be
    alive (its lease has not run out); once the lease of the killed writer runs out, the next open does."""
    collection = f"lease_{uuid.uuid4().hex[:10]}"
    lease = 10.0
    url = f"{chroma_http_url}?collection={collection}&embedder=hash&write_batch=1000&journal_lease={lease}"
    other = f"{chroma_http_url}?collection={collection}&embedder=hash&write_batch=2"
    with stopped_writer(tmp_path, url, collection, "messages", MESSAGES) as (wrote, at):
        with memdock.open(other) as memory:
            assert memory.count(user_id="u1") == wrote == 1000
            memory.add(messages(3, "other"), user_id="u2")  # two writes: journaled, recovers stale batches first
            assert memory.count(user_id="u1") == 1000 and memory.count(user_id="u2") == 3
        assert time.monotonic() - at < lease, "the checks above took longer than the lease: they proved nothing"
    time.sleep(max(0.0, at + lease + 0.3 - time.monotonic()))
    with memdock.open(other) as memory:
        assert memory.count(user_id="u1") == 0 and memory.count(user_id="u2") == 3
        assert backend_of(memory)._journal.count() == 0


# -- in one process -----------------------------------------------------------------------------------


def test_a_batch_within_chromas_limit_is_one_write_without_a_journal(
    where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with memdock.open(f"{where}?collection=one_{uuid.uuid4().hex[:10]}&embedder=hash") as memory:
        backend = backend_of(memory)
        assert backend._chunk == backend._client.get_max_batch_size() > MESSAGES
        adds: list[int] = []
        journal: list[int] = []
        for collection, calls in ((backend._collection, adds), (backend._journal, journal)):
            real = collection.add
            monkeypatch.setattr(collection, "add", lambda *a, _real=real, _calls=calls, **kw: (
                _calls.append(len(kw["ids"])), _real(*a, **kw))[1])
        memory.add(messages(MESSAGES), user_id="u1")
        assert adds == [MESSAGES] and journal == []


def test_a_batch_over_one_write_is_journaled_and_the_journal_cleared(where: str) -> None:
    with memdock.open(f"{where}?collection=two_{uuid.uuid4().hex[:10]}&embedder=hash&write_batch=2") as memory:
        results = memory.add(messages(5), user_id="u1")
        assert memory.count(user_id="u1") == 5 and backend_of(memory)._journal.count() == 0
        assert all([e.event for e in memory.history(r.record.id)] == [EventKind.ADD] for r in results)


def test_a_batch_whose_rollback_failed_is_rolled_back_by_the_next_open(
    where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store fault in the middle of the batch, and another in the rollback: the first chunk stays, its
    journal entry too, and the next open (once the entry is stale) deletes it."""
    lease = 0.5
    url = f"{where}?collection=undo_{uuid.uuid4().hex[:10]}&embedder=hash&write_batch=2&journal_lease={lease}"
    with memdock.open(url) as memory:
        backend = backend_of(memory)
        fail_on_call(monkeypatch, backend._collection, "add", 2)
        fail_on_call(monkeypatch, backend._collection, "delete", 1)
        with pytest.raises(BackendUnavailable, match="rollback failed"):
            memory.add(messages(5), user_id="u1")
        monkeypatch.undo()
        assert backend._collection.count() == 2 and backend._journal.count() >= 1
    time.sleep(lease + 0.1)
    with memdock.open(url) as memory:
        assert_nothing_stored(memory)


def test_on_a_server_a_writer_whose_lease_ran_out_withdraws_its_batch(
    chroma_http_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that took longer than its lease between two writes may have been declared dead (and
    rolled back) by another process: it writes no more, deletes what it wrote and says so. The slow write
    is the first record write, made to take longer than the lease."""
    lease = 0.4
    url = f"{chroma_http_url}?collection=slow_{uuid.uuid4().hex[:10]}&embedder=hash&write_batch=2&journal_lease={lease}"
    with memdock.open(url) as memory:
        backend = backend_of(memory)
        real = backend._collection.add
        adds: list[int] = []

        def slow_add(*args: object, **kwargs: list[str]) -> object:
            adds.append(len(kwargs["ids"]))
            result = real(*args, **kwargs)
            time.sleep(lease + 0.2)
            return result

        monkeypatch.setattr(backend._collection, "add", slow_add)
        with pytest.raises(BackendUnavailable, match="lease"):
            memory.add(messages(5), user_id="u1")
        assert adds == [2], "one write made, then none"
        monkeypatch.undo()
        assert_nothing_stored(memory)


def test_an_import_history_batch_over_one_write_is_journaled(where: str) -> None:
    """Events alone (`record_history`, as `Memory.import_history` writes them) over one write."""
    url = f"{where}?collection=ev_{uuid.uuid4().hex[:10]}&embedder=hash&write_batch=3"
    with memdock.open(url) as memory:
        scope = Scope(user_id="u1")
        record = memory.add("likes tea", user_id="u1")[0].record
        events = [Memory._event(record.id, EventKind.UPDATE, scope, new_text=f"v{n}") for n in range(7)]
        memory.import_history(events)
        assert len(memory.history(record.id)) == 8 and backend_of(memory)._journal.count() == 0


@pytest.mark.parametrize(("param", "value"), [("write_batch", "0"), ("journal_lease", "0"), ("journal_lease", "x")])
def test_the_write_settings_are_checked(tmp_path: Path, param: str, value: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        memdock.open(f"chroma://{tmp_path}?embedder=hash&{param}={value}")
    assert caught.value.field == param


def test_write_batch_above_chromas_limit_is_chromas_limit(tmp_path: Path) -> None:
    with memdock.open(f"chroma://{tmp_path}?embedder=hash&write_batch=100000") as memory:
        backend = backend_of(memory)
        assert backend._chunk == backend._client.get_max_batch_size()

