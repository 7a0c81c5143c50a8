"""Faults of a mem0 service, played by a loopback stand-in: dropped connections, 500s, stalls past the
timeout and malformed JSON each map to the right typed error within the configured time budget; reads are
retried a bounded number of times and no write is ever sent twice."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

import memdock
from memdock import AuthenticationFailed, BackendUnavailable, MalformedResponse, Memory
from tests.helpers.mem0_standins import Reply, Seen, standin

TIMEOUT = 1.0
RETRIES = 2
FAULTS: dict[str, Reply] = {
    "drop": Reply(drop=True),
    "500": Reply(status=500, body={"detail": "Upstream provider error."}),
    "stall": Reply(stall=TIMEOUT + 1.0, body={"results": []}),
    "malformed": Reply(raw=b"{this is not json"),
}
MEMORY_ID = str(uuid.uuid4())


def server_dialect(fault_on: Callable[[Seen], bool], fault: Reply) -> Callable[[Seen], Reply]:
    """A mem0 server that works, except for the requests `fault_on` selects."""

    def handle(seen: Seen) -> Reply:
        if fault_on(seen):
            return fault
        if seen.method == "GET" and seen.path == "/memories":
            return Reply(body={"results": []})
        if seen.path == "/search":
            return Reply(body={"results": []})
        return Reply(status=404, body={"detail": "not found"})

    return handle


def opened(address: str, dialect: str = "server") -> Memory:
    return memdock.open(f"mem0+http://{address}?dialect={dialect}&timeout={TIMEOUT}&retries={RETRIES}")


def expected_error(name: str) -> type[Exception]:
    return MalformedResponse if name == "malformed" else BackendUnavailable


@pytest.mark.parametrize("name", list(FAULTS))
def test_a_faulty_read_is_retried_within_the_budget_and_typed(name: str) -> None:
    with standin(server_dialect(lambda s: s.path == f"/memories/{MEMORY_ID}", FAULTS[name])) as service:
        memory = opened(service.url)
        started = time.monotonic()
        with pytest.raises(expected_error(name)) as info:
            memory.get(MEMORY_ID)
        elapsed = time.monotonic() - started
        attempts = sum(1 for s in service.seen if s.path == f"/memories/{MEMORY_ID}")
    assert elapsed < TIMEOUT + 0.5, f"{name}: took {elapsed:.2f}s with a {TIMEOUT}s budget"
    if name == "malformed":
        assert attempts == 1 and (info.value.dialect, info.value.field) == ("server", "body")  # type: ignore[attr-defined]
    elif name == "stall":
        assert attempts == 1, "the first attempt used the whole budget"
    else:
        assert attempts == 1 + RETRIES, f"{name}: {attempts} attempts"


@pytest.mark.parametrize("name", list(FAULTS))
def test_a_faulty_write_is_sent_once_and_typed(name: str) -> None:
    with standin(server_dialect(lambda s: s.method == "POST" and s.path == "/memories", FAULTS[name])) as service:
        memory = opened(service.url)
        started = time.monotonic()
        with pytest.raises(expected_error(name)):
            memory.add("a fact that may or may not have landed", user_id="u1")
        elapsed = time.monotonic() - started
        writes = [s for s in service.seen if s.method == "POST" and s.path == "/memories"]
    assert len(writes) == 1, f"{name}: the write was sent {len(writes)} times"
    assert elapsed < 2 * TIMEOUT + 0.5  # the dedup search (a read) and the write each have a budget


@pytest.mark.parametrize(("method", "path", "call"), [
    ("PUT", f"/memories/{MEMORY_ID}", lambda m: m.update(MEMORY_ID, text="changed")),
    ("DELETE", f"/memories/{MEMORY_ID}", lambda m: m.delete(MEMORY_ID)),
], ids=["update", "delete"])
def test_updates_and_deletes_are_not_retried_either(method: str, path: str, call: Callable[[Memory], Any]) -> None:
    item = {"id": MEMORY_ID, "memory": "old", "metadata": None, "user_id": "u1", "role": "user",
            "created_at": "2026-11-23T22:26:35.180399+00:00", "updated_at": None}

    def handle(seen: Seen) -> Reply:
        if seen.method == method and seen.path == path:
            return Reply(status=503, body={"detail": "down"})
        if seen.method == "GET" and seen.path == f"/memories/{MEMORY_ID}":
            return Reply(body=item)
        return Reply(body={"results": []})

    with standin(handle) as service:
        with pytest.raises(BackendUnavailable):
            call(opened(service.url))
        assert sum(1 for s in service.seen if s.method == method) == 1


def test_nothing_listening_is_unavailable_within_the_budget() -> None:
    from tests.helpers.local_process import free_port

    started = time.monotonic()
    with pytest.raises(BackendUnavailable):
        opened(f"127.0.0.1:{free_port()}")
    assert time.monotonic() - started < TIMEOUT + 0.5


@pytest.mark.parametrize(("dialect", "reply"), [
    ("server", Reply(status=401, body={"detail": "Invalid API key."})),
    ("mem0ai-api", Reply(status=200, body={"code": 401, "error": "Unauthorized_Error", "message": "Unauthorized"})),
    ("platform", Reply(status=401, body={"detail": "Invalid token"})),
])
def test_refused_credentials_are_authentication_failed(dialect: str, reply: Reply) -> None:
    with standin(lambda seen: reply) as service:
        with pytest.raises(AuthenticationFailed) as info:
            memdock.open(f"mem0+http://{service.url}?dialect={dialect}&api_key=wrong-secret-key&timeout=2")
        assert "wrong-secret-key" not in str(info.value)
        assert len(service.seen) == 1, "auth failures are not retried"


def test_a_wrong_shape_names_the_dialect_and_field() -> None:
    def handle(seen: Seen) -> Reply:
        if seen.path == f"/memories/{MEMORY_ID}":
            return Reply(body={"id": MEMORY_ID, "memory": 42, "created_at": "2026-01-01T00:00:00Z"})
        return Reply(body={"results": []})

    with standin(handle) as service, pytest.raises(MalformedResponse) as info:
        opened(service.url).get(MEMORY_ID)
    assert (info.value.dialect, info.value.field) == ("server", "memory")


@pytest.mark.parametrize(("url", "field"), [
    ("mem0+http://127.0.0.1:1?base_url=http://elsewhere", "base_url"),
    ("mem0+http://127.0.0.1:1?dialect=graphql", "dialect"),
    ("mem0+http://127.0.0.1:1?timeout=0", "timeout"),
    ("mem0+http:///no-host", "host"),
])
def test_bad_urls_are_refused_naming_the_parameter(url: str, field: str) -> None:
    from memdock import InvalidInput

    with pytest.raises(InvalidInput) as info:
        memdock.open(url)
    assert info.value.field == field


def test_design_names_of_the_dialects_are_aliases() -> None:
    from memdock.backend import BackendURL
    from memdock.backends.mem0.backend import Mem0Backend

    assert Mem0Backend.Settings.from_url(BackendURL.parse("mem0+http://h:1/m?dialect=oss")).dialect == "server"
    assert Mem0Backend.Settings.from_url(BackendURL.parse("mem0+https://h/x?dialect=tonori")).dialect == "mem0ai-api"
    assert Mem0Backend.Settings.from_url(BackendURL.parse("mem0+https://h/x/?dialect=tonori")).base_url == "https://h/x"
