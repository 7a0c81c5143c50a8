"""The ``memdock+http://`` backend against real memdock servers: a ``memdock serve`` subprocess on embedded
Chroma (the conformance kit through the client, keys, typed errors) and uvicorn servers in this process
(stopped servers, a server whose own backend is down, reset). A timeout is played by a real listening
socket that never answers."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import memdock
from memdock import AuthenticationFailed, BackendUnavailable, Capability, MalformedResponse, Memory
from memdock.backends.chroma import CAPABILITIES as CHROMA_CAPABILITIES
from memdock.backends.memdock_http import KEY_ENV, MemdockHttpBackend, filter_to_json
from memdock.conformance import Status, run
from memdock.conformance.checks.filters import CASES
from memdock.embedders.hashing import HashEmbedder
from memdock.errors import InvalidFilter, InvalidInput, MemoryNotFound, Unsupported
from memdock.filters import Comparison, Or, parse_mem0_filter
from memdock.models import MemoryRecord, Scope
from memdock.validation import text_hash
from tests.helpers.memdock_server import memdock_app_server, memdock_server, server_log

KEY = "client-key-0123456789abcdef"
ALICE_KEY = "alice-only-key-0123456789"


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "keys.json"
    path.write_text(json.dumps([{"name": "all", "key": KEY},
                                {"name": "alice", "key": ALICE_KEY, "scopes": [{"user_id": "alice"}]}]))
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, keys_file: Path) -> Iterator[str]:
    """``memdock serve`` (a real subprocess) on embedded Chroma with the hash embedder; its native API's
    ``host:port``."""
    folder = tmp_path_factory.mktemp("served")
    with memdock_server(f"chroma://{folder}/db?embedder=hash", "--keys-file", str(keys_file)) as base:
        yield base.removeprefix("http://")


@pytest.fixture
def client(served: str) -> Iterator[Memory]:
    with memdock.open(f"memdock+http://{served}?api_key={KEY}") as memory:
        yield memory


def user() -> str:
    return f"u-{uuid.uuid4().hex[:10]}"


# -- the conformance kit --------------------------------------------------------------------------------------


def test_the_kit_through_the_client_reports_what_chroma_reports_directly(keys_file: Path, tmp_path: Path) -> None:
    """`memdock conformance memdock+http://...` (the command itself) against a `memdock serve` on embedded
    Chroma that allows reset (the kit checks it), and the kit on embedded Chroma in this process: no FAIL,
    the same level, the same status for every check."""
    exe = shutil.which("memdock", path=str(Path(sys.executable).parent)) or "memdock"
    with memdock_server(f"chroma://{tmp_path}/served?embedder=hash", "--keys-file", str(keys_file),
                        "--allow-reset") as base:
        done = subprocess.run([exe, "conformance", f"memdock+{base}/v1?api_key={KEY}", "--json"],
                              capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    through = json.loads(done.stdout)
    assert KEY not in done.stdout and "api_key=***" in through["url"]
    direct = run(f"chroma://{tmp_path}/direct?embedder=hash")
    assert [r["check"] for r in through["results"] if r["status"] not in ("PASS", "N/A")] == []
    assert through["level"] == direct.level == "FULL"
    assert {(r["group"], r["check"]): r["status"] for r in through["results"]} == {
        (r.group, r.check): r.status.value for r in direct.results}
    assert any(r.check == "score_is_the_clamped_cosine" and r.status is Status.PASS for r in direct.results)


def test_an_open_backend_declares_what_the_servers_backend_declares(client: Memory) -> None:
    assert client.capabilities == CHROMA_CAPABILITIES | {Capability.SERVER_SIDE_EMBEDDING}
    assert MemdockHttpBackend.capabilities == {Capability.SERVER_SIDE_EMBEDDING}
    assert client.embedder is None and client.backend.server_embedder() == "hash"


def test_ids_times_and_dedup_are_the_clients(client: Memory) -> None:
    who = user()
    first = client.add("likes green tea", user_id=who, metadata={"n": 1})[0]
    got = client.get(first.record.id)
    assert (got.id, got.created_at, got.updated_at) == (first.record.id, first.record.created_at,
                                                        first.record.updated_at)
    again = client.add("likes   green tea", user_id=who)[0]
    assert (again.event.value, again.record.id) == ("NONE", first.record.id)
    assert client.backend.find_by_hash(Scope(user_id=who), text_hash("likes green tea")) is not None
    assert client.backend.find_by_hash(Scope(user_id=who, agent_id="a"), text_hash("likes green tea")) is None
    assert [e.event.value for e in client.history(first.record.id)] == ["ADD"]


def test_a_repeated_import_stores_once_so_writes_may_be_retried(client: Memory) -> None:
    """What a retried write does when its first attempt landed: the same ids come back, nothing doubles."""
    who = user()
    now = datetime.now(UTC)
    batch = [MemoryRecord(id=str(uuid.uuid4()), text=f"retried {n}", scope=Scope(user_id=who),
                          hash=text_hash(f"retried {n}"), created_at=now, updated_at=now) for n in range(3)]
    first = client.backend.add(batch)
    again = client.backend.add(batch)
    assert [r.id for r in again] == [r.id for r in first] == [r.id for r in batch]
    assert client.count(user_id=who) == 3
    assert [e.event.value for e in client.history(batch[0].id)] == ["ADD"]


def test_a_large_batch_goes_in_parts_and_stays_all_or_nothing(client: Memory, served: str) -> None:
    """Five records of 100 KB (more than one import body holds) are stored in parts; when the last part is
    refused, the parts already stored are deleted again and the error names the record's place in the batch."""
    who = user()
    now = datetime.now(UTC)

    def records(tag: str) -> list[MemoryRecord]:
        texts = [f"{tag} {n} " + "long text " * 10_000 for n in range(5)]
        return [MemoryRecord(id=str(uuid.uuid4()), text=t, scope=Scope(user_id=who), hash=text_hash(t),
                             created_at=now, updated_at=now) for t in texts]

    kept = records("kept")
    imports_before = server_log(f"http://{served}").count('"/v1/import"')
    stored = client.backend.add(kept)
    assert [r.id for r in stored] == [r.id for r in kept] and client.count(user_id=who) == 5
    assert server_log(f"http://{served}").count('"/v1/import"') - imports_before == 3  # 2 + 2 + 1 records
    theirs = client.add("another scope's memory", user_id=user())[0].record
    doomed = [*records("doomed"), MemoryRecord(id=theirs.id, text="clash", scope=Scope(user_id=who),
                                               hash=text_hash("clash"), created_at=now, updated_at=now)]
    with pytest.raises(InvalidInput) as info:
        client.backend.add(doomed)
    assert info.value.field == "records[5].id", info.value
    assert client.count(user_id=who) == 5
    assert all(client.backend.get(r.id) is None for r in doomed[:5])


