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
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

FOLDER = Path(__file__).resolve().parents[2] / "benchmarks" / "quality"
LONG = FOLDER / "long"  # the long-conversation part (`run.py --set long`)
LANGS = {"en", "de", "es", "fr", "ja"}
LONG_LANGS = {"en", "pt", "it"}
TAGS = {"paraphrase", "name", "place", "date", "number", "multi", "temporal", "non-english", "cross-lingual"}


def _lines(name: str, folder: Path = FOLDER) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / name).read_text("utf-8").splitlines() if line.strip()]


MEMORIES = _lines("memories.jsonl")
QUESTIONS = _lines("questions.jsonl")
USERS = json.loads((FOLDER / "users.json").read_text("utf-8"))
BY_ID = {m["id"]: m for m in MEMORIES}


@dataclass(frozen=True)
class Part:
    """One part of the set as stored: its folder, records and the languages it may use."""

    name: str
    folder: Path
    langs: frozenset[str]
    memories: list[dict[str, Any]]
    questions: list[dict[str, Any]]
    users: list[dict[str, Any]]

    @property
    def by_id(self) -> dict[str, dict[str, Any]]:
        return {m["id"]: m for m in self.memories}


CORE_PART = Part("core", FOLDER, frozenset(LANGS), MEMORIES, QUESTIONS, USERS)
LONG_PART = Part("long", LONG, frozenset(LONG_LANGS), _lines("memories.jsonl", LONG), _lines("questions.jsonl", LONG),
                 json.loads((LONG / "users.json").read_text("utf-8")))
PARTS = pytest.mark.parametrize("part", [CORE_PART, LONG_PART], ids=lambda p: p.name)


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


@PARTS
def test_ids_are_unique(part: Part) -> None:
    assert len(part.by_id) == len(part.memories)
    assert len({q["id"] for q in part.questions}) == len(part.questions)
    assert len({u["user_id"] for u in part.users}) == len(part.users)


@PARTS
def test_records_have_their_fields(part: Part) -> None:
    users = {u["user_id"] for u in part.users}
    for u in part.users:
        assert set(u) == {"user_id", "name", "about"} and all(u.values()), u
    for m in part.memories:
        assert set(m) == {"id", "user_id", "session", "date", "lang", "text"}, m
        assert m["user_id"] in users and re.fullmatch(re.escape(m["user_id"]) + r"-\d{3}", m["id"]), m
        assert isinstance(m["session"], int) and m["session"] >= 1, m
        date.fromisoformat(m["date"])
        assert m["lang"] in part.langs and m["text"].strip() == m["text"] and m["text"], m
    for q in part.questions:
        assert set(q) == {"id", "user_id", "question", "lang", "answers", "tags"}, q
        assert re.fullmatch(r"q\d{3}", q["id"]), q  # the harness splits by the parity of this number
        assert q["user_id"] in users and q["lang"] in part.langs and q["question"].strip(), q
        assert set(q["tags"]) <= TAGS and q["tags"] == sorted(set(q["tags"])), q


@PARTS
def test_every_answer_exists_and_belongs_to_the_questions_user(part: Part) -> None:
    by_id = part.by_id
    for q in part.questions:
        assert q["answers"] and len(set(q["answers"])) == len(q["answers"]) <= 5, q
        for answer in q["answers"]:
            assert answer in by_id, (q["id"], answer)
            assert by_id[answer]["user_id"] == q["user_id"], (q["id"], answer)


@PARTS
def test_texts_are_unique_within_a_user(part: Part) -> None:
    """Memory.add stores a repeated text once; the harness maps stored records back to ids by order."""
    counts = Counter((m["user_id"], m["text"].casefold()) for m in part.memories)
    assert [key for key, n in counts.items() if n > 1] == []
    asked = Counter((q["user_id"], q["question"].casefold()) for q in part.questions)
    assert [key for key, n in asked.items() if n > 1] == []


@PARTS
def test_sessions_run_forward_in_time(part: Part) -> None:
    for user in {m["user_id"] for m in part.memories}:
        sessions = [(m["session"], m["date"]) for m in part.memories if m["user_id"] == user]
        assert sessions == sorted(sessions), user
        assert len({s for s, _ in sessions}) == len({d for _, d in sessions}), user  # one date per session
        assert sorted({s for s, _ in sessions}) == list(range(1, len({s for s, _ in sessions}) + 1)), user


