"""Keyword and hybrid search of the pgvector backend against a real PostgreSQL: the reference backend's exact
rankings and scores on random multilingual data (scopes, filters, expiry, updates, deletes), one statement
per search, the schema migration of a version-1 table, PostgreSQL's own text search configurations, and
the edge cases of PostgreSQL's tsvector limits."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

import memdock
from memdock import InvalidInput
from memdock.backend import Backend
from memdock.backends.pgvector import keyword as pg_keyword
from memdock.backends.pgvector import schema
from memdock.backends.pgvector import store as pg_store
from memdock.backends.reference import ReferenceBackend
from memdock.capabilities import Capability
from memdock.models import MemoryRecord, Scope
from memdock.validation import text_hash
from tests.backends.test_pgvector import settings_of
from tests.backends.test_pgvector_roundtrips import traced
from tests.helpers.keyword_data import (
    WORDS,
    assert_same,
    compare_hybrid_search,
    compare_keyword_search,
    dataset,
    make_record,
    random_vector,
)


def fresh_url(pg_url: str, *, text_search: str | None = None, pool: int = 10) -> str:
    """`pg_url` on a new table (hash embedder; `pool` connections)."""
    extra = f"&text_search={text_search}" if text_search else ""
    return (f"{pg_url}&table=t_{uuid.uuid4().hex[:12]}&embedder=hash&pool_min_size=1&pool_max_size={pool}"
            f"{extra}")


@pytest.fixture
def pair(pg_url: str) -> Iterator[tuple[Backend, Backend]]:
    """A pgvector table and a reference store holding the same 300 records (same ids, same vectors)."""
    records = dataset(7, 300)
    with memdock.open(fresh_url(pg_url)) as pg, memdock.open("memory://?embedder=hash") as ref:
        pg.backend.add(records)
        ref.backend.add(records)
        yield pg.backend, ref.backend


def test_keyword_search_equals_the_reference_exactly(pair: tuple[Backend, Backend]) -> None:
    hits = compare_keyword_search(*pair, queries=120, limits=(10, 3), tolerance=1e-9)
    assert hits > 300  # most comparisons had hits


def test_hybrid_search_equals_the_reference(pair: tuple[Backend, Backend]) -> None:
    """Same ranking; scores within float32's precision (pgvector keeps and multiplies float32 vectors)."""
    compare_hybrid_search(*pair, queries=60)


def test_statistics_are_those_of_the_scope_alone(pg_url: str) -> None:
    """Words frequent in another scope do not change a scope's scores (BM25 over the candidates only)."""
    rng = random.Random(3)
    mine = [make_record(t, Scope(user_id="me"), rng) for t in ["green tea at noon", "black coffee", "green walls"]]
    noise = [make_record(f"green green green {n}", Scope(user_id="other"), rng) for n in range(50)]
    with memdock.open(fresh_url(pg_url)) as alone, memdock.open(fresh_url(pg_url)) as crowded:
        alone.backend.add(mine)
        crowded.backend.add(mine + noise)
        for mode in ("keyword", "hybrid"):
            a = alone.search("green tea", user_id="me", mode=mode)
            b = crowded.search("green tea", user_id="me", mode=mode)
            assert [(h.record.id, h.score) for h in a] == [(h.record.id, h.score) for h in b]
            assert {h.record.id for h in b} <= {r.id for r in mine}


def test_updates_deletes_and_expiry_change_the_keyword_ranking_like_the_reference(pg_url: str) -> None:
    rng = random.Random(9)
    records = [make_record(t, Scope(user_id="u1"), rng) for t in
               ["green tea", "jasmine tea", "Málaga café", "東京駅", "coffee and tea and tea"]]
    with memdock.open(fresh_url(pg_url)) as pg, memdock.open("memory://?embedder=hash") as ref:
        for target in (pg.backend, ref.backend):
            target.add(records)
            changed = records[0].model_copy(update={"text": "oolong from 東京", "hash": text_hash("oolong from 東京")})
            target.update(changed)
            target.delete([records[1].id])
            soon = records[2].model_copy(update={"expires_at": datetime.now(UTC) - timedelta(seconds=1)})
            target.update(soon)
        for query in ["tea", "green", "oolong 東京", "malaga", "coffee tea"]:
            want = ref.backend.keyword_search(query, Scope(user_id="u1"), None, 10)
            assert_same(pg.backend.keyword_search(query, Scope(user_id="u1"), None, 10), want, 1e-9)
        assert [h.record.id for h in pg.search("tea", user_id="u1", mode="keyword")] == [records[4].id]
        assert pg.search("green", user_id="u1", mode="keyword") == []  # its text changed


