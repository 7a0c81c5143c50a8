"""A bounded load test: 50 concurrent clients (threads, one httpx client each) against a real uvicorn server on
127.0.0.1 over pgvector and embedded Chroma, mixing adds, searches, lists, gets, updates and deletes on the
native API for about 20 s (``MEMDOCK_SOAK=1``: ten times as long). The property: no answer is a 5xx, and
afterwards every acknowledged write is present exactly once (each add's text once in its scope, with the id
the server acknowledged; acked deletes gone; acked updates holding their last acked text).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from memdock.memory import Memory
from tests.helpers.hostile import scaled
from tests.helpers.memdock_server import memdock_app_server

CLIENTS = 50
SCOPES = 10


@pytest.fixture(params=["pgvector", "chroma"])
def base_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real server over a fresh store of each kind."""
    if request.param == "chroma":
        url = f"chroma://{tmp_path_factory.mktemp('load-chroma')}/db?embedder=hash"
    else:
        url = f"{request.getfixturevalue('pg_url')}&table=load_{uuid.uuid4().hex[:12]}&embedder=hash"
    memory = Memory.open(url)
    try:
        with memdock_app_server(memory) as base:
            yield base
    finally:
        memory.close()


@dataclass
class Tally:
    """What one client saw: statuses, and the writes the server acknowledged."""

    statuses: Counter[int] = field(default_factory=Counter)
    added: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (scope, text)
    deleted: set[str] = field(default_factory=set)
    updated: dict[str, str] = field(default_factory=dict)  # id -> last acked text
    failures: list[str] = field(default_factory=list)


def run_client(base: str, number: int, stop_at: float, tally: Tally) -> None:
    """Mixed operations until `stop_at`: each client writes only texts of its own (so each id has one writer)."""
    with httpx.Client(base_url=base, timeout=60) as http:
        step = 0
        while time.monotonic() < stop_at:
            step += 1
            scope = f"load-{(number + step) % SCOPES}"
            roll = step % 10
            try:
                if roll < 4:
                    text = f"client {number} fact {step}"
                    r = http.post("/v1/memories", json={"user_id": scope, "text": text})
                    if r.status_code == 201:
                        for result in r.json()["results"]:
                            tally.added[result["memory"]["id"]] = (scope, text)
                elif roll < 6:
                    r = http.post("/v1/search", json={"user_id": scope, "query": f"fact {step}", "limit": 5})
                elif roll == 6:
                    r = http.get("/v1/memories", params={"user_id": scope, "limit": 50})
                else:
                    mine = sorted(set(tally.added) - tally.deleted)
                    if not mine:
                        continue
                    target = mine[step % len(mine)]
                    if roll == 7:
                        r = http.get(f"/v1/memories/{target}")
                    elif roll == 8:
                        text = f"client {number} fact {step} (updated)"
                        r = http.patch(f"/v1/memories/{target}", json={"text": text})
                        if r.status_code == 200:
                            tally.updated[target] = text
                    else:
                        r = http.delete(f"/v1/memories/{target}")
                        if r.status_code == 200:
                            tally.deleted.add(target)
                tally.statuses[r.status_code] += 1
                if r.status_code >= 400:
                    tally.failures.append(f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text[:200]}")
            except httpx.HTTPError as exc:
                tally.failures.append(f"{type(exc).__name__}: {exc}")


def test_fifty_concurrent_clients_get_no_5xx_and_every_acked_write_stays(base_url: str,
                                                                          request: pytest.FixtureRequest) -> None:
    seconds = scaled(20)
    stop_at = time.monotonic() + seconds
    tallies = [Tally() for _ in range(CLIENTS)]
    threads = [threading.Thread(target=run_client, args=(base_url, n, stop_at, tallies[n])) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 300)
    assert not any(thread.is_alive() for thread in threads)
    statuses = sum((t.statuses for t in tallies), Counter())
    failures = [f for t in tallies for f in t.failures]
    assert failures == [] and not any(s >= 500 for s in statuses), (statuses, failures[:10])
    assert sum(statuses.values()) >= CLIENTS * 5, statuses  # the load really ran

    with httpx.Client(base_url=base_url, timeout=60) as http:
        stored: dict[str, list[tuple[str, str]]] = {}
        for n in range(SCOPES):
            scope = f"load-{n}"
            cursor = None
            while True:
                params: dict[str, str | int] = {"user_id": scope, "limit": 1000}
                if cursor:
                    params["cursor"] = cursor
                page = http.get("/v1/memories", params=params).json()
                for item in page["items"]:
                    stored.setdefault(item["id"], []).append((scope, item["text"]))
                cursor = page.get("next_cursor")
                if not cursor:
                    break
    assert all(len(copies) == 1 for copies in stored.values())  # no memory listed twice
    texts = Counter(text for copies in stored.values() for _, text in copies)
    assert all(count == 1 for count in texts.values())  # no text stored twice
    for tally in tallies:
        for memory_id, (scope, text) in tally.added.items():
            if memory_id in tally.deleted:
                assert memory_id not in stored
            else:
                assert stored.get(memory_id) == [(scope, tally.updated.get(memory_id, text))]
    print(f"load [{request.node.callspec.id}]: {sum(statuses.values())} requests in {seconds} s, "
          f"statuses {dict(statuses)}, {len(stored)} memories stored")