@PARTS
def test_every_user_has_memories_and_questions(part: Part) -> None:
    for user in part.users:
        assert sum(m["user_id"] == user["user_id"] for m in part.memories) >= 40, user
        assert sum(q["user_id"] == user["user_id"] for q in part.questions) >= 30, user


@PARTS
def test_derived_tags_agree_with_the_data(part: Part) -> None:
    by_id = part.by_id
    for q in part.questions:
        assert ("multi" in q["tags"]) == (len(q["answers"]) > 1), q
        assert ("non-english" in q["tags"]) == (q["lang"] != "en"), q
        crossing = any(by_id[a]["lang"] != q["lang"] for a in q["answers"])
        assert ("cross-lingual" in q["tags"]) == crossing, q


@PARTS
def test_at_least_a_tenth_is_not_english(part: Part) -> None:
    assert sum(m["lang"] != "en" for m in part.memories) >= len(part.memories) / 10
    assert sum(q["lang"] != "en" for q in part.questions) >= len(part.questions) / 10
    assert {m["lang"] for m in part.memories} == part.langs


# -- the long part -----------------------------------------------------------------------------------------


def test_long_part_sizes_are_those_the_readme_promises() -> None:
    """3 new people with long conversations: 20+ sessions over a year, 250-350 memories and 60-80 questions
    each, 200+ questions in all."""
    assert len(LONG_PART.users) == 3
    assert len(LONG_PART.questions) >= 200
    for user in (u["user_id"] for u in LONG_PART.users):
        mine = [m for m in LONG_PART.memories if m["user_id"] == user]
        assert 250 <= len(mine) <= 350, user
        assert len({m["session"] for m in mine}) >= 20, user
        first, last = date.fromisoformat(mine[0]["date"]), date.fromisoformat(mine[-1]["date"])
        assert (last - first).days >= 300, user
        assert 60 <= sum(q["user_id"] == user for q in LONG_PART.questions) <= 80, user


def test_long_part_has_new_people() -> None:
    """No user id of the core part is reused, so the two parts never share a scope."""
    assert {u["user_id"] for u in LONG_PART.users}.isdisjoint({u["user_id"] for u in USERS})
    assert {m["user_id"] for m in LONG_PART.memories} == {u["user_id"] for u in LONG_PART.users}


def test_long_part_exercises_every_kind_of_question() -> None:
    tags = Counter(t for q in LONG_PART.questions for t in q["tags"])
    assert set(tags) == TAGS
    assert min(tags.values()) >= 15, tags


def test_long_part_loads_in_the_harness_with_even_halves() -> None:
    run = _harness()
    assert run.SETS["long"] == LONG and run.SETS["core"] == FOLDER
    memories, questions = run.load_set(LONG)
    assert [m["id"] for m in memories] == [m["id"] for m in LONG_PART.memories]
    halves = Counter(q.half for q in questions)
    assert len(questions) == len(LONG_PART.questions) and abs(halves["A"] - halves["B"]) <= 1


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
    own = {"vector", "keyword", "keyword words-only", *run.VARIANTS}
    backend = {"backend keyword", "backend hybrid"}  # present where the backend declares KEYWORD_SEARCH
    assert set(result["modes"]) in (own, own | backend)
    assert result["chosen"] in run.VARIANTS
    for row in result["modes"].values():
        assert set(row) == {"all", "A", "B"}
        for half in row.values():
            assert set(half) == {"recall@1", "recall@5", "recall@10", "mrr"}
            assert all(0.0 <= v <= 1.0 for v in half.values())
            assert half["recall@1"] <= half["recall@5"] <= half["recall@10"]
    alone = run.run_url("memory://?embedder=hash", memories, [verbatim], 50)
    assert all(row["all"]["recall@1"] == 1.0 for row in alone["modes"].values())


@pytest.mark.parametrize("folder", [FOLDER, LONG], ids=["core", "long"])
@pytest.mark.parametrize("name", ["memories.jsonl", "questions.jsonl"])
def test_files_are_one_json_object_per_line_in_utf8(folder: Path, name: str) -> None:
    raw = (folder / name).read_bytes()
    assert raw.endswith(b"\n") and b"\r" not in raw
    assert "\\u" not in raw.decode("utf-8")  # non-ASCII text is stored as itself, readable in a diff