def test_choosing_an_embedder_for_a_store_that_embeds_on_its_service_is_refused(served: str) -> None:
    """The server's vectors are its own: ``embedder=`` (or an embedder object) was silently ignored."""
    with pytest.raises(InvalidInput) as in_url:
        memdock.open(f"memdock+http://{served}?api_key={KEY}&embedder=minilm")
    assert in_url.value.field == "embedder"
    with pytest.raises(InvalidInput) as given:
        Memory.open(f"memdock+http://{served}?api_key={KEY}", embedder=HashEmbedder())
    assert given.value.field == "embedder"


# -- keys -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["", "?api_key=wrong-key-0123456789abc"], ids=["missing", "wrong"])
def test_a_missing_or_wrong_key_is_authentication_failed_at_open(served: str, query: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(AuthenticationFailed) as info:
        memdock.open(f"memdock+http://{served}{query}")
    assert "401" in str(info.value) and "wrong-key" not in str(info.value)


def test_the_key_may_come_from_the_environment(served: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    with memdock.open(f"memdock+http://{served}") as memory:
        assert memory.count(user_id=user()) == 0


def test_a_restricted_key_reaches_only_its_scopes(served: str) -> None:
    with memdock.open(f"memdock+http://{served}?api_key={ALICE_KEY}") as alice:
        stored = alice.add("alice's note", user_id="alice")[0].record
        assert alice.get(stored.id).text == "alice's note"
        with pytest.raises(AuthenticationFailed) as info:
            alice.add("not hers", user_id="bob")
        assert "403" in str(info.value)
        with pytest.raises(AuthenticationFailed):
            alice.search("note", user_id="bob")
        alice.delete(stored.id)


# -- typed errors ---------------------------------------------------------------------------------------------


def test_the_servers_errors_come_back_typed_naming_the_field(client: Memory) -> None:
    who = user()
    backend = client.backend
    with pytest.raises(InvalidInput) as bad_cursor:
        backend.list(Scope(user_id=who), None, 10, "not-a-cursor")
    assert bad_cursor.value.field == "cursor" and str(bad_cursor.value) == "cursor: malformed cursor"
    client.add("rated in words", user_id=who, metadata={"rating": "high"})
    with pytest.raises(InvalidFilter) as bad_filter:
        client.count(user_id=who, filter={"rating": {"gt": 1}})
    assert bad_filter.value.field == "rating"
    with pytest.raises(InvalidInput) as too_long:
        backend.search(None, "x" * 10, Scope(user_id=who), None, 100_000)
    assert too_long.value.field == "limit"
    now = datetime.now(UTC)
    with pytest.raises(MemoryNotFound):
        backend.update(MemoryRecord(id=str(uuid.uuid4()), text="x", scope=Scope(user_id=who), hash=text_hash("x"),
                                    created_at=now, updated_at=now))
    assert backend.get(str(uuid.uuid4())) is None
    with pytest.raises(Unsupported, match="allow-reset"):
        client.reset()


def test_an_imported_id_of_another_scope_is_refused_naming_it(client: Memory) -> None:
    theirs = client.add("someone else's", user_id=user())[0].record
    now = datetime.now(UTC)
    clash = MemoryRecord(id=theirs.id, text="mine", scope=Scope(user_id=user()), hash=text_hash("mine"),
                         created_at=now, updated_at=now)
    with pytest.raises(InvalidInput) as info:
        client.backend.add([clash])
    assert info.value.field == "records[0].id"
    assert client.get(theirs.id).text == "someone else's"


@pytest.mark.parametrize(("query", "field"), [
    ("?timeout=0", "timeout"), ("?retries=-1", "retries"), ("?base_url=http://x", "base_url"),
    ("?collection=c", "collection"),
])
def test_bad_urls_are_refused_naming_the_parameter(query: str, field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        memdock.open(f"memdock+http://127.0.0.1:1{query}")
    assert info.value.field == field


def test_a_url_that_is_not_the_native_api_says_so(served: str) -> None:
    with pytest.raises(MalformedResponse, match="mount"):
        memdock.open(f"memdock+http://{served}/mem0?api_key={KEY}")


# -- outages and timeouts -------------------------------------------------------------------------------------


def test_a_stopped_server_is_backend_unavailable(tmp_path: Path) -> None:
    with memdock_app_server(f"memory://stopped-{uuid.uuid4().hex}?embedder=hash") as base:
        url = f"memdock+{base}?timeout=2&retries=1"
        memory = memdock.open(url)
        kept = memory.add("before the stop", user_id="u")[0].record
    try:
        started = time.monotonic()
        with pytest.raises(BackendUnavailable):
            memory.get(kept.id)
        with pytest.raises(BackendUnavailable):
            memory.add("after the stop", user_id="u")
        assert time.monotonic() - started < 5
    finally:
        memory.close()
    with pytest.raises(BackendUnavailable):
        memdock.open(url)


def test_a_server_whose_backend_is_down_is_backend_unavailable() -> None:
    """A memdock server in front of another (its backend is memdock+http) answers 503 once the far one
    stops; the client retries within its budget (pauses of 0.1 s and 0.2 s), then raises BackendUnavailable."""
    with ExitStack() as stack:
        far_server = ExitStack()
        far = far_server.enter_context(memdock_app_server(f"memory://far-{uuid.uuid4().hex}?embedder=hash"))
        near_memory = stack.enter_context(Memory.open(f"memdock+{far}?timeout=1&retries=0"))
        near = stack.enter_context(memdock_app_server(near_memory))
        client = stack.enter_context(memdock.open(f"memdock+{near}?timeout=3&retries=2"))
        assert client.add("through two servers", user_id="u")[0].record.text == "through two servers"
        assert client.capabilities == near_memory.capabilities
        far_server.close()
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match="503"):
            client.count(user_id="u")
        assert 0.3 <= time.monotonic() - started < 3


def test_a_server_that_never_answers_times_out_within_the_budget() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match="Timeout"):
            memdock.open(f"memdock+http://127.0.0.1:{port}?timeout=0.6&retries=3")
        elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 2.0, elapsed


# -- reset and the wire format --------------------------------------------------------------------------------


def test_reset_needs_allow_reset_and_an_unrestricted_key(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps([{"name": "all", "key": KEY},
                                {"name": "alice", "key": ALICE_KEY, "scopes": [{"user_id": "alice"}]}]))
    with ExitStack() as stack:
        base = stack.enter_context(memdock_app_server(f"chroma://{tmp_path}/db?embedder=hash", "--allow-reset",
                                                      "--keys-file", str(keys)))
        memory = stack.enter_context(memdock.open(f"memdock+{base}?api_key={KEY}"))
        alice = stack.enter_context(memdock.open(f"memdock+{base}?api_key={ALICE_KEY}"))
        record = memory.add("doomed", user_id="alice")[0].record
        with pytest.raises(Unsupported, match="unrestricted key"):
            alice.reset()
        memory.reset()
        assert memory.count(user_id="alice") == 0 and memory.backend.get(record.id) is None


@pytest.mark.parametrize("flt", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_filters_travel_as_json_that_parses_back_to_the_same_tree(flt: dict[str, Any]) -> None:
    tree = parse_mem0_filter(flt)
    assert parse_mem0_filter(json.loads(json.dumps(filter_to_json(tree)))) == tree


def test_a_field_json_cannot_name_is_refused() -> None:
    with pytest.raises(InvalidFilter) as info:
        filter_to_json(Or((Comparison("NOT", "eq", 1),)))
    assert info.value.field == "NOT"


def test_the_plugin_module_loads_no_http_client() -> None:
    code = ("import sys\nfrom memdock.plugins import backend_classes\n"
            "assert 'memdock+https' in backend_classes()\nprint('httpx' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr


@pytest.mark.parametrize("routes_missing", [(), ("/v1/lookups",)])
def test_a_batch_duplicate_check_answers_as_one_lookup_each(routes_missing: tuple[str, ...]) -> None:
    """`find_duplicates` asks ``POST /lookups`` (500 texts a request), or ``/lookup`` text by text on a
    server from before that route; the answers are the same."""
    with ExitStack() as stack:
        base = stack.enter_context(memdock_app_server(f"memory://dups-{uuid.uuid4().hex[:8]}?embedder=hash",
                                                      without_routes=routes_missing))
        memory = stack.enter_context(Memory.open(f"memdock+http://{base.removeprefix('http://')}"))
        scope, other = Scope(user_id="u1"), Scope(user_id="u1", agent_id="a")
        added = memory.add([{"role": "user", "content": f"fact {n}"} for n in range(0, 1200, 3)], scope=scope)
        stored = {r.record.text: r.record.id for r in added}
        wanted = [(s, f"fact {n}", text_hash(f"fact {n}")) for n in range(1200) for s in (scope, other)]
        found = memory.backend.find_duplicates(wanted)
        assert [r and r.id for r in found] == [stored.get(text) if s == scope else None for s, text, _ in wanted]
