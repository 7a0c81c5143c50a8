"""End to end: Dify's ``POST /retrieval`` against memdock's server, the app ``memdock serve`` runs
(`create_app` with the configuration its flags build: open on 127.0.0.1, knowledge ids mapped to
``user_id``), served by uvicorn on a 127.0.0.1 socket in a thread of the benchmark process, over a store
the benchmark has loaded, with the default embedder (MiniLM) embedding each query in the request.

The load comes from a separate process (this file run as a script), so the clients do not share the
server's interpreter. It runs phases in turn; in each, ``C`` threads, one keep-alive HTTP connection each,
send ``R`` requests in all, each with a query text no earlier request used (a query-embedding cache never
hits). It prints one JSON line: per phase, each request's latency in ms and the wall time. Every request
must answer 200, or the run fails.

    python benchmarks/bench_http.py BASE_URL PHASES_JSON_FILE    # [[clients, [{knowledge_id, query}]], ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from memdock.memory import Memory

HERE = Path(__file__).resolve()


@contextmanager
def serving(memory: Memory) -> Iterator[str]:
    """``memdock serve``'s app over `memory` (left open) on a free 127.0.0.1 port; yields the base URL and
    stops the server (and joins its thread) afterwards."""
    from memdock.dify_adapter.server.app import create_app
    from memdock.dify_adapter.server.in_thread import serving_in_thread
    from memdock.dify_adapter.server.options import add_arguments
    from memdock.dify_adapter.server.serve import build_config

    parser = argparse.ArgumentParser(prog="memdock serve")
    add_arguments(parser)
    app = create_app(memory, build_config(parser.parse_args(["--host", "127.0.0.1"])))
    with serving_in_thread(app, name="bench-serve") as base:
        yield base


def run_clients(base_url: str, phases: list[tuple[int, list[dict[str, Any]]]], folder: Path) -> list[dict[str, Any]]:
    """Run each phase, ``(clients, requests)`` with requests ``{knowledge_id, query}``, in turn from one child
    process; returns per phase ``{"latencies_ms": [...], "wall_s": float}``. `RuntimeError` when it fails."""
    queries = folder / f"queries-{time.monotonic_ns()}.json"
    queries.write_text(json.dumps([[clients, requests] for clients, requests in phases]))
    done = subprocess.run([sys.executable, str(HERE), base_url, str(queries)],
                          capture_output=True, text=True, timeout=900, check=False)
    queries.unlink()
    if done.returncode != 0:
        raise RuntimeError(f"load client failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    result: list[dict[str, Any]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _phase(base_url: str, clients: int, requests: list[dict[str, Any]]) -> dict[str, Any]:
    """`clients` threads, one keep-alive connection each, share `requests`; every answer must be a 200
    with at least one record (each knowledge id holds records), else `RuntimeError`."""
    import httpx

    latencies: list[float] = [0.0] * len(requests)
    failures: list[str] = []
    next_index = iter(range(len(requests)))
    lock = threading.Lock()
    start_gate = threading.Barrier(clients + 1)

    def worker() -> None:
        with httpx.Client(base_url=base_url, timeout=60) as client:
            client.get("/healthz")  # open the connection before the clock starts
            start_gate.wait()
            while True:
                with lock:
                    n = next(next_index, None)
                if n is None:
                    return
                body = {"knowledge_id": requests[n]["knowledge_id"], "query": requests[n]["query"],
                        "retrieval_setting": {"top_k": 10, "score_threshold": 0.0}}
                started = time.perf_counter()
                answer = client.post("/retrieval", json=body)
                latencies[n] = (time.perf_counter() - started) * 1000
                if answer.status_code != 200 or not answer.json().get("records"):  # an empty answer is no figure
                    failures.append(f"{answer.status_code} {answer.text[:200]}")

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    start_gate.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} of {len(requests)} requests failed, first: {failures[0]}")
    return {"latencies_ms": [round(x, 3) for x in latencies], "wall_s": round(wall, 4)}


def _client_main(argv: list[str]) -> int:
    base_url, path = argv[0], Path(argv[1])
    phases: list[list[Any]] = json.loads(path.read_text())
    print(json.dumps([_phase(base_url, int(clients), requests) for clients, requests in phases]))
    return 0


if __name__ == "__main__":
    sys.exit(_client_main(sys.argv[1:]))
