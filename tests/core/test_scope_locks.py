"""`Memory` holds a write lock per exact scope: a writer that waits on a slow store holds up writers of the
same scope only (readers of no scope), and concurrent writers of one scope still store a text once."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from memdock import Memory
from memdock.backends.reference import ReferenceBackend
from memdock.models import HistoryEvent, MemoryRecord, Scope
from memdock.scope_locks import ScopeLocks
from tests.helpers.support import make_test_embedder


class GatedBackend(ReferenceBackend):
    """The reference store, except that adds to user "slow" wait until `gate` opens (a store that has
    stopped answering for that write)."""

    gate = threading.Event()

    def add_with_history(self, records: Sequence[MemoryRecord], events: Sequence[HistoryEvent]) -> None:
        if any(r.scope.user_id == "slow" for r in records):
            assert self.gate.wait(timeout=30)
        super().add_with_history(records, events)


def test_a_write_stuck_in_the_store_holds_up_its_own_scope_only() -> None:
    embedder = make_test_embedder()
    memory = Memory(GatedBackend(ReferenceBackend.Settings(), embedder), embedder)
    GatedBackend.gate.clear()
    with ThreadPoolExecutor(3) as pool:
        stuck = pool.submit(memory.add, "waits for the store", user_id="slow")
        time.sleep(0.2)
        same_scope = pool.submit(memory.add, "queued behind it", user_id="slow")
        other = memory.add("another user's write", user_id="fast")  # would wait 30 s behind one global lock
        assert [r.event.value for r in other] == ["ADD"] and not stuck.done() and not same_scope.done()
        # reads take no write lock: neither another scope's nor the stuck scope's wait for the store's write
        assert [h.record.text for h in memory.search("write", user_id="fast")] == ["another user's write"]
        assert memory.count(user_id="fast") == 1 and memory.list(user_id="slow").items == []
        assert not stuck.done()
        GatedBackend.gate.set()
        assert stuck.result(timeout=10)[0].event.value == same_scope.result(timeout=10)[0].event.value == "ADD"
    assert memory.count(user_id="slow") == 2 and memory._scope_locks.held() == 0


def test_threads_adding_one_text_to_one_scope_store_it_once() -> None:
    memory = Memory.open("memory://", embedder=make_test_embedder())
    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(lambda _: memory.add("same text", user_id="u1")[0].record.id, range(32)))
    assert len(ids) == 1 and memory.count(user_id="u1") == 1


def test_locks_are_dropped_when_released_and_taken_in_one_order() -> None:
    locks = ScopeLocks()
    a, b = Scope(user_id="a"), Scope(user_id="b")
    done: list[str] = []

    def both(first: Scope, second: Scope, name: str) -> None:
        for _ in range(200):
            with locks.holding([first, second, first]):
                pass
        done.append(name)

    threads = [threading.Thread(target=both, args=(a, b, "ab")), threading.Thread(target=both, args=(b, a, "ba"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(done) == ["ab", "ba"], "opposite orders deadlocked"
    assert locks.held() == 0
