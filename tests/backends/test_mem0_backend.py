"""The mem0 backend against STAND-INS of the real services (tests/helpers/mem0_server_standin.py for mem0's
self-hosted server, tests/helpers/mem0ai_api_standin.py for tonori/mem0ai-api; both answer as the recorded
transcripts show, which test_mem0_standins_replay.py proves): the conformance kit through each dialect
with every gap declared, scope isolation, and the behaviours both dialects share."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest

import memdock
from memdock import Memory, MemoryNotFound, Unsupported
from memdock.capabilities import Capability
from memdock.conformance import Status, all_checks, run
from memdock.models import EventKind
from tests.helpers.mem0_server_standin import mem0_server_standin
from tests.helpers.mem0_standins import StandIn
from tests.helpers.mem0ai_api_standin import mem0ai_api_standin

DIALECTS = ("server", "mem0ai-api")
UPDATE_CHECKS = {"ids_are_generated_unique_and_kept", "inputs_are_not_mutated", "update_replaces_text_and_metadata",
                 "update_to_a_text_the_scope_already_holds_is_refused", "times_are_utc_and_ordered",
                 "updated_at_moves_on_every_update", "update_replaces_metadata_rather_than_merging",
                 "search_after_update_uses_the_new_text"}
SERVICE_GAPS = {
    "a_batch_and_metadata_changes_are_in_the_history": "the backend's history keeps no metadata (a gap of the service)",
    **dict.fromkeys((c.name for c in all_checks() if c.requires is Capability.KEYWORD_SEARCH), "keyword_search"),
}
TTL_CHECKS = dict.fromkeys((c.name for c in all_checks() if c.requires is Capability.TTL), "ttl")
EXPECTED_NOT_APPLICABLE = {
    "server": {**TTL_CHECKS,
               **SERVICE_GAPS,
               "reset_deletes_everything_when_supported":
                   "reset() is not supported: _ServerBackend cannot delete everything at once"},
    "mem0ai-api": {**TTL_CHECKS,
                   **dict.fromkeys(UPDATE_CHECKS, "update"),
                   "history_records_add_update_delete": "history_after_delete",
                   "parallel_adds_are_all_kept": "concurrent_writes",
                   "parallel_adds_and_deletes": "concurrent_writes",
                   "parallel_duplicate_adds_store_once": "concurrent_writes",
                   "parallel_updates_are_all_applied": "concurrent_writes",
                   **SERVICE_GAPS,
                   "times_follow_the_clock_to_the_millisecond":
                       "the service keeps its own times, to the second (a gap of the service)",
                   "reset_deletes_everything_when_supported":
                       "reset() is not supported: _Mem0aiApiBackend cannot delete everything at once"},
}
"""Every gap of each dialect: the capability it is declared by (see docs/mem0-backend.md), or the reason the
check reports when it cannot apply to the service."""


def _reason(expected: str) -> str:
    return expected if " " in expected else f"capability {expected} not declared"


def standin_for(dialect: str) -> AbstractContextManager[tuple[StandIn, Any]]:
    return mem0_server_standin() if dialect == "server" else mem0ai_api_standin()


def url_of(service: StandIn, dialect: str, extra: str = "") -> str:
    return f"mem0+http://{service.url}?dialect={dialect}&server_embedder=hash{extra}"


@pytest.fixture(params=DIALECTS)
def served(request: pytest.FixtureRequest) -> Iterator[tuple[str, StandIn, Any]]:
    with standin_for(request.param) as (service, state):
        yield request.param, service, state


@pytest.fixture
def memory(served: tuple[str, StandIn, Any]) -> Iterator[Memory]:
    dialect, service, _ = served
    with memdock.open(url_of(service, dialect)) as opened:
        yield opened


@pytest.mark.parametrize("dialect", DIALECTS)
def test_the_conformance_kit_passes_through_each_dialect_with_every_gap_declared(dialect: str) -> None:
    """The whole kit through a stand-in of the real service: no FAIL, and every N/A is a declared capability
    the dialect lacks (the score check runs: the stand-ins embed with ``hash`` and the URL says so)."""
    with standin_for(dialect) as (service, _):
        report = run(url_of(service, dialect))
    failed = [(r.group, r.check, r.detail) for r in report.results if r.status is Status.FAIL]
    assert failed == []
    not_applicable = {r.check: r.detail for r in report.results if r.status is Status.NA}
    expected = EXPECTED_NOT_APPLICABLE[dialect]
    assert set(not_applicable) == set(expected)
    assert {name: not_applicable[name] for name in expected} == {name: _reason(e) for name, e in expected.items()}
    assert "score_is_the_clamped_cosine" in {r.check for r in report.results if r.status is Status.PASS}
    assert len(report.results) >= 70 and report.level == "BASE"


def test_each_dialect_declares_its_own_capabilities(memory: Memory, served: tuple[str, StandIn, Any]) -> None:
    dialect, _, _ = served
    assert Capability.SERVER_SIDE_EMBEDDING in memory.capabilities and memory.embedder is None
    gaps = {Capability.UPDATE, Capability.HISTORY_AFTER_DELETE, Capability.CONCURRENT_WRITES}
    assert (gaps & memory.capabilities) == (gaps if dialect == "server" else set())
    assert type(memory.backend).capabilities == memory.capabilities


def test_text_embedded_by_the_service_and_ids_assigned_by_it(memory: Memory, served: tuple[str, StandIn, Any]) -> None:
    _, _, state = served
    user = f"u-{uuid.uuid4().hex[:8]}"
    [added] = memory.add("I keep bees", user_id=user, metadata={"hive": 2})
    stored = state.payloads[added.record.id]
    assert (stored["data"], stored["hive"], stored["user_id"]) == ("I keep bees", 2, user)
    assert added.record.created_at.tzinfo is not None
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
    """The copies tie in the service's ranking; 40 of them fill every dedup candidate."""
    user = f"u-{uuid.uuid4().hex[:8]}"
    for n in range(40):
        memory.add("same words everywhere", user_id=user, agent_id=f"a{n}")
    [first] = memory.add("same words everywhere", user_id=user)
    for _ in range(3):
        [again] = memory.add("same words everywhere", user_id=user)
        assert (again.event, again.record.id) == (EventKind.NONE, first.record.id)
    assert memory.count(user_id=user) == 41


