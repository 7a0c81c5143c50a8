"""A migration from a MiniLM collection (embedded Chroma, the default embedder, the real int8 ONNX model
shipped in a package) into stores with another embedder re-embeds every record: the destination's vectors
are its own embedder's, and a search on the destination finds each record by its own text first."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from memdock.embedders.hashing import HashEmbedder
from memdock.memory import Memory
from memdock.migration import migrate
from memdock.models import Scope

TEXTS = [
    "I am allergic to peanuts", "My daughter plays the violin", "We moved to Lisbon last spring",
    "The car needs new brakes", "Prefers tea over coffee in the morning", "Runs a marathon every October",
    "Is learning Japanese with an app", "Keeps bees on the roof", "Works night shifts at the hospital",
    "Hates cilantro", "Owns a grey cat called Pixel", "Plans a trip to Patagonia",
    "Reads science fiction before bed", "Was born in Nairobi", "Sings in a choir on Thursdays",
]
SCOPE = Scope(user_id="reembed")


@pytest.mark.parametrize("destination_kind", ["memory", "pgvector"])
def test_minilm_to_hash_re_embeds_and_search_finds_each_record_first(
    destination_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    source = Memory.open(f"chroma://{tmp_path}/minilm")  # the default embedder: minilm
    assert source.embedder is not None and source.embedder.identity.startswith("minilm:")
    source.add([{"role": "user", "content": text} for text in TEXTS], scope=SCOPE)
    if destination_kind == "memory":
        destination_url = f"memory://reembed-{uuid.uuid4().hex[:8]}?embedder=hash"
    else:
        destination_url = f"{request.getfixturevalue('pg_url')}&table=reembed_{uuid.uuid4().hex[:8]}&embedder=hash"
    with source, Memory.open(destination_url) as destination:
        summary = migrate(source, destination, scope=SCOPE, checkpoint=tmp_path / "c.sqlite")
        assert summary.ok and summary.added == len(TEXTS) and not summary.vectors_reused
        hash_embedder = HashEmbedder()
        for record in source.export(user_id="reembed"):
            stored = destination.backend.get(record.id)
            assert stored is not None and stored.text == record.text
            if stored.vector is not None:  # the reference store returns vectors: they are hash vectors now
                assert stored.vector == pytest.approx(hash_embedder.embed([record.text])[0])
            hits = destination.search(record.text, scope=SCOPE, limit=3, mode="vector")  # the new vectors'
            assert hits[0].record.id == record.id
            assert hits[0].score == pytest.approx(1.0, abs=1e-6)
