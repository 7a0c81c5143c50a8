"""Bounded memory: the peak resident memory of a real ``memdock migrate`` process (from pgvector into pgvector
and into embedded Chroma, the hash embedder, history carried) stays under 300 MB. CI runs `DEFAULT_RECORDS`;
the 100,000-record figures in docs/portability.md were measured with ``MEMDOCK_MIGRATE_SCALE=100000``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from memdock.memory import Memory
from memdock.models import MemoryRecord, Scope, utcnow
from memdock.validation import text_hash

DEFAULT_RECORDS = 20_000
LIMIT_MB = 300
MEASURE = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)
sys.stdout.write(done.stdout)
sys.stderr.write(done.stderr)
"""
"""Runs the command as its only child and prints its exit status and peak RSS in MB (Linux: ru_maxrss is KiB)."""


@pytest.mark.slow
@pytest.mark.parametrize("destination", ["pgvector", "chroma"])
def test_peak_memory_of_a_big_migration_is_bounded(pg_url: str, tmp_path: Path, destination: str) -> None:
    count = int(os.environ.get("MEMDOCK_MIGRATE_SCALE", DEFAULT_RECORDS))
    tag = uuid.uuid4().hex[:8]
    source_url = f"{pg_url}&table=scale_src_{tag}&embedder=hash"
    destination_url = (f"{pg_url}&table=scale_dst_{tag}&embedder=hash" if destination == "pgvector"
                       else f"chroma://{tmp_path / 'chroma'}?embedder=hash")
    with Memory.open(source_url) as source:
        for start in range(0, count, 1000):
            now = utcnow()
            texts = [f"record {i}: {uuid.uuid4().hex}" for i in range(start, min(count, start + 1000))]
            source.import_([MemoryRecord(id=str(uuid.uuid4()), text=t, scope=Scope(user_id=f"u{n % 50}"),
                                         metadata={"n": n, "note": "x" * 40}, hash=text_hash(t), created_at=now,
                                         updated_at=now) for n, t in enumerate(texts, start=start)])
    exe = shutil.which("memdock", path=str(Path(sys.executable).parent)) or "memdock"
    command = [exe, "migrate", source_url, destination_url, "--batch", "1000", "--verify", "sample",
               "--checkpoint", str(tmp_path / "state.sqlite")]
    done = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True, text=True, timeout=3000)
    status, peak_mb = map(int, done.stdout.splitlines()[0].split())
    assert status == 0, done.stdout + done.stderr
    assert f"migrate: read {count}, added {count}" in done.stdout
    assert "verify (a sample): 50 scopes" in done.stdout and ": OK" in done.stdout
    print(json.dumps({"destination": destination, "records": count, "peak_rss_mb": peak_mb}))
    assert peak_mb < LIMIT_MB
    with Memory.open(destination_url) as destination:
        assert destination.backend.count_every() == count
