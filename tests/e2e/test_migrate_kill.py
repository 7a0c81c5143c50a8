"""A ``memdock migrate`` process killed part-way with SIGKILL resumes from its checkpoint: the re-run ends
with exact counts, no duplicates and a clean verification (real subprocesses, real pgvector and Chroma)."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

from memdock.memory import Memory
from memdock.models import Scope

RECORDS = 3000
SCOPES = (Scope(user_id="alice"), Scope(user_id="bob"), Scope(agent_id="helper"))


def migrated_so_far(checkpoint: Path) -> int:
    if not checkpoint.exists():
        return 0
    try:
        with sqlite3.connect(checkpoint, timeout=1) as db:
            return int(db.execute("SELECT count(*) FROM ids").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


def test_killed_migration_resumes_to_exact_counts(pg_url: str, tmp_path: Path) -> None:
    source_url = f"{pg_url}&table=kill_{uuid.uuid4().hex[:8]}&embedder=hash"
    destination_url = f"chroma://{tmp_path}/dst?embedder=hash"
    with Memory.open(source_url) as source:
        per_scope = RECORDS // len(SCOPES)
        for n, scope in enumerate(SCOPES):
            texts = [{"role": "user", "content": f"fact {n}-{i} {uuid.uuid4().hex}"} for i in range(per_scope)]
            for start in range(0, per_scope, 500):
                source.add(texts[start:start + 500], scope=scope, metadata={"n": n})
        source_ids = {r.id for p in source.pages() for r in p.items}
    assert len(source_ids) == RECORDS

    exe = shutil.which("memdock", path=str(Path(sys.executable).parent)) or "memdock"
    checkpoint = tmp_path / "state.sqlite"
    command = [exe, "migrate", source_url, destination_url, "--batch", "50", "--checkpoint", str(checkpoint)]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while migrated_so_far(checkpoint) < RECORDS // 3:
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the migration made no progress"
            time.sleep(0.05)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        for stream in (first.stdout, first.stderr):
            assert stream is not None
            stream.close()
    assert first.returncode == -signal.SIGKILL
    done_before = migrated_so_far(checkpoint)
    assert RECORDS // 3 <= done_before < RECORDS

    second = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "(resumed)" in second.stdout
    assert f"verify (every record): {len(SCOPES)} scopes, {RECORDS} records checked: OK" in second.stdout

    with Memory.open(destination_url) as destination:
        stored = [r for p in destination.pages() for r in p.items]
        assert len(stored) == RECORDS  # no duplicates, nothing missing
        assert {r.id for r in stored} == source_ids
        assert len({(r.scope, r.text) for r in stored}) == RECORDS
        for scope in SCOPES:
            assert destination.count(scope=scope) == RECORDS // len(SCOPES)
