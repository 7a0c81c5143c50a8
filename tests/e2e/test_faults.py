"""The fault suite: ``kill -9`` of each server store and of ``memdock serve`` itself during write streams.

A real ``memdock serve`` subprocess takes one-message adds (``text``) and batches (``messages``, 50 and 200
per request; 300 on pgvector and 1,000 on Chroma in the soak) from writer threads over HTTP, each in a scope
of its own, while
the test kills, with SIGKILL by PID, after a number of acknowledged requests and at a point of the largest
batch's request in flight that moves from kill to kill (`kill_phase`), so kills land in every stage of a
batch, the store's write included:

- the PostgreSQL postmaster under pgvector (a server of the test's own, restarted on its data dir): memdock
  answers 503 + ``Retry-After`` meanwhile, never another 5xx, and recovers without a restart of its own;
- a Chroma server (``chroma run``, restarted on the same port and data dir): the same;
- ``memdock serve`` itself, on pgvector and on embedded Chroma, started again on the same store.

Afterwards an unrestricted reader (`Memory.pages` over every scope, `Memory.histories`) checks: every acked
write present exactly once with its id, text and scope; no partial batch, acked or not (a request's texts
all stored or none); no text twice in a scope; no record no request wrote; every stored record's history
holding its one ADD event (a sample also through ``GET /v1/memories/{id}/history``). A request that was not
acked but is stored, completely and with its history, is allowed and counted (``unacked stored``).

CI: 2 kills per scenario. ``MEMDOCK_SOAK=1`` (``nox -s soak``): 10 kills, more writes between kills and
1,000-message batches on Chroma (one ``add`` each), and 6,000-message batches (several ``add`` calls each,
journaled) in the ``memdock serve`` kill on embedded Chroma that CI runs with ``write_batch=40``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from memdock.memory import Memory
from tests.helpers.faults import (
    KillablePostgres,
    KillableProcess,
    Ledger,
    Request,
    StoreFigures,
    Writer,
    WriteStream,
    history_over_http,
    verify_store,
)
from tests.helpers.hostile import SOAK
from tests.helpers.local_process import free_port

KILLS = 10 if SOAK else 2
ACKS_BETWEEN_KILLS = 40 if SOAK else 6
"""Acked requests (and at least one acked batch) after each (re)start before the next kill."""
RECOVERY_SECONDS = 90.0
OUTAGE_FAILURES = 4
"""Unacked answers collected while the killed server is down (at most `OUTAGE_MAX_SECONDS`), before it is
started again. On pgvector the first answers after a postmaster kill can still be acks: a backend whose
client keeps it busy serves (and commits) on until it next waits idle and notices its postmaster died."""
OUTAGE_MAX_SECONDS = 10.0

MEMDOCK = shutil.which("memdock", path=str(Path(sys.executable).parent)) or "memdock"


def writers(largest: int) -> list[Writer]:
    """Two one-message writers and batch writers of 50 and `largest` messages."""
    return [Writer(0), Writer(1), Writer(2, batch=50), Writer(3, batch=largest)]


@dataclass
class Outage:
    """One kill: its `kill_phase`, requests in flight when it landed, how the requests sent while down
    ended, seconds down, seconds the restart took and seconds from restart to the next ack."""

    phase: float = 0.0
    in_flight: int = 0
    batches_in_flight: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    down: float = 0.0
    restart: float = 0.0
    recovered: float = 0.0


@dataclass
class Run:
    """One scenario's figures, printed for docs/reliability.md (`seconds`: the writes and kills, without
    the check)."""

    name: str
    outages: list[Outage] = field(default_factory=list)
    store: StoreFigures = field(default_factory=StoreFigures)
    seconds: float = 0.0

    def line(self) -> str:
        s = self.store
        flight = sum(o.batches_in_flight for o in self.outages)
        recovered = max((o.recovered for o in self.outages), default=0.0)
        return (f"faults [{self.name}]: {len(self.outages)} kills ({flight} with a batch in flight), "
                f"{s.requests} requests, {s.acked_requests} acked ({s.acked_messages} messages), "
                f"{s.stored} stored, {s.verified} verified with their ADD event, unacked stored: "
                f"{s.unacked_requests_stored} requests ({s.unacked_messages_stored} messages); "
                f"slowest recovery {recovered:.1f} s; writes and kills {self.seconds:.1f} s; outages: "
                + "; ".join(f"at {o.phase:.2f}: {dict(o.answers)} down {o.down:.1f} s, restart {o.restart:.1f} s"
                            for o in self.outages))


def memdock_serve(url: str, folder: Path) -> KillableProcess:
    """``memdock serve`` on `url` and a fixed free port (a restart takes the same port)."""
    port = free_port()
    command = [MEMDOCK, "--url", url, "serve", "--port", str(port), "--log-level", "warning"]
    return KillableProcess(command, f"http://127.0.0.1:{port}/healthz", folder / f"memdock-{port}.log")


def base_of(server: KillableProcess) -> str:
    return server.ready_url.removesuffix("/healthz")


def kill_phase(kill_number: int) -> float:
    """Where in the largest batch's request the `kill_number`-th kill lands, as a fraction of that request's
    last acked duration: spread over [0.1, 0.9] (golden-ratio steps) so kills hit every stage of a batch --
    upload, dedup check, embedding, the store's write(s), the answer."""
    return 0.1 + 0.8 * ((0.65 + kill_number * 0.6180339887) % 1.0)


