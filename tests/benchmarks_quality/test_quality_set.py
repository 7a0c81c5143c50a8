"""The retrieval-quality set (benchmarks/quality/) is well formed, and its harness measures what it says.

The set is data that people edit by hand: these checks keep ids unique, answers pointing at memories of
the question's own user, and the split and tags the harness and README rely on.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections import Counter
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

FOLDER = Path(__file__).resolve().parents[2] / "benchmarks" / "quality"
LANGS = {"en", "de", "es", "fr", "ja"}
TAGS = {"paraphrase", "name", "place", "date", "number", "multi", "temporal", "non-english", "cross-lingual"}


def _lines(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (FOLDER / name).read_text("utf-8").splitlines() if line.strip()]


MEMORIES = _lines("memories.jsonl")
QUESTIONS = _lines("questions.jsonl")
USERS = json.loads((FOLDER / "users.json").read_text("utf-8"))
BY_ID = {m["id"]: m for m in MEMORIES}


def _harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("quality_run", FOLDER / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["quality_run"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


# -- the set ------------------------------------------------------------------------------------------------


def test_sizes_are_those_the_readme_promises() -> None:
    assert len(USERS) >= 6
    assert 400 <= len(MEMORIES) <= 600
    assert 250 <= len(QUESTIONS) <= 350


def test_ids_are_unique() -> None:
    assert len(BY_ID) == len(MEMORIES)
    assert len({q["id"] for q in QUESTIONS}) == len(QUESTIONS)
    assert len({u["user_id"] for u in USERS}) == len(USERS)


def test_records_have_their_fields() -> None:
    users = {u["user_id"] for u in USERS}
    for m in MEMORIES:
        assert set(m) == {"id", "user_id", "session", "date", "lang", "text"}, m
        assert m["user_id"] in users and m["id"].startswith(m["user_id"] + "-"), m
        assert isinstance(m["session"], int) and m["session"] >= 1, m
        date.fromisoformat(m["date"])
        assert m["lang"] in LANGS and m["text"].strip() == m["text"] and m["text"], m
    for q in QUESTIONS:
        assert set(q) == {"id", "user_id", "question", "lang", "answers", "tags"}, q
        assert re.fullmatch(r"q\d{3}", q["id"]), q  # the harness splits by the parity of this number
        assert q["user_id"] in users and q["lang"] in LANGS and q["question"].strip(), q
        assert set(q["tags"]) <= TAGS, q


def test_every_answer_exists_and_belongs_to_the_questions_user() -> None:
    for q in QUESTIONS:
        assert q["answers"] and len(set(q["answers"])) == len(q["answers"]), q
        for answer in q["answers"]:
            assert answer in BY_ID, (q["id"], answer)
            assert BY_ID[answer]["user_id"] == q["user_id"], (q["id"], answer)


def test_texts_are_unique_within_a_user() -> None:
    """Memory.add stores a repeated text once; the harness maps stored records back to ids by order."""
    counts = Counter((m["user_id"], m["text"].casefold()) for m in MEMORIES)
    assert [key for key, n in counts.items() if n > 1] == []


def test_sessions_run_forward_in_time() -> None:
    for user in {m["user_id"] for m in MEMORIES}:
        sessions = [(m["session"], m["date"]) for m in MEMORIES if m["user_id"] == user]
        assert sessions == sorted(sessions), user
        assert len({s for s, _ in sessions}) == len({d for _, d in sessions}), user  # one date per session


def test_every_user_has_memories_and_questions() -> None:
    for user in USERS:
        assert sum(m["user_id"] == user["user_id"] for m in MEMORIES) >= 40, user
        assert sum(q["user_id"] == user["user_id"] for q in QUESTIONS) >= 30, user


def test_derived_tags_agree_with_the_data() -> None:
    for q in QUESTIONS:
        assert ("multi" in q["tags"]) == (len(q["answers"]) > 1), q
        assert ("non-english" in q["tags"]) == (q["lang"] != "en"), q
        crossing = any(BY_ID[a]["lang"] != q["lang"] for a in q["answers"])
        assert ("cross-lingual" in q["tags"]) == crossing, q


def test_at_least_a_tenth_is_not_english() -> None:
    assert sum(m["lang"] != "en" for m in MEMORIES) >= len(MEMORIES) / 10
    assert sum(q["lang"] != "en" for q in QUESTIONS) >= len(QUESTIONS) / 10
    assert {m["lang"] for m in MEMORIES} == LANGS


# -- the harness -------------------------------------------------------------------------------------------


def test_metrics() -> None:
    run = _harness()
    assert run.recall_at(["a", "b", "c"], ["c", "x"], 1) == 0.0
    assert run.recall_at(["a", "b", "c"], ["c", "x"], 3) == 0.5
    assert run.reciprocal_rank(["a", "b", "c"], ["c", "b"]) == 0.5
    assert run.reciprocal_rank(["a"], ["z"]) == 0.0


def test_split_is_by_parity_and_halves_are_even() -> None:
    run = _harness()
    _, questions = run.load_set(FOLDER)
    assert len(questions) == len(QUESTIONS)
    assert {q.half for q in questions if int(q.id[1:]) % 2} == {"A"}
    halves = Counter(q.half for q in questions)
    assert abs(halves["A"] - halves["B"]) <= 1


def test_choice_uses_half_a_only() -> None:
    run = _harness()
    table = {
        "x": {"A": {"recall@10": 0.8, "mrr": 0.5}, "B": {"recall@10": 0.99, "mrr": 0.9}},
        "y": {"A": {"recall@10": 0.8, "mrr": 0.6}, "B": {"recall@10": 0.1, "mrr": 0.1}},
        "z": {"A": {"recall@10": 0.7, "mrr": 0.9}, "B": {"recall@10": 0.9, "mrr": 0.9}},
    }
    assert run.choose(table, ["x", "y", "z"]) == "y"


def test_run_on_two_users_with_the_hash_embedder() -> None:
    """The whole pipeline on a slice of the set, through a real memory:// backend: a question that repeats
    a memory word for word finds it first in every mode."""
    run = _harness()
    memories, questions = run.load_set(FOLDER)
    memories = [m for m in memories if m["user_id"] in {"anna", "yuki"}]
    questions = [q for q in questions if q.user_id in {"anna", "yuki"}][:40]
    verbatim = run.Question("q999", "anna", BY_ID["anna-034"]["text"], "en", ("anna-034",), ())
    result = run.run_url("memory://?embedder=hash", memories, [*questions, verbatim], 50)
    assert result["embedder"] == "hash"
    assert set(result["modes"]) == {"vector", "keyword", "keyword words-only", *run.VARIANTS}
    assert result["chosen"] in run.VARIANTS
    for row in result["modes"].values():
        assert set(row) == {"all", "A", "B"}
        for half in row.values():
            assert set(half) == {"recall@1", "recall@5", "recall@10", "mrr"}
            assert all(0.0 <= v <= 1.0 for v in half.values())
            assert half["recall@1"] <= half["recall@5"] <= half["recall@10"]
    alone = run.run_url("memory://?embedder=hash", memories, [verbatim], 50)
    assert all(row["all"]["recall@1"] == 1.0 for row in alone["modes"].values())


@pytest.mark.parametrize("name", ["memories.jsonl", "questions.jsonl"])
def test_files_are_one_json_object_per_line_in_utf8(name: str) -> None:
    raw = (FOLDER / name).read_bytes()
    assert raw.endswith(b"\n") and b"\r" not in raw
    assert "\\u" not in raw.decode("utf-8")  # non-ASCII text is stored as itself, readable in a diff
