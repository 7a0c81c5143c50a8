"""README's main command and curl calls, run as written: `memdock serve` on the embedded default
(real Chroma under MEMDOCK_HOME, real MiniLM embedder) answering the README's requests."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

import httpx

from tests.helpers.memdock_server import memdock_server
from tests.helpers.paths import REPO

README = REPO / "README.md"


def readme_curls() -> list[dict[str, Any]]:
    """Every `curl` line in README.md, as method, URL, headers and body."""
    calls = []
    for line in README.read_text().splitlines():
        if not line.startswith("curl "):
            continue
        words = shlex.split(line)
        call: dict[str, Any] = {"method": "GET", "headers": {}, "body": None}
        index = 1
        while index < len(words):
            word = words[index]
            if word == "-X":
                call["method"], index = words[index + 1], index + 2
            elif word == "-H":
                name, _, value = words[index + 1].partition(":")
                call["headers"][name.strip()] = value.strip()
                index += 2
            elif word == "-d":
                call["body"], index = words[index + 1], index + 2
            elif word.startswith("-"):
                index += 1
            else:
                call["url"], index = word, index + 1
        calls.append(call)
    return calls


def test_readme_main_command_serves_the_embedded_default_and_answers_its_curl_calls(tmp_path: Path) -> None:
    assert "&& .venv/bin/memdock serve\n" in README.read_text()
    calls = readme_curls()
    assert [c["url"].split("8765")[1] for c in calls] == ["/v1/memories", "/v1/search", "/retrieval", "/retrieval"]
    env = {k: v for k, v in os.environ.items() if k != "MEMDOCK_URL"}
    env.update(MEMDOCK_HOME=str(tmp_path), HF_HUB_OFFLINE="1")
    with memdock_server_default(env) as base:
        responses = [
            httpx.request(c["method"], c["url"].replace("http://127.0.0.1:8765", base), headers=c["headers"],
                          content=c["body"], timeout=60)
            for c in calls
        ]
    added, searched, registration, retrieval = responses
    assert added.status_code == 201 and added.json()["results"][0]["event"] == "ADD"
    assert searched.json()["results"][0]["memory"]["text"] == "I like green tea"
    assert registration.status_code == 400 and registration.json()["error_code"] == 400
    assert retrieval.status_code == 200
    assert retrieval.json()["records"][0]["content"] == "I like green tea"
    assert any(p.name == "chroma.sqlite3" for p in tmp_path.rglob("*")), "data must be on disk under MEMDOCK_HOME"


def memdock_server_default(env: dict[str, str]) -> Any:
    """`memdock serve` with no --url: the embedded default."""
    return memdock_server("", env=env, default_url=True)