def kill_during_writes(run: Run, stream: WriteStream, kill: Callable[[], None], restart: Callable[[], float]) -> None:
    """`KILLS` times: wait for `ACKS_BETWEEN_KILLS` acks and an ack of the largest batch writer, then kill
    when that writer's next request has been in flight for `kill_phase` of its last acked one's duration;
    collect `OUTAGE_FAILURES` unacked answers while down, restart, and wait for the next ack
    (`AssertionError` when none comes)."""
    ledger = stream.ledger
    largest = max(stream.writers, key=lambda w: w.batch).number
    for number in range(KILLS):
        acks, since = ledger.acks, len(ledger.snapshot())
        assert ledger.wait_for_acks(acks + ACKS_BETWEEN_KILLS, RECOVERY_SECONDS), ledger.outcomes()
        last = ledger.wait_for_writer_ack(largest, since, RECOVERY_SECONDS)
        assert last is not None and last.ended is not None, ledger.outcomes()
        outage = Outage(phase=kill_phase(number))
        delay = outage.phase * (last.ended - last.started)
        deadline = time.monotonic() + RECOVERY_SECONDS
        while True:  # the largest writer's request in flight, `delay` seconds into it
            current = ledger.open_request(largest)
            now = time.monotonic()
            if current is not None and now - current.started >= delay:
                break
            assert now < deadline, ledger.outcomes()
            time.sleep(0.005 if current is None else min(0.005, delay - (now - current.started)))
        flight = ledger.in_flight()
        outage.in_flight, outage.batches_in_flight = len(flight), sum(r.batch for r in flight)
        mark = len(ledger.snapshot())
        killed_at = time.monotonic()
        kill()
        ledger.wait_for_failures_since(mark, OUTAGE_FAILURES, OUTAGE_MAX_SECONDS)
        outage.answers = ledger.outcomes(mark)
        outage.down = time.monotonic() - killed_at
        outage.restart = restart()
        back, acks = time.monotonic(), ledger.acks
        assert ledger.wait_for_acks(acks + 1, RECOVERY_SECONDS), f"nothing acked after the restart: {ledger.outcomes()}"
        outage.recovered = time.monotonic() - back
        run.outages.append(outage)


def check(run: Run, memory: Memory, requests: list[Request], allowed_failures: set[str]) -> None:
    """The store's check (see the module) plus: some kill landed with a batch in flight, and every request
    that was not acked ended in `allowed_failures`."""
    run.store = verify_store(memory, requests)
    print(run.line())
    assert any(o.batches_in_flight for o in run.outages), "no kill landed while a batch was in flight"
    failed = Counter(r.outcome for r in requests if r.outcome != "acked")
    assert set(failed) <= allowed_failures, (failed, [r.detail for r in requests if r.outcome not in
                                                     allowed_failures | {"acked"}][:5])
    assert run.store.failures == [], run.store.failures[:20]
    assert run.store.acked_messages > 0 and run.store.verified == run.store.stored


def sample_histories(base_url: str, requests: list[Request]) -> None:
    """The first and last acked request of each writer: its last id answers its ADD event through the HTTP
    route (and some request of a batch writer was acked)."""
    assert any(r.batch and r.outcome == "acked" for r in requests)
    for number in {r.writer for r in requests}:
        acked = [r for r in requests if r.writer == number and r.outcome == "acked"]
        for request in acked[:1] + acked[-1:]:
            assert history_over_http(base_url, request.ids[-1]) == ["ADD"]


@pytest.fixture
def own_postgres() -> Iterator[KillablePostgres]:
    """A PostgreSQL of this test's own (never the session's `pg_url` server): it gets killed. Its folder
    is a fresh temporary one outside pytest's (pytest narrows the permissions of its own temporary root
    again, which locks out the unprivileged user pgserver runs PostgreSQL as when the tests run as root)."""
    folder = Path(tempfile.mkdtemp(prefix="memdock-faults-pg-"))
    server = KillablePostgres(folder)
    try:
        yield server
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


