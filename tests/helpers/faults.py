"""The fault suite's parts (tests/e2e/test_faults.py): servers that are killed with SIGKILL and started
again, client threads that stream writes over HTTP and record exactly what was acknowledged, and the
check of a store afterwards.

- `KillableProcess`: a server subprocess (``memdock serve``, ``chroma run``) started on a fixed command,
  killed with ``kill -9`` by its PID, started again on the same command (same port, same data), stopped by
  its PID at the end.
- `KillablePostgres`: a PostgreSQL of its own (pgserver's binaries, its own data dir) whose postmaster is
  killed with ``kill -9`` and started again on the same data dir and socket.
- `WriteStream`: writer threads, each POSTing to ``/v1/memories`` in a scope of its own, one-message adds
  (``text``) or batches (``messages``); every request's texts are unique, so a stored text names the
  request it came from. `Ledger` holds what each request asked for and how it was answered: acked (201 with
  one ADD result per text, ids recorded), refused (a status), or a transport error (no answer).
- `verify_store`: read the whole store with an unrestricted `Memory` and check every acked write present
  exactly once (id, text, scope), no partial batch (a request's texts all stored or none, acked or not),
  no text twice in a scope, no stray record, and an ADD event with the record's text in every present
  record's history. Returns the figures (`StoreFigures`); failures are collected, not raised, so one
  report names all of them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from memdock.memory import Memory
from memdock.models import EventKind
from tests.helpers.pg_server import PgServer


def _wait_gone(pid: int, timeout: float) -> None:
    """Wait until no process has `pid` (it was not our child: it cannot be waited for)."""
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"process {pid} still exists {timeout} s after SIGKILL")
        time.sleep(0.02)


class KillableProcess:
    """A server subprocess on a fixed command: `start` waits until `ready_url` answers 200, `kill9` sends
    SIGKILL to its PID and reaps it, `stop` terminates it (SIGKILL after 15 s). Output goes to `log_path`
    (appended across restarts)."""

    def __init__(self, command: Sequence[str], ready_url: str, log_path: Path, *,
                 env: Mapping[str, str] | None = None) -> None:
        self.command = list(command)
        self.ready_url = ready_url
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout: float = 90.0) -> float:
        """Start the command and wait until it answers; returns the seconds that took. `RuntimeError` with
        the log's tail when it exits or does not answer within `timeout`."""
        began = time.monotonic()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        self.starts += 1
        while True:
            try:
                if httpx.get(self.ready_url, timeout=1.0).status_code == 200:
                    return time.monotonic() - began
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() - began > timeout:
                raise RuntimeError(f"{self.command[0]} did not answer {self.ready_url}:\n"
                                   f"{self.log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.05)

    def kill9(self) -> None:
        """``kill -9`` the process by its PID and reap it."""
        assert self.process is not None and self.process.poll() is None, "kill9 of a process that is not running"
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        assert self.process.returncode == -signal.SIGKILL

    def stop(self) -> None:
        """Terminate the process by its PID when it runs (SIGKILL after 15 s)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class KillablePostgres:
    """A PostgreSQL with pgvector of its own (a fresh data dir under `folder`), for killing: `kill9` sends
    SIGKILL to the postmaster (the first line of ``postmaster.pid``), `restart` starts it again on the same
    data dir and socket (retrying while the killed server's orphaned backends still hold its shared
    memory), `cleanup` stops it for good."""

    def __init__(self, folder: Path) -> None:
        self.server = PgServer(folder / "data")
        self.url = self.server.url

    def postmaster_pid(self) -> int:
        """The running postmaster's PID."""
        return int((self.server.data_dir / "postmaster.pid").read_text().split()[0])

    def kill9(self) -> None:
        """``kill -9`` the postmaster and wait until it is gone."""
        pid = self.postmaster_pid()
        os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, 30)

    def restart(self, timeout: float = 60.0) -> float:
        """Start it again on the same data dir (crash recovery runs); returns the seconds that took."""
        began = time.monotonic()
        while True:
            try:
                self.server.start()
            except Exception:  # pg_ctl failed: the old backends have not all exited yet
                if time.monotonic() - began > timeout:
                    raise
                time.sleep(0.2)
                continue
            assert self.server.url == self.url, "the restarted server moved its socket"
            return time.monotonic() - began

    def cleanup(self) -> None:
        """Stop the server."""
        self.server.cleanup()


