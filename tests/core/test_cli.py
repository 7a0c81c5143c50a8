"""The README round trip: `memdock add` in one process, `memdock search` in another, on the embedded
default (real Chroma under MEMDOCK_HOME, real MiniLM embedder), with networking unused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def memdock_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed console script with its data under `home`, no MEMDOCK_URL."""
    env = {k: v for k, v in os.environ.items() if k != "MEMDOCK_URL"}
    env.update(MEMDOCK_HOME=str(home), HF_HUB_OFFLINE="1")
    exe = shutil.which("memdock", path=str(Path(sys.executable).parent)) or "memdock"
    return subprocess.run([exe, *args], env=env, capture_output=True, text=True, timeout=120, check=False)


def test_round_trip_on_embedded_default_across_processes(tmp_path: Path) -> None:
    added = memdock_cli(tmp_path, "add", "I like green tea", "--user-id", "u1")
    assert added.returncode == 0, added.stderr
    memdock_cli(tmp_path, "add", "My car is a red hatchback", "--user-id", "u1")
    memdock_cli(tmp_path, "add", "I play chess on Sundays", "--user-id", "u1")

    found = memdock_cli(tmp_path, "search", "what drink?", "--user-id", "u1", "--json")
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert hits[0]["text"] == "I like green tea"
    assert hits[0]["scope"]["user_id"] == "u1"
    assert 0.0 <= hits[-1]["score"] <= hits[0]["score"] <= 1.0

    other = memdock_cli(tmp_path, "search", "what drink?", "--user-id", "u2", "--json")
    assert other.returncode == 0, other.stderr
    assert json.loads(other.stdout) == []
    assert any(p.name.startswith("chroma") or p.suffix == ".sqlite3" for p in tmp_path.iterdir())


def test_history_and_delete_through_the_cli(tmp_path: Path) -> None:
    added = json.loads(memdock_cli(tmp_path, "add", "likes jasmine tea", "--user-id", "u1", "--json").stdout)
    memory_id = added[0]["id"]
    assert memdock_cli(tmp_path, "update", memory_id, "--text", "likes oolong tea").returncode == 0
    assert memdock_cli(tmp_path, "delete", memory_id).returncode == 0
    events = json.loads(memdock_cli(tmp_path, "history", memory_id, "--json").stdout)
    assert [e["event"] for e in events] == ["ADD", "UPDATE", "DELETE"]
    assert events[1]["old_text"] == "likes jasmine tea" and events[1]["new_text"] == "likes oolong tea"
    missing = memdock_cli(tmp_path, "get", memory_id)
    assert missing.returncode == 1 and "MemoryNotFound" in missing.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("add", "x"), "scope"),
        (("add", "x", "--user-id", "u1", "--metadata", "[1]"), "metadata"),
        (("search", "q", "--user-id", "u1", "--filter", '{"rating": {"near": 3}}'), "near"),
        (("--url", "nosuch://x", "count", "--user-id", "u1"), "nosuch"),
    ],
)
def test_errors_print_one_line_and_exit_non_zero(tmp_path: Path, args: tuple[str, ...], needle: str) -> None:
    result = memdock_cli(tmp_path, *args)
    assert result.returncode == 2
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("memdock: error:")]
    assert len(error_lines) == 1 and needle in error_lines[0]
