"""Retrieval quality on the project's set (not a test): recall@1/5/10 and MRR of vector, keyword and fused
rankings, per backend URL.

    python benchmarks/quality/run.py [--url memory://] [--url chroma:///tmp/q] [--name NAME] [--limit 50]

For each URL the set's memories are stored through `memdock.Memory` (one scope per person, under a fresh
run prefix so an existing store is not disturbed; removed again at the end). For each question:

* ``vector``: `Memory.search(mode="vector")` in the person's scope, top ``--limit`` (the backend's own cosine
  ranking);
* ``backend keyword``, ``backend hybrid``: `Memory.search` in those modes, where the backend declares
  `KEYWORD_SEARCH` (its own keyword index and fusion, to compare with the reference's);
* ``keyword``: `memdock.keyword.BM25Index` over the person's memories (statistics of that scope only);
  ``keyword words-only``: the same without the prefix terms (``prefix=None``), for comparison;
* fused variants of those two lists (`memdock.fusion`): RRF with k in {10, 30, 60}, and weighted score
  fusion with vector weight w in {0.3 .. 0.9} under three normalisations (see `VARIANTS`).

Questions are split by the parity of their number. The default fusion is chosen on the odd half (A) and
reported on both, so the choice can be checked on questions it was not chosen on: the variant with the best
recall@10 (then MRR) on A among those whose score has an absolute meaning (`ABSOLUTE`: cosine and
bound-normalised BM25, so a threshold means the same for every query). The best of all variants on A is
reported beside it. Results go to ``benchmarks/results/quality-NAME.json`` and are printed as tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from memdock import Capability, Memory
from memdock.fusion import Fused, min_max, reciprocal_rank_fusion, weighted_score_fusion
from memdock.keyword import BM25Index

HERE = Path(__file__).parent
RESULTS = HERE.parent / "results"
KS = (1, 5, 10)
RRF_KS = (10, 30, 60)
WEIGHTS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
SETS = {"core": HERE, "long": HERE / "long"}  # --set NAME -> the folder load_set reads

Scored = dict[str, float]  # memory id -> score, for one question


@dataclass(frozen=True)
class Question:
    id: str
    user_id: str
    question: str
    lang: str
    answers: tuple[str, ...]
    tags: tuple[str, ...]

    @property
    def half(self) -> str:
        """``"A"`` for odd question numbers (where the default is chosen), ``"B"`` for even ones."""
        return "A" if int(self.id.lstrip("q")) % 2 else "B"


def load_set(folder: Path = HERE) -> tuple[list[dict[str, Any]], list[Question]]:
    """The memories (dicts as stored) and questions of the set in `folder`."""
    memories = [json.loads(line) for line in (folder / "memories.jsonl").read_text("utf-8").splitlines() if line]
    questions = [
        Question(q["id"], q["user_id"], q["question"], q["lang"], tuple(q["answers"]), tuple(q["tags"]))
        for q in (json.loads(line) for line in (folder / "questions.jsonl").read_text("utf-8").splitlines() if line)
    ]
    return memories, questions


# -- rankings -------------------------------------------------------------------------------------------


def ranked(scores: Mapping[str, float], limit: int) -> list[str]:
    """Ids best first (ties by id), at most `limit`."""
    return sorted(scores, key=lambda i: (-scores[i], i))[:limit]


def _ids(fused: Sequence[Fused]) -> list[str]:
    return [hit.id for hit in fused]


def _rrf(k: int) -> Callable[[Scored, Scored, int], list[str]]:
    def fuse(vector: Scored, keyword: Scored, limit: int) -> list[str]:
        return _ids(reciprocal_rank_fusion([ranked(vector, limit), ranked(keyword, limit)], k=k, limit=limit))

    return fuse


def _weighted(weight: float, vector_norm: str, keyword_norm: str) -> Callable[[Scored, Scored, int], list[str]]:
    """Weighted fusion; `vector_norm` is ``raw`` (the cosine score) or ``minmax``; `keyword_norm` ``max``
    (divided by the query's best), ``minmax``; ``bound`` scores arrive already bounded (see `run_url`)."""

    def fuse(vector: Scored, keyword: Scored, limit: int) -> list[str]:
        v = min_max(vector) if vector_norm == "minmax" else vector
        best = max(keyword.values(), default=0.0)
        if keyword_norm == "max":
            kw = {i: s / best for i, s in keyword.items()} if best > 0 else {}
        elif keyword_norm == "minmax":
            kw = min_max(keyword)
        else:
            kw = keyword
        return _ids(weighted_score_fusion([v, kw], [weight, 1.0 - weight], limit=limit))

    return fuse


def variants() -> dict[str, tuple[str, Callable[[Scored, Scored, int], list[str]]]]:
    """Fused variants by name: (which keyword scores they take, raw or bound-normalised; the fusion)."""
    table: dict[str, tuple[str, Callable[[Scored, Scored, int], list[str]]]] = {}
    for k in RRF_KS:
        table[f"rrf k={k}"] = ("raw", _rrf(k))
    for w in WEIGHTS:
        table[f"wsum w={w} cos+max"] = ("raw", _weighted(w, "raw", "max"))
        table[f"wsum w={w} minmax"] = ("raw", _weighted(w, "minmax", "minmax"))
        table[f"wsum w={w} cos+bound"] = ("bound", _weighted(w, "raw", "bound"))
    return table


VARIANTS = variants()
ABSOLUTE = [name for name in VARIANTS if name.endswith("cos+bound")]  # no per-query rescaling of either list


# -- metrics --------------------------------------------------------------------------------------------


def recall_at(ranking: Sequence[str], answers: Iterable[str], k: int) -> float:
    """Share of the answers found among the first `k` of `ranking`."""
    wanted = set(answers)
    return len(wanted.intersection(ranking[:k])) / len(wanted)


def reciprocal_rank(ranking: Sequence[str], answers: Iterable[str]) -> float:
    """1 / (1-based rank of the first answer in `ranking`), 0 when none is there."""
    wanted = set(answers)
    return next((1.0 / rank for rank, doc in enumerate(ranking, start=1) if doc in wanted), 0.0)


def summarise(rankings: Mapping[str, Sequence[str]], questions: Sequence[Question]) -> dict[str, float]:
    """recall@1/5/10 and MRR of one mode over `questions` (rankings by question id)."""
    count = len(questions) or 1
    row = {f"recall@{k}": sum(recall_at(rankings[q.id], q.answers, k) for q in questions) / count for k in KS}
    row["mrr"] = sum(reciprocal_rank(rankings[q.id], q.answers) for q in questions) / count
    return {name: round(value, 4) for name, value in row.items()}


def choose(table: Mapping[str, Mapping[str, Mapping[str, float]]], candidates: Iterable[str]) -> str:
    """The candidate with the best recall@10 on half A, then MRR on half A, then name."""
    return min(candidates, key=lambda m: (-table[m]["A"]["recall@10"], -table[m]["A"]["mrr"], m))


# -- one backend ----------------------------------------------------------------------------------------


def run_url(url: str, memories: Sequence[dict[str, Any]], questions: Sequence[Question], limit: int) -> dict[str, Any]:
    """Store the set in `url`, rank every question in every mode, and summarise."""
    prefix = f"quality-{uuid.uuid4().hex[:8]}-"
    index, words_only = BM25Index(), BM25Index(prefix=None)
    index.add_many((m["id"], m["text"]) for m in memories)
    words_only.add_many((m["id"], m["text"]) for m in memories)
    ids_of: dict[str, list[str]] = {}
    for m in memories:
        ids_of.setdefault(m["user_id"], []).append(m["id"])
    memory = Memory.open(url)
    started = time.perf_counter()
    try:
        bench_id: dict[str, str] = {}  # stored record id -> memory id of the set
        for user, ids in ids_of.items():
            texts = {m["id"]: m["text"] for m in memories if m["user_id"] == user}
            results = memory.add([{"role": "user", "content": texts[i]} for i in ids], user_id=prefix + user)
            bench_id.update({r.record.id: i for r, i in zip(results, ids, strict=True)})
        stored_seconds = time.perf_counter() - started
        vector: dict[str, Scored] = {}
        started = time.perf_counter()
        for q in questions:
            hits = memory.search(q.question, user_id=prefix + q.user_id, limit=limit, mode="vector")
            vector[q.id] = {bench_id[h.record.id]: h.score for h in hits}
        vector_seconds = time.perf_counter() - started
        backend_modes: dict[str, dict[str, list[str]]] = {}  # the backend's own keyword and hybrid rankings
        if Capability.KEYWORD_SEARCH in memory.capabilities:
            for mode in ("keyword", "hybrid"):
                backend_modes[f"backend {mode}"] = {
                    q.id: [bench_id[h.record.id] for h in memory.search(
                        q.question, user_id=prefix + q.user_id, limit=limit, mode=mode)]  # type: ignore[arg-type]
                    for q in questions}
        for user in ids_of:
            memory.delete_all(user_id=prefix + user)
    finally:
        memory.close()
    keyword = {q.id: dict(index.rank(q.question, ids_of[q.user_id], limit)) for q in questions}
    bounded = {q.id: index.normalised_scores(q.question, ids_of[q.user_id], method="bound") for q in questions}
    rankings: dict[str, dict[str, list[str]]] = {
        "vector": {q.id: ranked(vector[q.id], limit) for q in questions},
        "keyword": {q.id: ranked(keyword[q.id], limit) for q in questions},
        "keyword words-only": {q.id: [i for i, _ in words_only.rank(q.question, ids_of[q.user_id], limit)]
                               for q in questions},
        **backend_modes,
    }
    for name, (scores, fuse) in VARIANTS.items():
        kw = bounded if scores == "bound" else keyword
        rankings[name] = {
            q.id: fuse(vector[q.id], {i: kw[q.id][i] for i in keyword[q.id] if i in kw[q.id]}, limit)
            for q in questions
        }
    halves = {"A": [q for q in questions if q.half == "A"], "B": [q for q in questions if q.half == "B"]}
    table = {
        mode: {"all": summarise(r, questions), **{h: summarise(r, qs) for h, qs in halves.items()}}
        for mode, r in rankings.items()
    }
    chosen = choose(table, ABSOLUTE)
    best_any = choose(table, VARIANTS)
    tags = sorted({t for q in questions for t in q.tags})
    by_tag = {
        mode: {t: summarise(rankings[mode], [q for q in questions if t in q.tags])["recall@10"] for t in tags}
        for mode in dict.fromkeys(("vector", "keyword", chosen, best_any))
    }
    return {
        "url": url, "embedder": memory.embedder.name if memory.embedder else None, "backend": memory.name,
        "store_seconds": round(stored_seconds, 2), "vector_search_seconds": round(vector_seconds, 2),
        "questions": {"all": len(questions), "A": len(halves["A"]), "B": len(halves["B"])},
        "modes": table, "chosen": chosen, "best_on_A_of_all_variants": best_any, "recall@10_by_tag": by_tag,
    }


def print_report(result: Mapping[str, Any]) -> None:
    table = result["modes"]
    print(f"\n{result['backend']}  embedder={result['embedder']}  questions={result['questions']}")
    head = f"{'mode':<26}" + "".join(f"{h + ' ' + m:>11}" for h in ("A", "B") for m in ("R@1", "R@5", "R@10", "MRR"))
    print(head)
    for mode, row in table.items():
        cells = [row[h][m] for h in ("A", "B") for m in ("recall@1", "recall@5", "recall@10", "mrr")]
        mark = "  <- default (chosen on A)" if mode == result["chosen"] else ""
        mark += "  <- best on A of all" if mode == result["best_on_A_of_all_variants"] else ""
        print(f"{mode:<26}" + "".join(f"{c:>11.3f}" for c in cells) + mark)
    print("\nrecall@10 by tag (all questions):")
    by_tag = result["recall@10_by_tag"]
    tags = list(next(iter(by_tag.values())))
    print(f"{'mode':<26}" + "".join(f"{t[:12]:>13}" for t in tags))
    for mode, row in by_tag.items():
        print(f"{mode:<26}" + "".join(f"{row[t]:>13.3f}" for t in tags))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", action="append", help="backend URL (repeatable; default memory://)")
    parser.add_argument("--limit", type=int, default=50, help="candidates per ranking (default 50)")
    parser.add_argument("--name", default=datetime.now(UTC).strftime("%Y-%m-%d"))
    parser.add_argument("--set", choices=sorted(SETS), default="core",
                        help="which part of the set: core (benchmarks/quality/) or long (benchmarks/quality/long/)")
    args = parser.parse_args(argv)
    memories, questions = load_set(SETS[args.set])
    results = [run_url(url, memories, questions, args.limit) for url in (args.url or ["memory://"])]
    report = {
        "command": " ".join(["python", "benchmarks/quality/run.py", *(sys.argv[1:] if argv is None else argv)]),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "set": {"name": args.set, "memories": len(memories), "questions": len(questions)},
        "split": "A = odd question numbers (the default is chosen there), B = even",
        "results": results,
    }
    for result in results:
        print_report(result)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / (f"quality-{args.name}.json" if args.set == "core" else f"quality-{args.name}-{args.set}.json")
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