@dataclass
class Request:
    """One add request: its scope, its texts in order, whether it is a batch (``messages``), and how it
    ended: ``acked`` (201, an ADD result per text, `ids` in order), ``refused:STATUS`` or ``no answer``
    (a transport error), or ``open`` while in flight."""

    writer: int
    scope: str
    texts: list[str]
    batch: bool
    outcome: str = "open"
    ids: list[str] = field(default_factory=list)
    detail: str = ""
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None


class Ledger:
    """Every request the writers sent, thread-safe; `acks` counts acked requests and `wait_for_acks`
    blocks until it reaches a number."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.acks = 0
        self._changed = threading.Condition()

    def opened(self, request: Request) -> None:
        with self._changed:
            self.requests.append(request)

    def closed(self, request: Request, outcome: str, ids: list[str] | None = None, detail: str = "") -> None:
        with self._changed:
            request.outcome = outcome
            request.ids = ids or []
            request.detail = detail
            request.ended = time.monotonic()
            if outcome == "acked":
                self.acks += 1
            self._changed.notify_all()

    def wait_for_acks(self, count: int, timeout: float) -> bool:
        """Whether `acks` reached `count` within `timeout` seconds."""
        with self._changed:
            return self._changed.wait_for(lambda: self.acks >= count, timeout=timeout)

    def wait_for_failures_since(self, mark: int, count: int, timeout: float) -> bool:
        """Whether `count` requests opened at index `mark` or later ended unacked (refused or without an
        answer) within `timeout` seconds."""
        def enough() -> bool:
            return sum(1 for r in self.requests[mark:] if r.outcome not in ("open", "acked")) >= count
        with self._changed:
            return self._changed.wait_for(enough, timeout=timeout)

    def last_acked(self, writer: int, since: int = 0) -> Request | None:
        """The newest acked request of `writer` opened at index `since` or later."""
        with self._changed:
            acked = [r for r in self.requests[since:] if r.writer == writer and r.outcome == "acked"]
            return acked[-1] if acked else None

    def wait_for_writer_ack(self, writer: int, since: int, timeout: float) -> Request | None:
        """`last_acked(writer, since)`, waiting up to `timeout` seconds for one."""
        with self._changed:
            self._changed.wait_for(lambda: self.last_acked(writer, since) is not None, timeout=timeout)
            return self.last_acked(writer, since)

    def open_request(self, writer: int) -> Request | None:
        """`writer`'s request in flight, if any."""
        with self._changed:
            return next((r for r in reversed(self.requests) if r.writer == writer and r.outcome == "open"), None)

    def snapshot(self) -> list[Request]:
        with self._changed:
            return list(self.requests)

    def in_flight(self) -> list[Request]:
        with self._changed:
            return [r for r in self.requests if r.outcome == "open"]

    def outcomes(self, start: int = 0, end: int | None = None) -> Counter[str]:
        """How the requests opened between indexes `start` and `end` ended."""
        with self._changed:
            return Counter(r.outcome for r in self.requests[start:end])


@dataclass(frozen=True)
class Writer:
    """One writer thread: `batch` messages per request (0: one-message adds through ``text``)."""

    number: int
    batch: int = 0