def test_a_search_in_each_mode_is_one_statement(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg_store, "IDLE_CHECK_SECONDS", 3600.0)
    with memdock.open(fresh_url(pg_url, pool=1)) as memory:
        for n in range(30):
            memory.add(f"fact number {n} about tea", user_id="u1", metadata={"kind": "even" if n % 2 == 0 else "odd"})
        for mode in ("keyword", "hybrid", "keyword", "hybrid"):  # the second of each: a prepared plan, same trips
            for flt in (None, {"kind": "even"}):
                with traced(memory.backend) as sent:
                    hits = memory.search("number 3 tea", user_id="u1", filter=flt, mode=mode, limit=5)
                assert (sent.round_trips, sent.executed) == (1, 1), sent.messages
                assert sent.statements[0].startswith("SELECT"), sent.statements
                assert hits and all(flt is None or h.record.metadata["kind"] == "even" for h in hits)
        with traced(memory.backend) as sent:
            best = memory.search("fact number 3", user_id="u1", mode="hybrid")[0]
        assert best.record.text == "fact number 3 about tea"
        assert sent.round_trips == 1


def test_capability_and_default_mode(pg_url: str) -> None:
    with memdock.open(fresh_url(pg_url)) as memory:
        assert Capability.KEYWORD_SEARCH in memory.capabilities
        assert memory.default_search_mode == "hybrid"
        memory.add("I drink green tea", user_id="u1")
        memory.add("Paris is in France", user_id="u1")
        [hit] = memory.search("tea", user_id="u1", mode="keyword")
        assert hit.record.text == "I drink green tea" and 0 < hit.score < 1
        assert memory.search("!!!", user_id="u1", mode="keyword") == []
        assert len(memory.search("!!!", user_id="u1", mode="hybrid")) == 2  # by meaning alone


# -- schema version 2: the migration of a version-1 table ------------------------------------------------


def test_a_version_1_table_is_migrated_and_its_rows_get_their_terms(pg_url: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    url = fresh_url(pg_url)
    settings = settings_of(url)
    ns = schema.Namespace(settings.table, 64, 16, 64)
    rng = random.Random(1)
    texts = [f"old memory {n} about {rng.choice(WORDS)} and {rng.choice(WORDS)}" for n in range(2500)]
    with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
        monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:1])
        monkeypatch.setattr(schema, "LATEST", 1)
        assert schema.setup(conn, ns, "hash:64") == 0  # a table as memdock 0.x left it
        monkeypatch.undo()
        conn.execute(sql.SQL(
            "INSERT INTO {} (id, text, user_id, hash, created_at, updated_at, embedding)"
            " SELECT 'id' || n, t, 'u1', md5(t), now(), now(), array_fill(0.5, ARRAY[64])::vector"
            " FROM unnest(%s::text[]) WITH ORDINALITY AS u (t, n)").format(sql.Identifier(settings.table)), [texts])
        conn.execute("UPDATE memdock_schema SET text_search = NULL WHERE namespace = %s", [settings.table])
    with memdock.open(url) as migrated:
        with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
            row = conn.execute("SELECT version, text_search FROM memdock_schema WHERE namespace = %s",
                               [settings.table]).fetchone()
            assert row == (schema.LATEST, "memdock")
            missing = conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE terms_length IS NULL").format(
                sql.Identifier(settings.table))).fetchone()
            assert missing == (0,)
            indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s",
                                                  [settings.table])}
            assert f"{settings.table}_terms" in indexes
        ref = ReferenceBackend(ReferenceBackend.Settings(), None)
        now = datetime.now(UTC)
        ref.add([MemoryRecord(id=f"id{n}", text=text, scope=Scope(user_id="u1"), hash="h", created_at=now,
                              updated_at=now, vector=[0.5] * 64) for n, text in enumerate(texts, start=1)])
        for query in ["old memory 17", "tea Straße", "東京 ラーメン", "about"]:
            want = ref.keyword_search(query, Scope(user_id="u1"), None, 10)
            assert want
            assert_same(migrated.backend.keyword_search(query, Scope(user_id="u1"), None, 10), want, 1e-9)
        added = migrated.add("a new memory about tea", user_id="u1")[0].record
        assert migrated.search("tea new", user_id="u1", mode="keyword")[0].record.id == added.id


