"""concurrency: several threads adding and deleting at once lose and duplicate nothing."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import memdock
from memdock.capabilities import Capability
from memdock.conformance.context import CheckContext
from memdock.conformance.registry import NotApplicable, check


@check("concurrency", requires=Capability.CONCURRENT_WRITES)
def check_parallel_adds_are_all_kept(ctx: CheckContext) -> None:
    """4 threads, each with its own Memory on the same URL, add 15 distinct memories each: all 60 are
    stored, once each.

    Troubleshooting: several Memory objects (server workers, processes) share one store; guard the
    backend's shared state itself (a lock, a transaction), not only per Memory.
    """
    def worker(thread: int) -> list[str]:
        with memdock.open(ctx.url) as own:
            return [own.add(f"thread {thread} fact {n}", user_id=ctx.user)[0].record.id for n in range(15)]

    with ThreadPoolExecutor(4) as pool:
        ids = [i for chunk in pool.map(worker, range(4)) for i in chunk]
    assert len(set(ids)) == 60, len(set(ids))
    assert ctx.memory.count(user_id=ctx.user) == 60


@check("concurrency", requires=Capability.CONCURRENT_WRITES)
def check_parallel_adds_and_deletes(ctx: CheckContext) -> None:
    """4 threads with their own Memory objects delete the old memories while adding new ones: exactly the
    new ones remain.

    Troubleshooting: deletes must not race with adds on shared structures.
    """
    doomed = [ctx.memory.add(f"old {n}", user_id=ctx.user)[0].record.id for n in range(20)]

    writers = [memdock.open(ctx.url) for _ in range(4)]

    def work(n: int) -> None:
        own = writers[n % 4]
        own.add(f"new {n}", user_id=ctx.user)
        own.delete(doomed[n])

    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(work, range(20)))
    finally:
        for own in writers:
            own.close()
    texts = sorted(r.text for r in ctx.memory.list(user_id=ctx.user, limit=100).items)
    assert texts == sorted(f"new {n}" for n in range(20)), texts


@check("concurrency", requires=Capability.CONCURRENT_WRITES)
def check_parallel_duplicate_adds_store_once(ctx: CheckContext) -> None:
    """4 threads adding the same text through one Memory store it once.

    Troubleshooting: dedup runs under Memory's lock of the scope; `find_by_hash` must see committed adds.
    """
    with ThreadPoolExecutor(4) as pool:
        ids = set(pool.map(lambda _: ctx.memory.add("same text", user_id=ctx.user)[0].record.id, range(8)))
    assert len(ids) == 1 and ctx.memory.count(user_id=ctx.user) == 1, ids


@check("concurrency", requires=Capability.CONCURRENT_WRITES)
def check_parallel_updates_are_all_applied(ctx: CheckContext) -> None:
    """4 threads with their own Memory objects update 20 memories (text and metadata) while others read and
    add: every update is applied exactly, nothing is lost or duplicated. N/A without UPDATE.

    Troubleshooting: an update must replace one record atomically (no read-modify-write of shared state
    without a lock or a transaction).
    """
    if Capability.UPDATE not in ctx.memory.capabilities:
        raise NotApplicable("capability update not declared")
    ids = [ctx.memory.add(f"before {n}", user_id=ctx.user, metadata={"n": n})[0].record.id for n in range(20)]
    writers = [memdock.open(ctx.url) for _ in range(4)]

    def work(n: int) -> None:
        own = writers[n % 4]
        own.update(ids[n], text=f"after {n}", metadata={"n": n, "done": True})
        own.add(f"extra {n}", user_id=ctx.user)
        own.list(user_id=ctx.user, limit=5)

    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(work, range(20)))
    finally:
        for own in writers:
            own.close()
    for n, memory_id in enumerate(ids):
        got = ctx.memory.get(memory_id)
        assert (got.text, got.metadata) == (f"after {n}", {"n": n, "done": True}), got
    assert ctx.memory.count(user_id=ctx.user) == 40
