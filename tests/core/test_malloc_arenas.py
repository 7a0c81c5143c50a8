"""`memdock.malloc_arenas`: the arena cap is set on glibc and left alone where the user set it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = "from memdock.malloc_arenas import limit_arenas; print(limit_arenas())"


def probe(env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=60,
                          check=True)
    return done.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux only")
def test_the_cap_is_set_in_a_fresh_process() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    assert probe(env) == "True"


def test_a_users_malloc_arena_max_is_left_alone() -> None:
    assert probe({**os.environ, "MALLOC_ARENA_MAX": "4"}) == "False"