# -- PostgreSQL's own text search configurations -----------------------------------------------------------


def test_a_postgresql_configuration_stems_its_language(pg_url: str) -> None:
    with memdock.open(fresh_url(pg_url, text_search="english")) as memory:
        memory.add("She was running in the parks", user_id="u1")
        memory.add("The runner runs daily", user_id="u1")
        memory.add("Green tea", user_id="u1")
        memory.add("running everywhere", user_id="u2")
        texts = [h.record.text for h in memory.search("runs", user_id="u1", mode="keyword")]
        assert sorted(texts) == ["She was running in the parks", "The runner runs daily"]  # stemmed, u2 apart
        assert memory.search("park", user_id="u1", mode="keyword")[0].record.text == "She was running in the parks"
        assert memory.search("the was", user_id="u1", mode="keyword") == []  # English stop words
        memory.update(memory.search("tea", user_id="u1", mode="keyword")[0].record.id, text="jogging shoes")
        assert memory.search("tea", user_id="u1", mode="keyword") == []
        assert memory.search("shoe", user_id="u1", mode="keyword")[0].record.text == "jogging shoes"
        hybrid = memory.search("runs", user_id="u1", mode="hybrid")
        assert len(hybrid) == 3 and hybrid[0].record.text in ("The runner runs daily", "She was running in the parks")


def test_the_text_search_is_the_tables_and_reindex_changes_it(pg_url: str) -> None:
    url = fresh_url(pg_url)
    with memdock.open(url) as memory:
        memory.add("The runners were running", user_id="u1")
        assert memory.search("run", user_id="u1", mode="keyword") == []  # memdock terms: no stemmer, "run" < 4
    with pytest.raises(InvalidInput) as refused:
        memdock.open(url + "&text_search=english")
    assert refused.value.field == "text_search" and "reindex" in str(refused.value)
    settings = settings_of(url)
    with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
        assert schema.reindex(conn, schema.Namespace(settings.table, 64, 16, 64, "english")) == 1
    with memdock.open(url + "&text_search=english") as memory:
        assert memory.search("run", user_id="u1", mode="keyword")[0].record.text == "The runners were running"
    with pytest.raises(InvalidInput) as unknown:
        memdock.open(fresh_url(pg_url, text_search="klingon"))
    assert unknown.value.field == "text_search" and "english" in str(unknown.value)
    with pytest.raises(InvalidInput) as malformed:
        memdock.open(fresh_url(pg_url, text_search="Eng'lish"))
    assert malformed.value.field == "text_search"


# -- PostgreSQL's tsvector limits ------------------------------------------------------------------------


def test_terms_beyond_the_tsvector_limits_still_rank_exactly(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    long_word = "x" * 3000  # longer than a tsvector lexeme may be
    monkeypatch.setattr(pg_keyword, "MAX_TSVECTOR_BYTES", 40)  # as if these texts overflowed a tsvector
    rng = random.Random(4)
    records = [make_record(t, Scope(user_id="u1"), rng) for t in
               [f"{long_word} tea", "short tea", "a text with many words that overflow the small limit tea",
                "nothing in common"]]
    with memdock.open(fresh_url(pg_url)) as pg, memdock.open("memory://?embedder=hash") as ref:
        pg.backend.add(records)
        ref.backend.add(records)
        for query in [long_word, "tea", "overflow limit", "common", f"{long_word} short"]:
            for mode in ("keyword", "hybrid"):
                if mode == "keyword":
                    got = pg.backend.keyword_search(query, Scope(user_id="u1"), None, 10)
                    want = ref.backend.keyword_search(query, Scope(user_id="u1"), None, 10)
                    assert_same(got, want, 1e-9)
                else:
                    vector = random_vector(rng)
                    got = pg.backend.hybrid_search(vector, query, Scope(user_id="u1"), None, 10)
                    want = ref.backend.hybrid_search(vector, query, Scope(user_id="u1"), None, 10)
                    assert_same(got, want, 1e-6)
        assert pg.search(long_word, user_id="u1", mode="keyword")[0].record.text.startswith("xxx")