def test_app_id_and_expiry_are_refused_not_faked(memory: Memory, served: tuple[str, StandIn, Any]) -> None:
    from datetime import UTC, datetime, timedelta

    _, service, _ = served
    before = len(service.seen)
    with pytest.raises(Unsupported, match="app_id"):
        memory.add("app fact", app_id="app-1")
    with pytest.raises(Unsupported, match="expires_at"):
        memory.add("expiring fact", user_id="u1", expires_at=datetime.now(UTC) + timedelta(days=1))
    assert len(service.seen) == before, "nothing reached the service"


def test_role_and_role_less_texts_keep_their_metadata(memory: Memory) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    plain = memory.add("plain text", user_id=user, metadata={"k": 1})[0].record
    chat = memory.add([{"role": "assistant", "content": "chat text"}], user_id=user)[0].record
    assert memory.get(plain.id).metadata == {"k": 1}
    assert memory.get(chat.id).metadata == {"role": "assistant"}


@pytest.mark.parametrize("key", ["data", "created_at", "memdock_no_role", "memdock_removed_keys"])
def test_metadata_keys_the_service_keeps_for_itself_are_refused(memory: Memory, key: str) -> None:
    with pytest.raises(memdock.InvalidInput) as info:
        memory.add("a fact", user_id="u-reserved", metadata={key: 1})
    assert info.value.field == f"metadata.{key}"
    assert memory.count(user_id="u-reserved") == 0


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_scope_too_large_to_list_is_refused_not_truncated(dialect: str) -> None:
    user = f"big-{uuid.uuid4().hex[:8]}"
    with standin_for(dialect) as (service, _), memdock.open(url_of(service, dialect, "&max_items=10")) as opened:
        for n in range(10):
            opened.add(f"fact {n}", user_id=user)
        with pytest.raises(Unsupported, match="10 or more"):
            opened.list(user_id=user)
        assert len(opened.search("fact", user_id=user, limit=5)) == 5