class WriteStream:
    """Writer threads adding unique texts to `base_url` until `stop`; a request that fails is not repeated
    (its texts are never sent again), so a stored text has exactly one request it can come from."""

    def __init__(self, base_url: str, ledger: Ledger, writers: Sequence[Writer], *, request_timeout: float = 60.0,
                 pause_on_failure: float = 0.05) -> None:
        self.base_url = base_url
        self.ledger = ledger
        self.writers = list(writers)
        self.request_timeout = request_timeout
        self.pause_on_failure = pause_on_failure
        self.run = uuid.uuid4().hex[:8]
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._write, args=(w,), daemon=True) for w in self.writers]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 120.0) -> None:
        """Stop the writers after their current request; `AssertionError` when one does not end in time."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=timeout)
        assert not any(t.is_alive() for t in self._threads), "a writer did not end"

    def _write(self, writer: Writer) -> None:
        scope = f"fault-{self.run}-w{writer.number}"
        step = 0
        with httpx.Client(base_url=self.base_url, timeout=self.request_timeout) as http:
            while not self._stop.is_set():
                step += 1
                count = writer.batch or 1
                texts = [f"writer {writer.number} request {step} message {i} run {self.run}" for i in range(count)]
                request = Request(writer.number, scope, texts, batch=writer.batch > 0)
                body: dict[str, object] = {"user_id": scope}
                if writer.batch:
                    body["messages"] = [{"role": "user", "content": t} for t in texts]
                else:
                    body["text"] = texts[0]
                self.ledger.opened(request)
                try:
                    response = http.post("/v1/memories", json=body)
                except httpx.HTTPError as exc:
                    self.ledger.closed(request, "no answer", detail=type(exc).__name__)
                    time.sleep(self.pause_on_failure)
                    continue
                if response.status_code == 201:
                    results = response.json()["results"]
                    events = [r["event"] for r in results]
                    got = [r["memory"]["text"] for r in results]
                    if events == ["ADD"] * count and got == texts:
                        self.ledger.closed(request, "acked", [r["memory"]["id"] for r in results])
                    else:
                        self.ledger.closed(request, "acked-wrong", detail=f"{events[:3]} {got[:1]}")
                else:
                    retry = response.headers.get("retry-after", "")
                    self.ledger.closed(request, f"refused:{response.status_code}",
                                       detail=f"retry-after={retry} {response.text[:200]}")
                    time.sleep(self.pause_on_failure)


@dataclass
class StoreFigures:
    """What `verify_store` found."""

    requests: int = 0
    acked_requests: int = 0
    acked_messages: int = 0
    stored: int = 0
    verified: int = 0
    unacked_requests_stored: int = 0
    unacked_messages_stored: int = 0
    failures: list[str] = field(default_factory=list)


def verify_store(memory: Memory, requests: Sequence[Request], history_chunk: int = 500) -> StoreFigures:
    """Check the store `memory` opens (unrestricted: every scope) against `requests` (see the module)."""
    figures = StoreFigures(requests=len(requests))
    fail = figures.failures.append
    records = [r for page in memory.pages() for r in page.items]
    figures.stored = len(records)
    by_id: dict[str, list[tuple[str | None, str]]] = {}
    for record in records:
        by_id.setdefault(record.id, []).append((record.scope.user_id, record.text))
    copies = Counter((record.scope.user_id, record.text) for record in records)
    fail_all(fail, [f"stored {n} times in {scope}: {text!r}" for (scope, text), n in copies.items() if n > 1])
    fail_all(fail, [f"id listed {len(c)} times: {i}" for i, c in by_id.items() if len(c) > 1])
    stored_texts = set(copies)
    origin = {(r.scope, t): r for r in requests for t in r.texts}
    fail_all(fail, [f"a record no request wrote: {scope} {text!r}" for scope, text in stored_texts
                    if (scope, text) not in origin])
    for request in requests:
        present = [(request.scope, t) in stored_texts for t in request.texts]
        if request.outcome == "open":
            fail(f"request of writer {request.writer} never ended")
        if request.outcome == "acked-wrong":
            fail(f"a 201 that is not one ADD per text: {request.detail}")
        if request.outcome == "acked":
            figures.acked_requests += 1
            figures.acked_messages += len(request.texts)
            for memory_id, text in zip(request.ids, request.texts, strict=True):
                if by_id.get(memory_id) != [(request.scope, text)]:
                    fail(f"acked write missing or changed: {memory_id} {text!r} -> {by_id.get(memory_id)}")
        elif all(present):
            figures.unacked_requests_stored += 1
            figures.unacked_messages_stored += len(request.texts)
        if any(present) and not all(present):
            fail(f"partial batch ({request.outcome}): {sum(present)} of {len(request.texts)} texts stored "
                 f"(writer {request.writer}, {request.texts[0]!r})")
    ids = [record.id for record in records]
    texts = {record.id: record.text for record in records}
    for start in range(0, len(ids), history_chunk):
        chunk = ids[start:start + history_chunk]
        for memory_id, events in memory.histories(chunk).items():
            adds = [e for e in events if e.event == EventKind.ADD and e.memory_id == memory_id]
            if len(adds) != 1 or adds[0].new_text != texts[memory_id]:
                fail(f"history of {memory_id} holds {len(adds)} ADD events ({[e.event for e in events]})")
            else:
                figures.verified += 1
    return figures


def fail_all(fail: Callable[[str], None], messages: list[str]) -> None:
    """Record each of `messages` with `fail`."""
    for message in messages:
        fail(message)


def history_over_http(base_url: str, memory_id: str) -> list[str]:
    """The event kinds ``GET /v1/memories/{id}/history`` answers for one memory."""
    response = httpx.get(f"{base_url}/v1/memories/{memory_id}/history", timeout=30)
    assert response.status_code == 200, response.text
    return [event["event"] for event in response.json()["events"]]
