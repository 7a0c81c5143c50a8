"""Dedup across processes: two real processes add the same texts to one collection at the same time, and
each text ends up stored exactly once -- on embedded Chroma because the ``flock`` on the collection's lock
file holds the duplicate re-check and the insert together, on a Chroma server because the later copy of a
text is withdrawn by its writer after the write."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

import memdock

TEXTS = 150

WRITER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    import memdock

    url, go, out, texts = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
    with memdock.open(url) as memory:
        memory.count(user_id="warm-up")
        out.with_suffix(".ready").write_text("ready")
        while not go.exists():
            time.sleep(0.005)
        ids = {}
        for n in range(texts):
            result = memory.add(f"shared fact {n}", user_id="u1")[0]
            ids[result.record.text] = result.record.id
    out.write_text(json.dumps(ids))
""")


@pytest.mark.parametrize("kind", ["embedded", "server"])
def test_two_processes_adding_the_same_texts_store_each_once(
    tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    collection = f"shared_{uuid.uuid4().hex[:8]}"
    if kind == "embedded":
        url = f"chroma://{tmp_path / 'chroma'}?collection={collection}&embedder=hash"
    else:
        url = f"{request.getfixturevalue('chroma_http_url')}?collection={collection}&embedder=hash"
    with memdock.open(url) as memory:  # create the collection before the writers race
        memory.add("already here", user_id="u1")
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    go = tmp_path / "go"
    outputs = [tmp_path / f"writer{n}.json" for n in range(2)]
    writers = [subprocess.Popen([sys.executable, str(script), url, str(go), str(out), str(TEXTS)]) for out in outputs]
    try:
        deadline = time.monotonic() + 120
        while not all(out.with_suffix(".ready").exists() for out in outputs):
            assert all(w.poll() is None for w in writers), "a writer died before it was ready"
            assert time.monotonic() < deadline, "the writers did not get ready"
            time.sleep(0.05)
        go.write_text("go")
        assert [w.wait(timeout=300) for w in writers] == [0, 0]
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
                writer.wait()
    reported = [json.loads(out.read_text()) for out in outputs]
    with memdock.open(url) as memory:
        stored = memory.list(user_id="u1", limit=1000).items
        texts = [r.text for r in stored]
        assert len(texts) == len(set(texts)) == TEXTS + 1
        by_text = {r.text: r.id for r in stored}
        for n in range(TEXTS):  # both writers report the one stored record of each text
            text = f"shared fact {n}"
            assert reported[0][text] == reported[1][text] == by_text[text]
        histories = memory.histories(list(by_text.values()))
        assert all([e.event.value for e in events] == ["ADD"] for events in histories.values())


def test_the_lock_file_is_made_by_the_first_write_not_by_opening(tmp_path: Path) -> None:
    url = f"chroma://{tmp_path / 'chroma'}?collection=reads&embedder=hash"
    lock_file = tmp_path / "chroma" / "memdock-reads.lock"
    with memdock.open(url) as memory:
        assert memory.count(user_id="u1") == 0 and memory.search("x", user_id="u1") == []
        assert not lock_file.exists()
        memory.add("first write", user_id="u1")
        assert lock_file.exists()
        generation = int.from_bytes(lock_file.read_bytes()[:8], "big")
        memory.add("second write", user_id="u1")
        assert int.from_bytes(lock_file.read_bytes()[:8], "big") == generation + 1
