"""The mem0 backend against memdock's own mem0-compatible routes (memdock's server on a real 127.0.0.1
socket, in a thread of the test process, backed by memory:// and by embedded Chroma): the conformance kit
through both dialects (over memory:// only: the kit over Chroma itself runs in test_chroma.py), scope
isolation, and the behaviours specific to mem0 services."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

import memdock
from memdock import Memory, MemoryNotFound, Unsupported
from memdock.capabilities import Capability
from memdock.conformance import Status, run
from memdock.models import EventKind
from tests.helpers.memdock_server import fresh_backend_url, memdock_app_server

DIALECT_PATHS = {"server": "mem0", "mem0ai-api": "mem0ai-api"}


@pytest.fixture(scope="module", params=["memory", "chroma"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = fresh_backend_url(request.param, tmp_path_factory.mktemp("mem0-backend"), "behind-mem0")
    with memdock_app_server(url) as base:
        yield base


def mem0_url(base: str, dialect: str) -> str:
    return f"mem0+{base}/{DIALECT_PATHS[dialect]}?dialect={dialect}"


@pytest.mark.parametrize("served", ["memory"], indirect=True)
@pytest.mark.parametrize("dialect", list(DIALECT_PATHS))
def test_the_conformance_kit_passes_through_each_dialect(served: str, dialect: str) -> None:
    """The whole kit, once per dialect, over one store (memory://): the dialect is what is under test."""
    report = run(mem0_url(served, dialect))
    failed = [(r.group, r.check, r.detail) for r in report.results if r.status is Status.FAIL]
    assert failed == []
    not_applicable = {r.check for r in report.results if r.status is Status.NA}
    assert not_applicable == {"expired_memories_are_invisible_to_every_read", "an_expired_text_can_be_added_again",
                              "score_is_the_clamped_cosine"}
    assert len(report.results) >= 60 and report.level == "BASE"


@pytest.fixture(params=list(DIALECT_PATHS))
def memory(request: pytest.FixtureRequest, served: str) -> Iterator[Memory]:
    with memdock.open(mem0_url(served, request.param)) as opened:
        yield opened


def test_text_embedded_by_the_service_and_ids_assigned_by_it(memory: Memory, served: str) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    assert Capability.SERVER_SIDE_EMBEDDING in memory.capabilities and memory.embedder is None
    [added] = memory.add("I keep bees", user_id=user, metadata={"hive": 2})
    native = httpx.get(f"{served}/v1/memories/{added.record.id}").json()
    assert (native["text"], native["metadata"], native["created_at"][:19]) == (
        "I keep bees", {"hive": 2}, added.record.created_at.isoformat()[:19])
    assert memory.search("bees", user_id=user)[0].record.id == added.record.id


def test_scopes_never_leak(memory: Memory) -> None:
    u1, u2 = f"u1-{uuid.uuid4().hex[:8]}", f"u2-{uuid.uuid4().hex[:8]}"
    secret = memory.add("u1's locker code is 4711", user_id=u1)[0].record
    memory.add("u2 likes jazz", user_id=u2)
    assert [h.record.scope.user_id for h in memory.search("locker code", user_id=u2)] == [u2]
    assert [r.scope.user_id for r in memory.list(user_id=u2).items] == [u2]
    assert memory.count(user_id=u2, filter={"user_id": u1}) == 0
    with pytest.raises(MemoryNotFound):
        memory.get(secret.id, scope=memdock.Scope(user_id=u2))
    assert memory.delete_all(user_id=u2) == 1
    assert memory.get(secret.id).text == "u1's locker code is 4711"


def test_a_duplicate_is_found_behind_copies_in_narrower_scopes(memory: Memory) -> None:
    """The copies tie in the service's ranking; 40 of them fill every dedup candidate most of the time."""
    user = f"u-{uuid.uuid4().hex[:8]}"
    for n in range(40):
        memory.add("same words everywhere", user_id=user, agent_id=f"a{n}")
    [first] = memory.add("same words everywhere", user_id=user)
    for _ in range(3):
        [again] = memory.add("same words everywhere", user_id=user)
        assert (again.event, again.record.id) == (EventKind.NONE, first.record.id)
    assert memory.count(user_id=user) == 41


def test_app_id_and_expiry_are_refused_not_faked(memory: Memory) -> None:
    from datetime import UTC, datetime, timedelta

    with pytest.raises(Unsupported, match="app_id"):
        memory.add("app fact", app_id="app-1")
    with pytest.raises(Unsupported, match="expires_at"):
        memory.add("expiring fact", user_id="u1", expires_at=datetime.now(UTC) + timedelta(days=1))


def test_role_and_role_less_texts_keep_their_metadata(memory: Memory) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    plain = memory.add("plain text", user_id=user, metadata={"k": 1})[0].record
    chat = memory.add([{"role": "assistant", "content": "chat text"}], user_id=user)[0].record
    assert memory.get(plain.id).metadata == {"k": 1}
    assert memory.get(chat.id).metadata == {"role": "assistant"}


def test_the_server_dialect_reads_null_as_missing(served: str) -> None:
    with memdock.open(mem0_url(served, "server")) as opened:
        with pytest.raises(MemoryNotFound):
            opened.get(str(uuid.uuid4()))
        with pytest.raises(MemoryNotFound):
            opened.get("not-a-uuid")
    assert httpx.get(f"{served}/mem0/memories/{uuid.uuid4()}").json() is None


def test_a_scope_too_large_to_list_is_refused_not_truncated(served: str) -> None:
    user = f"big-{uuid.uuid4().hex[:8]}"
    with memdock.open(mem0_url(served, "server") + "&max_items=10") as opened:
        opened.add([{"role": "user", "content": f"fact {n}"} for n in range(10)], user_id=user)
        with pytest.raises(Unsupported, match="10 or more"):
            opened.list(user_id=user)
        assert len(opened.search("fact", user_id=user, limit=5)) == 5