def write_through_store_outages(run: Run, url: str, tmp_path: Path, largest: int, kill: Callable[[], None],
                                restart: Callable[[], None]) -> list[Request]:
    """One ``memdock serve`` on `url` takes the write stream while its store is killed (`kill`) and
    restarted (`restart`) `KILLS` times; memdock itself stays up, answers only 503 + ``Retry-After`` while
    the store is down and takes writes again afterwards. Returns the requests as the ledger saw them."""
    server, ledger = memdock_serve(url, tmp_path), Ledger()
    server.start()
    stream = WriteStream(base_of(server), ledger, writers(largest))
    try:
        stream.start()
        kill_during_writes(run, stream, kill, restart)
        stream.stop()
        for outage in run.outages:  # memdock itself stayed up and said "unavailable, retry"
            assert outage.answers.get("refused:503", 0) >= 1, outage.answers
        requests = ledger.snapshot()
        assert all("retry-after=1" in r.detail for r in requests if r.outcome == "refused:503")
        sample_histories(base_of(server), requests)
        assert server.starts == 1  # recovered without a restart of memdock
    finally:
        stream.stop()
        server.stop()
    return requests


def test_postmaster_kill_answers_503_and_loses_no_acked_write(own_postgres: KillablePostgres, tmp_path: Path) -> None:
    run, began = Run("pgvector: postmaster"), time.monotonic()
    url = f"{own_postgres.url}&table=faults_{uuid.uuid4().hex[:8]}&embedder=hash&connect_timeout=2"
    requests = write_through_store_outages(run, url, tmp_path, 300 if SOAK else 200, own_postgres.kill9,
                                           own_postgres.restart)
    with Memory.open(url) as memory:
        run.seconds = time.monotonic() - began
        check(run, memory, requests, {"refused:503"})


def test_chroma_server_kill_answers_503_and_loses_no_acked_write(tmp_path: Path) -> None:
    run, began = Run("Chroma server: chroma run"), time.monotonic()
    port = free_port()
    chroma = KillableProcess(
        [shutil.which("chroma", path=str(Path(sys.executable).parent)) or "chroma", "run", "--path",
         str(tmp_path / "chroma"), "--host", "127.0.0.1", "--port", str(port)],
        f"http://127.0.0.1:{port}/api/v2/heartbeat", tmp_path / "chroma.log")
    url = f"chroma+http://127.0.0.1:{port}?embedder=hash&collection=faults_{uuid.uuid4().hex[:8]}"
    chroma.start()
    try:
        requests = write_through_store_outages(run, url, tmp_path, 1000 if SOAK else 200, chroma.kill9, chroma.start)
        with Memory.open(url) as memory:
            run.seconds = time.monotonic() - began
            check(run, memory, requests, {"refused:503"})
    finally:
        chroma.stop()


SERVE_KILL_STORES = ["pgvector", "chroma", "chroma-journaled"]
"""The stores under the ``memdock serve`` kill. ``"chroma-journaled"`` is embedded Chroma with batches that
take several Chroma ``add`` calls each, so the kill lands between them and the journal's recovery rule
must roll the batch back on the next open: in CI through ``write_batch=`` (`JOURNALED_WRITE_BATCH` items
per ``add``), in the soak with batches over Chroma's own limit (`CHROMA_MULTI_ADD`)."""
CHROMA_MULTI_ADD = 6000
"""Over chromadb's `get_max_batch_size()` (5,461 items with chromadb 1.5)."""
JOURNALED_WRITE_BATCH = 40
"""Items per Chroma ``add`` in the CI variant of ``"chroma-journaled"``: a 200-message batch takes 5."""


@pytest.mark.parametrize("store", SERVE_KILL_STORES)
def test_memdock_serve_kill_leaves_no_partial_batch(store: str, request: pytest.FixtureRequest,
                                                    tmp_path: Path) -> None:
    names = {"pgvector": "pgvector", "chroma": "embedded Chroma",
             "chroma-journaled": "embedded Chroma, batches of several adds"}
    run, began = Run(f"memdock serve on {names[store]}"), time.monotonic()
    if store == "pgvector":  # the session's server: only memdock is killed here
        url = f"{request.getfixturevalue('pg_url')}&table=faults_{uuid.uuid4().hex[:8]}&embedder=hash"
        largest = 300 if SOAK else 200
    elif store == "chroma":
        url = f"chroma://{tmp_path / 'db'}?embedder=hash"
        largest = 1000 if SOAK else 200  # one Chroma add each
    elif SOAK:
        url = f"chroma://{tmp_path / 'db'}?embedder=hash"
        largest = CHROMA_MULTI_ADD
    else:
        url = f"chroma://{tmp_path / 'db'}?embedder=hash&write_batch={JOURNALED_WRITE_BATCH}"
        largest = 200
    server, ledger = memdock_serve(url, tmp_path), Ledger()
    server.start()
    stream = WriteStream(base_of(server), ledger, writers(largest), pause_on_failure=0.1)
    try:
        stream.start()
        kill_during_writes(run, stream, server.kill9, server.start)
        stream.stop()
        requests = ledger.snapshot()
        sample_histories(base_of(server), requests)
        assert server.starts == KILLS + 1
    finally:
        stream.stop()
        server.stop()
    with Memory.open(url) as memory:
        run.seconds = time.monotonic() - began
        check(run, memory, requests, {"no answer"})

